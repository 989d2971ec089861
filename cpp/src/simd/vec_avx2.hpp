// AVX2 vectors (8 floats, 4 doubles). Included inside namespace fastpool::avx2.

template <class T> struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using M = __m256;
  static constexpr int N = 8;
  __m256 v;

  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
  static Vec set1(float a) { return {_mm256_set1_ps(a)}; }
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec load_strided(const float* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) {  // even lanes of two vectors, no gather
      const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
      const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
      return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)))};
    }
    const std::int32_t o[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    return gather_scaled(p, o, s);
  }
  // Partial forms: lanes [0, n) only; memory past them is never touched.
  static __m256i lanes(index_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec load_n(const float* p, index_t n) { return {_mm256_maskload_ps(p, lanes(n))}; }
  static void store_n(float* p, Vec a, index_t n) { _mm256_maskstore_ps(p, lanes(n), a.v); }
  static Vec load_strided_n(const float* p, index_t s, index_t n) {
    if (n >= 8) return load_strided(p, s);
    if (s == 1) return load_n(p, n);
    alignas(32) float t[8] = {};
    for (index_t i = 0; i < n; ++i) t[i] = p[i * s];
    return {_mm256_load_ps(t)};
  }
  // Scalar loads assembled in registers: faster than vgatherdps on the CPUs we measured.
  static Vec gather(const float* b, const std::int32_t* o) { return gather_scaled(b, o, 1); }
  // b[o[i] * s] per lane.
  static Vec gather_scaled(const float* b, const std::int32_t* o, index_t s) {
    const __m128 lo = _mm_setr_ps(b[o[0] * s], b[o[1] * s], b[o[2] * s], b[o[3] * s]);
    const __m128 hi = _mm_setr_ps(b[o[4] * s], b[o[5] * s], b[o[6] * s], b[o[7] * s]);
    return {_mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1)};
  }
  // Every offset is readable (padding taps repeat a valid one): load, then zero.
  static Vec gather_valid(const float* base, const std::int32_t* offs, const std::int32_t* valid) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(valid));
    const __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(v, _mm256_setzero_si256()));
    return {_mm256_and_ps(m, gather(base, offs).v)};
  }
  static Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    return _mm256_or_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ), _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q));
  }
  static M eq(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
  // maxps(v, acc) is v > acc ? v : acc, keeping acc when either is NaN; then a NaN
  // in v is blended in. Same result as the blend rule in one op less.
  static Vec max_nan(Vec acc, Vec v) {
    return {_mm256_blendv_ps(_mm256_max_ps(v.v, acc.v), v.v, _mm256_cmp_ps(v.v, v.v, _CMP_UNORD_Q))};
  }
  static Vec select(M m, Vec a, Vec b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
  // Non-temporal store (p aligned to 32 bytes); fence() orders it before later stores.
  static void stream(float* p, Vec a) { _mm256_stream_ps(p, a.v); }
  static void fence() { _mm_sfence(); }
  // Transposes an N x N block: row i of src (N elements at src + i*src_stride) becomes
  // column i of dst (element j of it at dst + j*dst_stride + i). Unaligned pointers; src
  // and dst do not overlap. Exact bit copies (shuffles only, no arithmetic).
  // r[i] = [row i | row i+4] of columns h..h+3 (the cross-lane step done by vinsertf128
  // from memory); a 4x4 transpose inside each 128-bit lane (unpacklo/hi + shuffle) then
  // leaves column h+j of rows 0-3 in lane 0 and of rows 4-7 in lane 1. Per vector: two
  // half loads (one of them the insert), 2 shuffles, 1 store.
  __attribute__((always_inline)) static void transpose_block(const float* src, index_t ss, float* dst, index_t ds) {
    for (int h = 0; h < 8; h += 4) {  // columns h..h+3 -> dst rows h..h+3
      __m256 r[4];
      for (int i = 0; i < 4; ++i)
        r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + i * ss + h)),
                                    _mm_loadu_ps(src + (i + 4) * ss + h), 1);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);  // r00 r10 r01 r11 (per lane)
      const __m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);  // r02 r12 r03 r13
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);  // r20 r30 r21 r31
      const __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);  // r22 r32 r23 r33
      float* d = dst + h * ds;
      _mm256_storeu_ps(d, _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)));
      _mm256_storeu_ps(d + ds, _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)));
      _mm256_storeu_ps(d + 2 * ds, _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)));
      _mm256_storeu_ps(d + 3 * ds, _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)));
    }
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<float>.
  static Vec sub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  // minps(a, b) is a < b ? a : b (b on NaN or equal zeros); maxps likewise.
  static Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  static Vec neg(Vec a) { return {_mm256_xor_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  static M lt(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
  static M le(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ); }
  static M gt(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
  static M is_nan(Vec a) { return _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q); }
  static M m_and(M a, M b) { return _mm256_and_ps(a, b); }
  static M m_or(M a, M b) { return _mm256_or_ps(a, b); }
  static M m_not(M a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  template <int S>
  static Vec shl(Vec a) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {_mm256_castsi256_ps(_mm256_srli_epi32(_mm256_castps_si256(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {_mm256_and_ps(a.v, b.v)}; }
  static Vec bor(Vec a, Vec b) { return {_mm256_or_ps(a.v, b.v)}; }
  static Vec from_bits(std::uint32_t u) { return {_mm256_castsi256_ps(_mm256_set1_epi32(int(u)))}; }
};

template <>
struct Vec<double> {
  using value_type = double;
  using M = __m256d;
  static constexpr int N = 4;
  __m256d v;

  static Vec load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static void store(double* p, Vec a) { _mm256_storeu_pd(p, a.v); }
  static Vec set1(double a) { return {_mm256_set1_pd(a)}; }
  static Vec zero() { return {_mm256_setzero_pd()}; }
  static Vec load_strided(const double* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) {
      const __m256d a = _mm256_loadu_pd(p), b = _mm256_loadu_pd(p + 4);
      return {_mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0))};
    }
    return {_mm256_setr_pd(p[0], p[s], p[2 * s], p[3 * s])};
  }
  static __m256i lanes(index_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n < 4 ? n : 4), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static Vec load_n(const double* p, index_t n) { return {_mm256_maskload_pd(p, lanes(n))}; }
  static void store_n(double* p, Vec a, index_t n) { _mm256_maskstore_pd(p, lanes(n), a.v); }
  static Vec load_strided_n(const double* p, index_t s, index_t n) {
    if (n >= 4) return load_strided(p, s);
    if (s == 1) return load_n(p, n);
    alignas(32) double t[4] = {};
    for (index_t i = 0; i < n; ++i) t[i] = p[i * s];
    return {_mm256_load_pd(t)};
  }
  static Vec gather(const double* b, const std::int32_t* o) { return {_mm256_setr_pd(b[o[0]], b[o[1]], b[o[2]], b[o[3]])}; }
  static Vec gather_valid(const double* base, const std::int32_t* offs, const std::int32_t* valid) {
    const __m256i v = _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(valid)));
    const __m256d m = _mm256_castsi256_pd(_mm256_cmpgt_epi64(v, _mm256_setzero_si256()));
    return {_mm256_and_pd(m, gather(base, offs).v)};
  }
  static Vec add(Vec a, Vec b) { return {_mm256_add_pd(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {_mm256_mul_pd(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {_mm256_div_pd(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    return _mm256_or_pd(_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ), _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q));
  }
  static M eq(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ); }
  static Vec max_nan(Vec acc, Vec v) {
    return {_mm256_blendv_pd(_mm256_max_pd(v.v, acc.v), v.v, _mm256_cmp_pd(v.v, v.v, _CMP_UNORD_Q))};
  }
  static Vec select(M m, Vec a, Vec b) { return {_mm256_blendv_pd(b.v, a.v, m)}; }
  static void stream(double* p, Vec a) { _mm256_stream_pd(p, a.v); }
  static void fence() { _mm_sfence(); }
  // Transposes an N x N block (semantics as Vec<float>::transpose_block). a = [row 0 |
  // row 2], b = [row 1 | row 3] of columns 0-1 (c, d: columns 2-3), built by vinsertf128
  // from memory; then unpacklo/hi_pd give whole columns. Per vector: 2 half loads (one an
  // insert), 1 shuffle, 1 store.
  __attribute__((always_inline)) static void transpose_block(const double* src, index_t ss, double* dst, index_t ds) {
    const double *r0 = src, *r1 = src + ss, *r2 = src + 2 * ss, *r3 = src + 3 * ss;
    const __m256d a = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(r0)), _mm_loadu_pd(r2), 1);
    const __m256d b = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(r1)), _mm_loadu_pd(r3), 1);
    const __m256d c = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(r0 + 2)), _mm_loadu_pd(r2 + 2), 1);
    const __m256d d = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(r1 + 2)), _mm_loadu_pd(r3 + 2), 1);
    _mm256_storeu_pd(dst, _mm256_unpacklo_pd(a, b));
    _mm256_storeu_pd(dst + ds, _mm256_unpackhi_pd(a, b));
    _mm256_storeu_pd(dst + 2 * ds, _mm256_unpacklo_pd(c, d));
    _mm256_storeu_pd(dst + 3 * ds, _mm256_unpackhi_pd(c, d));
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<double>.
  static Vec sub(Vec a, Vec b) { return {_mm256_sub_pd(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm256_min_pd(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm256_max_pd(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
  static Vec neg(Vec a) { return {_mm256_xor_pd(_mm256_set1_pd(-0.0), a.v)}; }
  static M lt(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ); }
  static M le(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ); }
  static M gt(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ); }
  static M is_nan(Vec a) { return _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q); }
  static M m_and(M a, M b) { return _mm256_and_pd(a, b); }
  static M m_or(M a, M b) { return _mm256_or_pd(a, b); }
  static M m_not(M a) { return _mm256_xor_pd(a, _mm256_castsi256_pd(_mm256_set1_epi32(-1))); }
  static bool any(M m) { return _mm256_movemask_pd(m) != 0; }
  template <int S>
  static Vec shl(Vec a) { return {_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {_mm256_castsi256_pd(_mm256_srli_epi64(_mm256_castpd_si256(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {_mm256_and_pd(a.v, b.v)}; }
  static Vec bor(Vec a, Vec b) { return {_mm256_or_pd(a.v, b.v)}; }
  static Vec from_bits(std::uint64_t u) { return {_mm256_castsi256_pd(_mm256_set1_epi64x((long long)u))}; }
};
