// Element-wise exp, log and pow written once over a vector type V (Vec<T> of the ISA,
// or Scalar<T>). Every path runs the same operations in the same order (no FMA:
// -ffp-contract=off), so results are bitwise identical across paths.
//
// Algorithms (after fdlibm / FreeBSD msun, made branch-free):
//  exp(x):  n = round(x / ln2) by the magic-add trick, r = x - n ln2 (ln2 split hi/lo,
//           n*ln2_hi exact), exp(r) by fdlibm's rational form, times 2^n built from the
//           bits of the rounded value. x is clamped to [lo, hi] just past the
//           under/overflow thresholds, so the scaling overflows to +inf / rounds to 0
//           by itself. Subnormal results are produced (gradual underflow, one
//           rounding), not flushed: when some lane needs 2^n outside the normal
//           exponent range the scale is applied in two steps.
//  log(x):  x = 2^k m, m in [sqrt(1/2), sqrt(2)) from the bits (subnormals scaled by
//           2^24 / 2^54 first), log m = 2 atanh(s), s = (m-1)/(m+1), with s and the
//           sum carried in two parts: the result is hi + lo to a few bits more than T.
//  pow(x,p): exp(p * log x) with log x and the product in two parts (error-free
//           products by Veltkamp splitting), so |p log x| up to the overflow limit
//           costs no accuracy.
// Specials: exp(+inf) = +inf, exp(-inf) = 0; log(+-0) = -inf, log(+inf) = +inf,
// log(x < 0) = NaN; pow(0, p > 0) = 0, pow(+inf, p > 0) = +inf, pow(1, p) = 1.
// A NaN argument gives that NaN quieted (x + x); a NaN made here is the positive
// default quiet NaN (0x7fc00000 / 0x7ff8...), the same bits on every path.

