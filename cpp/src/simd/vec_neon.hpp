// NEON vectors (4 floats, 2 doubles), baseline on arm64. Included inside
// namespace fastpool::neon.

template <class T> struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using M = uint32x4_t;
  static constexpr int N = 4;
  float32x4_t v;

  static Vec load(const float* p) { return {vld1q_f32(p)}; }
  static void store(float* p, Vec a) { vst1q_f32(p, a.v); }
  static Vec set1(float a) { return {vdupq_n_f32(a)}; }
  static Vec zero() { return {vdupq_n_f32(0.0f)}; }
  static Vec load_strided(const float* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) return {vld2q_f32(p).val[0]};
    float t[4] = {p[0], p[s], p[2 * s], p[3 * s]};
    return {vld1q_f32(t)};
  }
  // Partial forms: lanes [0, n) only, memory past them is never touched (no masked
  // loads on NEON: through a buffer). n >= N is the whole-vector form, which for
  // stride 2 reads one element past the last lane, as on x86 (strided_overread).
  static Vec load_n(const float* p, index_t n) { return load_strided_n(p, 1, n); }
  static void store_n(float* p, Vec a, index_t n) {
    float t[4];
    vst1q_f32(t, a.v);
    for (index_t i = 0; i < n && i < 4; ++i) p[i] = t[i];
  }
  static Vec load_strided_n(const float* p, index_t s, index_t n) {
    if (n >= 4) return load_strided(p, s);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (index_t i = 0; i < n; ++i) t[i] = p[i * s];
    return {vld1q_f32(t)};
  }
  static Vec gather(const float* base, const std::int32_t* o) {
    const float t[4] = {base[o[0]], base[o[1]], base[o[2]], base[o[3]]};
    return {vld1q_f32(t)};
  }
  static Vec gather_valid(const float* base, const std::int32_t* o, const std::int32_t* v) {
    const float t[4] = {v[0] ? base[o[0]] : 0.0f, v[1] ? base[o[1]] : 0.0f, v[2] ? base[o[2]] : 0.0f,
                        v[3] ? base[o[3]] : 0.0f};
    return {vld1q_f32(t)};
  }
  static Vec add(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {vdivq_f32(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    return vorrq_u32(vcgtq_f32(a.v, b.v), vmvnq_u32(vceqq_f32(a.v, a.v)));
  }
  static M eq(Vec a, Vec b) { return vceqq_f32(a.v, b.v); }
  // vmaxq would order +0/-0 ties differently from the scalar rule: use the blend.
  static Vec max_nan(Vec acc, Vec v) { return select(gt_or_nan(v, acc), v, acc); }
  static Vec select(M m, Vec a, Vec b) { return {vbslq_f32(m, a.v, b.v)}; }
  static void stream(float* p, Vec a) { vst1q_f32(p, a.v); }
  static void fence() {}
  // Transposes an N x N block: row i of src (N elements at src + i*src_stride) becomes
  // column i of dst (element j of it at dst + j*dst_stride + i). Unaligned pointers; src
  // and dst do not overlap. Exact bit copies (permutes only, no arithmetic).
  // trn1/trn2 of row pairs, then zip1/zip2 of 64-bit halves: 2 permutes per vector.
  __attribute__((always_inline)) static void transpose_block(const float* src, index_t ss, float* dst, index_t ds) {
    const float32x4_t r0 = vld1q_f32(src), r1 = vld1q_f32(src + ss);
    const float32x4_t r2 = vld1q_f32(src + 2 * ss), r3 = vld1q_f32(src + 3 * ss);
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));  // r00 r10 r02 r12
    const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));  // r01 r11 r03 r13
    const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));  // r20 r30 r22 r32
    const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));  // r21 r31 r23 r33
    vst1q_f32(dst, vreinterpretq_f32_f64(vzip1q_f64(t0, t2)));
    vst1q_f32(dst + ds, vreinterpretq_f32_f64(vzip1q_f64(t1, t3)));
    vst1q_f32(dst + 2 * ds, vreinterpretq_f32_f64(vzip2q_f64(t0, t2)));
    vst1q_f32(dst + 3 * ds, vreinterpretq_f32_f64(vzip2q_f64(t1, t3)));
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<float>.
  static Vec sub(Vec a, Vec b) { return {vsubq_f32(a.v, b.v)}; }
  // vminq/vmaxq propagate NaN and order zeros: compare + select gives the ternaries.
  static Vec min(Vec a, Vec b) { return select(vcltq_f32(a.v, b.v), a, b); }
  static Vec max(Vec a, Vec b) { return select(vcgtq_f32(a.v, b.v), a, b); }
  static Vec abs(Vec a) { return {vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(a.v), vdupq_n_u32(0x80000000u)))}; }
  static Vec neg(Vec a) { return {vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(a.v), vdupq_n_u32(0x80000000u)))}; }
  static M lt(Vec a, Vec b) { return vcltq_f32(a.v, b.v); }
  static M le(Vec a, Vec b) { return vcleq_f32(a.v, b.v); }
  static M gt(Vec a, Vec b) { return vcgtq_f32(a.v, b.v); }
  static M is_nan(Vec a) { return vmvnq_u32(vceqq_f32(a.v, a.v)); }
  static M m_and(M a, M b) { return vandq_u32(a, b); }
  static M m_or(M a, M b) { return vorrq_u32(a, b); }
  static M m_not(M a) { return vmvnq_u32(a); }
  static bool any(M m) { return vmaxvq_u32(m) != 0; }
  template <int S>
  static Vec shl(Vec a) { return {vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {vreinterpretq_f32_u32(vshrq_n_u32(vreinterpretq_u32_f32(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a.v), vreinterpretq_u32_f32(b.v)))}; }
  static Vec bor(Vec a, Vec b) { return {vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(a.v), vreinterpretq_u32_f32(b.v)))}; }
  static Vec from_bits(std::uint32_t u) { return {vreinterpretq_f32_u32(vdupq_n_u32(u))}; }
};

