// AVX-512 vectors (16 floats, 8 doubles). Included inside namespace fastpool::avx512.

template <class T> struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using M = __mmask16;
  static constexpr int N = 16;
  __m512 v;

  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
  static Vec set1(float a) { return {_mm512_set1_ps(a)}; }
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec load_strided(const float* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) {  // even lanes of two vectors by one two-source permute
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      return {_mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16))};
    }
    const std::int32_t o[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return gather_scaled(p, o, s);
  }
  // Partial forms: lanes [0, n) only; memory past them is never touched.
  static __mmask16 lanes(index_t n) { return __mmask16(n >= 16 ? 0xffff : (1u << n) - 1); }
  static Vec load_n(const float* p, index_t n) { return {_mm512_maskz_loadu_ps(lanes(n), p)}; }
  static void store_n(float* p, Vec a, index_t n) { _mm512_mask_storeu_ps(p, lanes(n), a.v); }
  static Vec load_strided_n(const float* p, index_t s, index_t n) {
    if (n >= 16) return load_strided(p, s);
    if (s == 1) return load_n(p, n);
    if (s == 2) {
      const index_t span = 2 * n - 1;
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const __m512 lo = _mm512_maskz_loadu_ps(lanes(span), p);
      const __m512 hi = span > 16 ? _mm512_maskz_loadu_ps(lanes(span - 16), p + 16) : _mm512_setzero_ps();
      return {_mm512_permutex2var_ps(lo, even, hi)};
    }
    alignas(64) float t[16] = {};
    for (index_t i = 0; i < n; ++i) t[i] = p[i * s];
    return {_mm512_load_ps(t)};
  }
  // Scalar loads assembled in registers: faster than vgatherdps on the CPUs we measured.
  static Vec gather(const float* b, const std::int32_t* o) { return gather_scaled(b, o, 1); }
  // b[o[i] * s] per lane.
  static Vec gather_scaled(const float* b, const std::int32_t* o, index_t s) {
    const __m128 q0 = _mm_setr_ps(b[o[0] * s], b[o[1] * s], b[o[2] * s], b[o[3] * s]);
    const __m128 q1 = _mm_setr_ps(b[o[4] * s], b[o[5] * s], b[o[6] * s], b[o[7] * s]);
    const __m128 q2 = _mm_setr_ps(b[o[8] * s], b[o[9] * s], b[o[10] * s], b[o[11] * s]);
    const __m128 q3 = _mm_setr_ps(b[o[12] * s], b[o[13] * s], b[o[14] * s], b[o[15] * s]);
    const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(q0), q1, 1);
    const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(q2), q3, 1);
    return {_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1)};
  }
  // Every offset is readable (padding taps repeat a valid one): load, then zero.
  static Vec gather_valid(const float* base, const std::int32_t* offs, const std::int32_t* valid) {
    const __m512i v = _mm512_loadu_si512(valid);
    return {_mm512_maskz_mov_ps(_mm512_test_epi32_mask(v, v), gather(base, offs).v)};
  }
  static Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
  }
  static M eq(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
  // maxps(v, acc) is v > acc ? v : acc, keeping acc when either is NaN; lanes where
  // v is NaN take v. Same result as the blend rule in two ops instead of four.
  static Vec max_nan(Vec acc, Vec v) {
    return {_mm512_mask_max_ps(v.v, _mm512_cmp_ps_mask(v.v, v.v, _CMP_ORD_Q), v.v, acc.v)};
  }
  static Vec select(M m, Vec a, Vec b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
  // Non-temporal store (p aligned to 64 bytes); fence() orders it before later stores.
  static void stream(float* p, Vec a) { _mm512_stream_ps(p, a.v); }
  static void fence() { _mm_sfence(); }
  // Transposes an N x N block: row i of src (N elements at src + i*src_stride) becomes
  // column i of dst (element j of it at dst + j*dst_stride + i). Unaligned pointers; src
  // and dst do not overlap. Exact bit copies (shuffles only, no arithmetic).
  // Per column half q (0, 8) and row half b (0, 8): r[i] = [row b+i | row b+i+4] of
  // columns q..q+7 (256-bit load + vinsertf32x8 from memory); a 4x4 transpose inside each
  // 128-bit lane (unpacklo/hi + shuffle) gives c[b][j] = column q+j of rows b..b+3, column
  // q+4+j of rows b..b+3, then the same of rows b+4..b+7; one vshuff32x4 per output row
  // picks lanes 0, 2 (or 1, 3) of c[0][j] and c[1][j]. Per vector: 1 load, 1 insert,
  // 3 shuffles, 1 store. Zero-masked forms with a full mask throughout: the plain ones
  // start from _mm512_undefined_ps (GCC 12 -Wmaybe-uninitialized, see min/max).
  __attribute__((always_inline)) static void transpose_block(const float* src, index_t ss, float* dst, index_t ds) {
    const __mmask16 all = 0xffff;
    for (int q = 0; q < 16; q += 8) {
      __m512 c[2][4];
      for (int b = 0; b < 2; ++b) {
        __m512 r[4];
        for (int i = 0; i < 4; ++i) {
          const float* p = src + (8 * b + i) * ss + q;
          r[i] = _mm512_maskz_insertf32x8(all, _mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm256_loadu_ps(p + 4 * ss), 1);
        }
        const __m512 t0 = _mm512_maskz_unpacklo_ps(all, r[0], r[1]);  // r00 r10 r01 r11 (per lane)
        const __m512 t1 = _mm512_maskz_unpackhi_ps(all, r[0], r[1]);  // r02 r12 r03 r13
        const __m512 t2 = _mm512_maskz_unpacklo_ps(all, r[2], r[3]);  // r20 r30 r21 r31
        const __m512 t3 = _mm512_maskz_unpackhi_ps(all, r[2], r[3]);  // r22 r32 r23 r33
        c[b][0] = _mm512_maskz_shuffle_ps(all, t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        c[b][1] = _mm512_maskz_shuffle_ps(all, t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        c[b][2] = _mm512_maskz_shuffle_ps(all, t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        c[b][3] = _mm512_maskz_shuffle_ps(all, t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int j = 0; j < 4; ++j) {
        _mm512_storeu_ps(dst + (q + j) * ds, _mm512_maskz_shuffle_f32x4(all, c[0][j], c[1][j], _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(dst + (q + 4 + j) * ds, _mm512_maskz_shuffle_f32x4(all, c[0][j], c[1][j], _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<float>.
  static Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  // vminps(a, b) is a < b ? a : b (b on NaN or equal zeros); vmaxps likewise.
  // Zero-masked forms with a full mask: the plain intrinsics start from
  // _mm512_undefined, which GCC 12 reports as uninitialized once inlined deep enough.
  static Vec min(Vec a, Vec b) { return {_mm512_maskz_min_ps(__mmask16(0xffff), a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm512_maskz_max_ps(__mmask16(0xffff), a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(0x7fffffff)))}; }
  static Vec neg(Vec a) { return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u))))}; }
  static M lt(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
  static M le(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ); }
  static M gt(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  static M is_nan(Vec a) { return _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q); }
  static M m_and(M a, M b) { return M(a & b); }
  static M m_or(M a, M b) { return M(a | b); }
  static M m_not(M a) { return M(~a); }
  static bool any(M m) { return m != 0; }
  // Zero-masked shifts for the same GCC 12 reason as min/max.
  template <int S>
  static Vec shl(Vec a) { return {_mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xffff), _mm512_castps_si512(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {_mm512_castsi512_ps(_mm512_maskz_srli_epi32(__mmask16(0xffff), _mm512_castps_si512(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v), _mm512_castps_si512(b.v)))}; }
  static Vec bor(Vec a, Vec b) { return {_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a.v), _mm512_castps_si512(b.v)))}; }
  static Vec from_bits(std::uint32_t u) { return {_mm512_castsi512_ps(_mm512_set1_epi32(int(u)))}; }
};

template <>
struct Vec<double> {
  using value_type = double;
  using M = __mmask8;
  static constexpr int N = 8;
  __m512d v;

  static Vec load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static void store(double* p, Vec a) { _mm512_storeu_pd(p, a.v); }
  static Vec set1(double a) { return {_mm512_set1_pd(a)}; }
  static Vec zero() { return {_mm512_setzero_pd()}; }
  static Vec load_strided(const double* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) {
      const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
      return {_mm512_permutex2var_pd(_mm512_loadu_pd(p), even, _mm512_loadu_pd(p + 8))};
    }
    const std::int32_t o[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    return gather_scaled(p, o, s);
  }
  static __mmask8 lanes(index_t n) { return __mmask8(n >= 8 ? 0xff : (1u << n) - 1); }
  static Vec load_n(const double* p, index_t n) { return {_mm512_maskz_loadu_pd(lanes(n), p)}; }
  static void store_n(double* p, Vec a, index_t n) { _mm512_mask_storeu_pd(p, lanes(n), a.v); }
  static Vec load_strided_n(const double* p, index_t s, index_t n) {
    if (n >= 8) return load_strided(p, s);
    if (s == 1) return load_n(p, n);
    if (s == 2) {
      const index_t span = 2 * n - 1;
      const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
      const __m512d lo = _mm512_maskz_loadu_pd(lanes(span), p);
      const __m512d hi = span > 8 ? _mm512_maskz_loadu_pd(lanes(span - 8), p + 8) : _mm512_setzero_pd();
      return {_mm512_permutex2var_pd(lo, even, hi)};
    }
    alignas(64) double t[8] = {};
    for (index_t i = 0; i < n; ++i) t[i] = p[i * s];
    return {_mm512_load_pd(t)};
  }
  static Vec gather(const double* b, const std::int32_t* o) { return gather_scaled(b, o, 1); }
  static Vec gather_scaled(const double* b, const std::int32_t* o, index_t s) {
    const __m256d lo = _mm256_setr_pd(b[o[0] * s], b[o[1] * s], b[o[2] * s], b[o[3] * s]);
    const __m256d hi = _mm256_setr_pd(b[o[4] * s], b[o[5] * s], b[o[6] * s], b[o[7] * s]);
    return {_mm512_mask_broadcast_f64x4(_mm512_castpd256_pd512(lo), __mmask8(0xf0), hi)};
  }
  static Vec gather_valid(const double* base, const std::int32_t* offs, const std::int32_t* valid) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(valid));
    return {_mm512_maskz_mov_pd(_mm256_test_epi32_mask(v, v), gather(base, offs).v)};
  }
  static Vec add(Vec a, Vec b) { return {_mm512_add_pd(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {_mm512_mul_pd(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {_mm512_div_pd(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ) | _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q);
  }
  static M eq(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ); }
  static Vec max_nan(Vec acc, Vec v) {
    return {_mm512_mask_max_pd(v.v, _mm512_cmp_pd_mask(v.v, v.v, _CMP_ORD_Q), v.v, acc.v)};
  }
  static Vec select(M m, Vec a, Vec b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }
  static void stream(double* p, Vec a) { _mm512_stream_pd(p, a.v); }
  static void fence() { _mm_sfence(); }
  // Transposes an N x N block (semantics as Vec<float>::transpose_block). Per column half
  // q (0, 4): r[k] = [row i | row i+2] of columns q..q+3 for i = 0, 1, 4, 5 (256-bit load
  // + vinsertf64x4 from memory); unpacklo/hi_pd of rows (0, 1) give, per 128-bit lane,
  // columns q / q+2 of rows 0-1 and 2-3 (likewise rows 4-7 from (4, 5)); one vshuff64x2
  // per output row picks lanes 0, 2 (or 1, 3) of the two. Per vector: 1 load, 1 insert,
  // 2 shuffles, 1 store. Zero-masked forms as in Vec<float>.
  __attribute__((always_inline)) static void transpose_block(const double* src, index_t ss, double* dst, index_t ds) {
    const __mmask8 all = 0xff;
    for (int q = 0; q < 8; q += 4) {
      __m512d r[4];
      const int rows[4] = {0, 1, 4, 5};
      for (int k = 0; k < 4; ++k) {
        const double* p = src + rows[k] * ss + q;
        r[k] = _mm512_maskz_insertf64x4(all, _mm512_castpd256_pd512(_mm256_loadu_pd(p)), _mm256_loadu_pd(p + 2 * ss), 1);
      }
      const __m512d lo0 = _mm512_maskz_unpacklo_pd(all, r[0], r[1]);  // columns q, q+2 of rows 0-3
      const __m512d hi0 = _mm512_maskz_unpackhi_pd(all, r[0], r[1]);  // columns q+1, q+3 of rows 0-3
      const __m512d lo1 = _mm512_maskz_unpacklo_pd(all, r[2], r[3]);  // columns q, q+2 of rows 4-7
      const __m512d hi1 = _mm512_maskz_unpackhi_pd(all, r[2], r[3]);  // columns q+1, q+3 of rows 4-7
      _mm512_storeu_pd(dst + q * ds, _mm512_maskz_shuffle_f64x2(all, lo0, lo1, _MM_SHUFFLE(2, 0, 2, 0)));
      _mm512_storeu_pd(dst + (q + 1) * ds, _mm512_maskz_shuffle_f64x2(all, hi0, hi1, _MM_SHUFFLE(2, 0, 2, 0)));
      _mm512_storeu_pd(dst + (q + 2) * ds, _mm512_maskz_shuffle_f64x2(all, lo0, lo1, _MM_SHUFFLE(3, 1, 3, 1)));
      _mm512_storeu_pd(dst + (q + 3) * ds, _mm512_maskz_shuffle_f64x2(all, hi0, hi1, _MM_SHUFFLE(3, 1, 3, 1)));
    }
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<double>.
  static Vec sub(Vec a, Vec b) { return {_mm512_sub_pd(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm512_maskz_min_pd(__mmask8(0xff), a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm512_maskz_max_pd(__mmask8(0xff), a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64(0x7fffffffffffffffLL)))}; }
  static Vec neg(Vec a) { return {_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64((long long)0x8000000000000000ULL)))}; }
  static M lt(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ); }
  static M le(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ); }
  static M gt(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ); }
  static M is_nan(Vec a) { return _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q); }
  static M m_and(M a, M b) { return M(a & b); }
  static M m_or(M a, M b) { return M(a | b); }
  static M m_not(M a) { return M(~a); }
  static bool any(M m) { return m != 0; }
  template <int S>
  static Vec shl(Vec a) { return {_mm512_castsi512_pd(_mm512_maskz_slli_epi64(__mmask8(0xff), _mm512_castpd_si512(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {_mm512_castsi512_pd(_mm512_maskz_srli_epi64(__mmask8(0xff), _mm512_castpd_si512(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {_mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(a.v), _mm512_castpd_si512(b.v)))}; }
  static Vec bor(Vec a, Vec b) { return {_mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(a.v), _mm512_castpd_si512(b.v)))}; }
  static Vec from_bits(std::uint64_t u) { return {_mm512_castsi512_pd(_mm512_set1_epi64((long long)u))}; }
};