namespace vmath {

template <class T>
struct Const;

template <>
struct Const<float> {
  using U = std::uint32_t;
  static constexpr int kMantBits = 23;
  static constexpr U kMantMask = 0x007fffffu;
  static constexpr U kQuietNan = 0x7fc00000u;
  // t + kRound rounds t to an integer (|t| < 2^22); kRound + bias keeps n + bias in
  // the low bits, so shl<23> of the sum is 2^n for a normal exponent.
  static constexpr float kRound = 0x1.8p23f;
  static constexpr float kBias = 127.0f;
  static constexpr float kTwoMant = 0x1p23f;  // 2^23 | e reads e as a float
  static constexpr float kSplit = 4097.0f;    // Veltkamp: 2^12 + 1
  // exp: inputs clamped to [kExpLo, kExpHi] (exp is already 0 / +inf beyond them).
  static constexpr float kExpLo = -104.0f, kExpHi = 89.0f;
  static constexpr float kMinExp = -126.0f, kMaxExp = 127.0f;  // 2^n normal
  static constexpr float kInvLn2 = 0x1.715476p+0f;
  static constexpr float kExpLn2Hi = 0x1.62e4p-1f;      // 15 bits: n * hi exact
  static constexpr float kExpLn2Lo = 0x1.7f7d1cp-20f;
  // exp(r) = 1 + r + r c / (2 - c), c = r - r^2 P(r^2)  (FreeBSD expf)
  static constexpr float kExpP[] = {0xaaaa8f.0p-26f, -0xb55215.0p-32f};
  // log
  static constexpr float kMinNormal = 0x1p-126f;
  static constexpr float kSubScale = 0x1p24f, kSubK = 24.0f;
  static constexpr float kSqrt2 = 1.41421356f;
  static constexpr float kLogLn2Hi = 0x1.62e3p-1f;      // 17 bits: k * hi exact, |k| < 184
  static constexpr float kLogLn2Lo = 0x1.2fefa2p-17f;
  // 2 atanh(s) = 2 s + s R(s^2), R(z) = z P(z)  (FreeBSD logf, |err| < 2^-34.2)
  static constexpr float kLogP[] = {0xaaaaaa.0p-24f, 0xccce13.0p-25f, 0x91e9ee.0p-25f, 0xf89e26.0p-26f};
};

template <>
struct Const<double> {
  using U = std::uint64_t;
  static constexpr int kMantBits = 52;
  static constexpr U kMantMask = 0x000fffffffffffffULL;
  static constexpr U kQuietNan = 0x7ff8000000000000ULL;
  static constexpr double kRound = 0x1.8p52;
  static constexpr double kBias = 1023.0;
  static constexpr double kTwoMant = 0x1p52;
  static constexpr double kSplit = 134217729.0;  // 2^27 + 1
  static constexpr double kExpLo = -746.0, kExpHi = 710.0;
  static constexpr double kMinExp = -1022.0, kMaxExp = 1023.0;
  static constexpr double kInvLn2 = 1.44269504088896338700e+00;
  static constexpr double kExpLn2Hi = 6.93147180369123816490e-01;  // 32 bits
  static constexpr double kExpLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kExpP[] = {1.66666666666666019037e-01, -2.77777777770155933842e-03,
                                     6.61375632143793436117e-05, -1.65339022054652515390e-06,
                                     4.13813679705723846039e-08};
  static constexpr double kMinNormal = 0x1p-1022;
  static constexpr double kSubScale = 0x1p54, kSubK = 54.0;
  static constexpr double kSqrt2 = 1.41421356237309504880;
  static constexpr double kLogLn2Hi = 6.93147180369123816490e-01;
  static constexpr double kLogLn2Lo = 1.90821492927058770002e-10;
  // fdlibm log, |err| < 2^-58.45
  static constexpr double kLogP[] = {6.666666666666735130e-01, 3.999999999940941908e-01,
                                     2.857142874366239149e-01, 2.222219843214978396e-01,
                                     1.818357216161805012e-01, 1.531383769920937332e-01,
                                     1.479819860511658591e-01};
};

// A value carried as hi + lo, |lo| <= ulp(hi) or so.
template <class V>
struct Two {
  V hi, lo;
};

// c[0] + z c[1] + ... + z^(K-1) c[K-1], Horner.
template <class V, class T, int K>
inline V poly(V z, const T (&c)[K]) {
  V p = V::set1(c[K - 1]);
  for (int i = K - 2; i >= 0; --i) p = V::add(V::set1(c[i]), V::mul(z, p));
  return p;
}

// a + b exactly, as s + e (Knuth).
template <class V>
inline Two<V> two_sum(V a, V b) {
  const V s = V::add(a, b);
  const V bb = V::sub(s, a);
  return {s, V::add(V::sub(a, V::sub(s, bb)), V::sub(b, bb))};
}

// a = hi + lo, each with half the significand bits (Veltkamp), so products of the
// halves are exact.
template <class V>
inline Two<V> split(V a) {
  const V c = V::mul(a, V::set1(Const<typename V::value_type>::kSplit));
  const V hi = V::sub(c, V::sub(c, a));
  return {hi, V::sub(a, hi)};
}

// a * b exactly, as p + e (Dekker; no FMA on purpose: all paths must agree).
template <class V>
inline Two<V> two_prod(V a, V b) {
  const V p = V::mul(a, b);
  const Two<V> x = split(a), y = split(b);
  const V e = V::add(V::add(V::add(V::sub(V::mul(x.hi, y.hi), p), V::mul(x.hi, y.lo)), V::mul(x.lo, y.hi)),
                     V::mul(x.lo, y.lo));
  return {p, e};
}

// exp(x + xlo), |xlo| small against x (0 for plain exp).
template <class V>
inline V exp_core(V x, V xlo) {
  using T = typename V::value_type;
  using C = Const<T>;
  const V one = V::set1(T(1));
  // Clamp (NaN goes to kExpLo; it is put back at the end). A clamped x drops xlo.
  const V xc = V::min(V::max(x, V::set1(C::kExpLo)), V::set1(C::kExpHi));
  xlo = V::select(V::eq(x, xc), xlo, V::zero());
  // n = round(x / ln2), kept as magic + bias + n in t.
  const V magic = V::set1(C::kRound + C::kBias);
  const V t = V::add(V::mul(xc, V::set1(C::kInvLn2)), magic);
  const V n = V::sub(t, magic);
  // r = hi - lo = x - n ln2, hi exact (Sterbenz), lo small.
  const V hi = V::sub(xc, V::mul(n, V::set1(C::kExpLn2Hi)));
  const V lo = V::sub(V::mul(n, V::set1(C::kExpLn2Lo)), xlo);
  const V r = V::sub(hi, lo);
  const V rr = V::mul(r, r);
  const V c = V::sub(r, V::mul(rr, poly(rr, C::kExpP)));
  // exp(r) = 1 - ((lo - r c / (2 - c)) - hi): hi and lo added separately.
  const V y = V::sub(one, V::sub(V::sub(lo, V::div(V::mul(r, c), V::sub(V::set1(T(2)), c))), hi));
  // y * 2^n. One scale if every lane's 2^n is a normal number; otherwise two scales
  // 2^n1 2^n2 (n1 = round(n / 2)): y 2^n1 is exact, so the product still rounds once
  // and lanes in range get the same bits either way.
  V res;
  const auto wide = V::m_or(V::lt(n, V::set1(C::kMinExp)), V::gt(n, V::set1(C::kMaxExp)));
  if (!V::any(wide)) {
    res = V::mul(y, V::template shl<C::kMantBits>(t));
  } else {
    const V t1 = V::add(V::mul(n, V::set1(T(0.5))), magic);
    const V t2 = V::add(V::sub(n, V::sub(t1, magic)), magic);
    res = V::mul(V::mul(y, V::template shl<C::kMantBits>(t1)), V::template shl<C::kMantBits>(t2));
  }
  return V::select(V::is_nan(x), V::add(x, x), res);
}

// log(x) as hi + lo.
template <class V>
inline Two<V> log_core(V x) {
  using T = typename V::value_type;
  using C = Const<T>;
  const V zero = V::zero(), one = V::set1(T(1));
  // Subnormals (and 0, negatives: replaced at the end) into the normal range.
  V xs = x, k = zero;
  const auto small = V::lt(x, V::set1(C::kMinNormal));
  if (V::any(small)) {
    xs = V::select(small, V::mul(x, V::set1(C::kSubScale)), x);
    k = V::select(small, V::set1(-C::kSubK), zero);
  }
  // k += biased exponent - bias: the exponent bits OR'ed into 2^mant_bits read as
  // 2^mant_bits + e, no integer conversion.
  const V e = V::bor(V::template shr<C::kMantBits>(xs), V::set1(C::kTwoMant));
  k = V::add(k, V::sub(e, V::set1(C::kTwoMant + C::kBias)));
  // m in [1, 2), then [sqrt(1/2), sqrt(2)): |s| <= 0.1716.
  V m = V::bor(V::band(xs, V::from_bits(C::kMantMask)), one);
  const auto big = V::gt(m, V::set1(C::kSqrt2));
  m = V::select(big, V::mul(m, V::set1(T(0.5))), m);
  k = V::select(big, V::add(k, one), k);
  // s = u / v = (m - 1) / (m + 1) as sh + sl: u is exact, v = vh + vl exactly.
  const V u = V::sub(m, one);
  const Two<V> v = two_sum(m, one);
  const V sh = V::div(u, v.hi);
  const Two<V> q = two_prod(sh, v.hi);  // u - q.hi is exact (Sterbenz)
  const V sl = V::div(V::sub(V::sub(V::sub(u, q.hi), q.lo), V::mul(sh, v.lo)), v.hi);
  // log m = 2 sh + (2 sl + sh R(sh^2)); log x = k ln2_hi (exact) + log m + k ln2_lo.
  const V z = V::mul(sh, sh);
  const V tail = V::add(V::add(sl, sl), V::mul(sh, V::mul(z, poly(z, C::kLogP))));
  const Two<V> a = two_sum(V::mul(k, V::set1(C::kLogLn2Hi)), V::add(sh, sh));
  const V lo = V::add(a.lo, V::add(tail, V::mul(k, V::set1(C::kLogLn2Lo))));
  const V hi = V::add(a.hi, lo);
  const V lo2 = V::sub(lo, V::sub(hi, a.hi));
  // Specials: anything but a finite x > 0.
  const auto ok = V::m_and(V::gt(x, zero), V::lt(x, V::set1(T(__builtin_inf()))));
  if (!V::any(V::m_not(ok))) return {hi, lo2};
  const V special = V::select(V::eq(x, zero), V::set1(-T(__builtin_inf())),
                              V::select(V::lt(x, zero), V::from_bits(C::kQuietNan), V::add(x, x)));
  return {V::select(ok, hi, special), V::select(ok, lo2, zero)};
}

}  // namespace vmath