template <>
struct Vec<double> {
  using value_type = double;
  using M = uint64x2_t;
  static constexpr int N = 2;
  float64x2_t v;

  static Vec load(const double* p) { return {vld1q_f64(p)}; }
  static void store(double* p, Vec a) { vst1q_f64(p, a.v); }
  static Vec set1(double a) { return {vdupq_n_f64(a)}; }
  static Vec zero() { return {vdupq_n_f64(0.0)}; }
  static Vec load_strided(const double* p, index_t s) {
    if (s == 1) return load(p);
    if (s == 2) return {vld2q_f64(p).val[0]};
    double t[2] = {p[0], p[s]};
    return {vld1q_f64(t)};
  }
  static Vec load_n(const double* p, index_t n) { return load_strided_n(p, 1, n); }
  static void store_n(double* p, Vec a, index_t n) {
    double t[2];
    vst1q_f64(t, a.v);
    for (index_t i = 0; i < n && i < 2; ++i) p[i] = t[i];
  }
  static Vec load_strided_n(const double* p, index_t s, index_t n) {
    if (n >= 2) return load_strided(p, s);
    double t[2] = {0.0, 0.0};
    if (n > 0) t[0] = p[0];  // n == 0 reads nothing, as the masked x86 forms
    return {vld1q_f64(t)};
  }
  static Vec gather(const double* base, const std::int32_t* o) {
    const double t[2] = {base[o[0]], base[o[1]]};
    return {vld1q_f64(t)};
  }
  static Vec gather_valid(const double* base, const std::int32_t* o, const std::int32_t* v) {
    const double t[2] = {v[0] ? base[o[0]] : 0.0, v[1] ? base[o[1]] : 0.0};
    return {vld1q_f64(t)};
  }
  static Vec add(Vec a, Vec b) { return {vaddq_f64(a.v, b.v)}; }
  static Vec mul(Vec a, Vec b) { return {vmulq_f64(a.v, b.v)}; }
  static Vec div(Vec a, Vec b) { return {vdivq_f64(a.v, b.v)}; }
  static M gt_or_nan(Vec a, Vec b) {
    const uint64x2_t not_nan = vceqq_f64(a.v, a.v);
    const uint64x2_t is_nan = vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(not_nan)));
    return vorrq_u64(vcgtq_f64(a.v, b.v), is_nan);
  }
  static M eq(Vec a, Vec b) { return vceqq_f64(a.v, b.v); }
  static Vec max_nan(Vec acc, Vec v) { return select(gt_or_nan(v, acc), v, acc); }
  static Vec select(M m, Vec a, Vec b) { return {vbslq_f64(m, a.v, b.v)}; }
  static void stream(double* p, Vec a) { vst1q_f64(p, a.v); }
  static void fence() {}
  // Transposes an N x N block (semantics as Vec<float>::transpose_block): zip1/zip2,
  // 1 permute per vector.
  __attribute__((always_inline)) static void transpose_block(const double* src, index_t ss, double* dst, index_t ds) {
    const float64x2_t r0 = vld1q_f64(src), r1 = vld1q_f64(src + ss);
    vst1q_f64(dst, vzip1q_f64(r0, r1));
    vst1q_f64(dst + ds, vzip2q_f64(r0, r1));
  }

  // ---- element-wise math (simd/math-inl.hpp): same semantics as Scalar<double>.
  static uint64x2_t u64(float64x2_t a) { return vreinterpretq_u64_f64(a); }
  static float64x2_t f64(uint64x2_t a) { return vreinterpretq_f64_u64(a); }
  static Vec sub(Vec a, Vec b) { return {vsubq_f64(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return select(vcltq_f64(a.v, b.v), a, b); }
  static Vec max(Vec a, Vec b) { return select(vcgtq_f64(a.v, b.v), a, b); }
  static Vec abs(Vec a) { return {f64(vbicq_u64(u64(a.v), vdupq_n_u64(0x8000000000000000ULL)))}; }
  static Vec neg(Vec a) { return {f64(veorq_u64(u64(a.v), vdupq_n_u64(0x8000000000000000ULL)))}; }
  static M lt(Vec a, Vec b) { return vcltq_f64(a.v, b.v); }
  static M le(Vec a, Vec b) { return vcleq_f64(a.v, b.v); }
  static M gt(Vec a, Vec b) { return vcgtq_f64(a.v, b.v); }
  static M is_nan(Vec a) { return m_not(vceqq_f64(a.v, a.v)); }
  static M m_and(M a, M b) { return vandq_u64(a, b); }
  static M m_or(M a, M b) { return vorrq_u64(a, b); }
  static M m_not(M a) { return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(a))); }
  static bool any(M m) { return vmaxvq_u32(vreinterpretq_u32_u64(m)) != 0; }
  template <int S>
  static Vec shl(Vec a) { return {f64(vshlq_n_u64(u64(a.v), S))}; }
  template <int S>
  static Vec shr(Vec a) { return {f64(vshrq_n_u64(u64(a.v), S))}; }
  static Vec band(Vec a, Vec b) { return {f64(vandq_u64(u64(a.v), u64(b.v)))}; }
  static Vec bor(Vec a, Vec b) { return {f64(vorrq_u64(u64(a.v), u64(b.v)))}; }
  static Vec from_bits(std::uint64_t u) { return {f64(vdupq_n_u64(u))}; }
};
