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
    if (s <= (index_t(1) << 27)) {
      const __m512i idx = _mm512_mullo_epi32(
          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(s)));
      // masked form: GCC 12 warns about the unmasked one's undefined source
      return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), __mmask16(0xffff), idx, p, 4)};
    }
    alignas(64) float t[16];
    for (int i = 0; i < 16; ++i) t[i] = p[i * s];
    return {_mm512_load_ps(t)};
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
  static void stream(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
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
    if (s <= (index_t(1) << 28)) {
      const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm256_set1_epi32(int(s)));
      return {_mm512_mask_i32gather_pd(_mm512_setzero_pd(), __mmask8(0xff), idx, p, 8)};
    }
    alignas(64) double t[8];
    for (int i = 0; i < 8; ++i) t[i] = p[i * s];
    return {_mm512_load_pd(t)};
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
  static void stream(double* p, Vec a) { _mm512_storeu_pd(p, a.v); }
};