template <class V>
inline V vexp(V x) {
  return vmath::exp_core(x, V::zero());
}

template <class V>
inline V vlog(V x) {
  return vmath::log_core(x).hi;
}

// x**p for x >= 0, p > 0 (other arguments give whatever exp(p log x) gives, NaN
// quieted).
template <class V>
inline V vpow(V x, V p) {
  using T = typename V::value_type;
  const vmath::Two<V> l = vmath::log_core(x);
  // p (hi + lo) = y.hi + (y.lo + p lo). Where p or log x is so large that the split
  // overflows (NaN in y.lo), exp_core has clamped y.hi and drops the low part.
  const vmath::Two<V> y = vmath::two_prod(p, l.hi);
  V r = vmath::exp_core(y.hi, V::add(y.lo, V::mul(p, l.lo)));
  const V one = V::set1(T(1));
  r = V::select(V::is_nan(p), V::add(p, p), r);
  r = V::select(V::is_nan(x), V::add(x, x), r);
  return V::select(V::eq(x, one), one, r);  // also when p * 0 would be NaN
}

template <class T>
void exp_array(const T* x, T* y, index_t n) {
  using V = Vec<T>;
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, vexp(V::load(x + i)));
  if (i < n) V::store_n(y + i, vexp(V::load_n(x + i, n - i)), n - i);
}

template <class T>
void log_array(const T* x, T* y, index_t n) {
  using V = Vec<T>;
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, vlog(V::load(x + i)));
  if (i < n) V::store_n(y + i, vlog(V::load_n(x + i, n - i)), n - i);
}

template <class T>
void pow_array(const T* x, const T* p, T* y, index_t n) {
  using V = Vec<T>;
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, vpow(V::load(x + i), V::load(p + i)));
  if (i < n) {
    const index_t m = n - i;
    V::store_n(y + i, vpow(V::load_n(x + i, m), V::load_n(p + i, m)), m);
  }
}

// n_blocks N x N blocks side by side transposed (an N x n_blocks*N matrix with row
// stride ss into an n_blocks*N x N one with row stride ds): block k is read at
// src + k*N and written at dst + k*N*ds by V::transpose_block. Exposed for the tests.
template <class T>
void transpose_array(const T* src, index_t ss, T* dst, index_t ds, index_t n_blocks) {
  using V = Vec<T>;
  for (index_t k = 0; k < n_blocks; ++k) V::transpose_block(src + k * V::N, ss, dst + k * V::N * ds, ds);
}
