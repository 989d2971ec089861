// The vector math (exp, log, pow over arrays): every compiled SIMD path against the
// scalar path, bitwise, over random and special inputs and every tail length; and
// the scalar path against libm (long double) within the documented tolerances.
//
//   fastpool_math_tests [n]     # n random inputs per function and dtype, default 200000
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fastpool/dispatch.hpp"

using namespace fastpool;

namespace {

int failures = 0;

template <class T>
const MathKernels<T>& math_of(const KernelTable& t);
template <>
const MathKernels<float>& math_of<float>(const KernelTable& t) { return t.math32; }
template <>
const MathKernels<double>& math_of<double>(const KernelTable& t) { return t.math64; }

template <class T>
const char* dtype() { return sizeof(T) == 4 ? "f32" : "f64"; }

template <class T>
struct Bits;
template <>
struct Bits<float> {
  using U = std::uint32_t;
};
template <>
struct Bits<double> {
  using U = std::uint64_t;
};

template <class T>
T from_bits(typename Bits<T>::U u) {
  T x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Random bit patterns: every exponent (subnormals, inf, NaN) equally likely.
template <class T>
T random_bits(std::mt19937_64& rng) {
  return from_bits<T>(typename Bits<T>::U(rng()));
}

// Values that sit on the edges of exp/log/pow.
template <class T>
std::vector<T> specials() {
  using L = std::numeric_limits<T>;
  const T inf = L::infinity(), nan = L::quiet_NaN();
  std::vector<T> v = {T(0), T(-0.0), T(1), T(-1), T(2), T(0.5), inf, -inf, nan, -nan,
                      L::denorm_min(), -L::denorm_min(), L::min(), -L::min(), L::max(), -L::max(),
                      T(1e-30), T(1e-8), L::epsilon(), T(1) + L::epsilon(), T(1) - L::epsilon() / 2,
                      from_bits<T>(sizeof(T) == 4 ? typename Bits<T>::U(0x7f800001u)   // signalling NaN
                                                  : typename Bits<T>::U(0x7ff0000000000001ULL)),
                      L::min() / 2, L::min() / 3, L::denorm_min() * 3};
  // exp thresholds: overflow, the normal/subnormal boundary, the last subnormal.
  const double edges[] = {std::log(double(L::max())), std::log(double(L::min())),
                          std::log(double(L::denorm_min())), std::log(double(L::denorm_min())) - 0.7,
                          std::log(double(L::denorm_min()) / 2), 0.5 * std::log(2.0), -0.5 * std::log(2.0),
                          std::log(2.0), 88.0, 89.0, -104.0, 709.0, 710.0, -745.0, -746.0, 1e10, -1e10};
  for (double e : edges) {
    T x = T(e);
    for (int i = 0; i < 6; ++i) {
      v.push_back(x);
      x = std::nextafter(x, inf);
    }
    x = T(e);
    for (int i = 0; i < 6; ++i) {
      x = std::nextafter(x, -inf);
      v.push_back(x);
    }
  }
  return v;
}

// Units in the last place of T at the (long double) value r.
template <class T>
long double ulp_at(long double r) {
  using L = std::numeric_limits<T>;
  int e;
  std::frexp(r, &e);  // |r| = f 2^e, f in [0.5, 1)
  int ex = e - L::digits;
  if (ex < L::min_exponent - L::digits) ex = L::min_exponent - L::digits;  // subnormal spacing
  return std::ldexp(1.0L, ex);
}

// |y - r| in ulps of T; 0 when both are the same infinity / NaN, huge on a mismatch.
template <class T>
long double ulp_error(T y, long double r) {
  if (std::isnan(r)) return std::isnan(y) ? 0 : 1e30L;
  const T rt = T(r);
  if (std::isinf(rt) || std::isinf(y)) return y == rt ? 0 : 1e30L;
  return std::fabs((long double)y - r) / ulp_at<T>(r);
}

struct Stat {
  long double max = 0;
  double at = 0, at2 = 0;
  void add(long double err, double x, double x2 = 0) {
    if (err > max) {
      max = err;
      at = x;
      at2 = x2;
    }
  }
};

template <class T>
void compare_paths(const char* fn, Isa isa, const std::vector<T>& ref, const std::vector<T>& got) {
  if (std::memcmp(ref.data(), got.data(), ref.size() * sizeof(T)) == 0) return;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::memcmp(&ref[i], &got[i], sizeof(T)) != 0) {
      std::printf("FAIL %s %s %s: element %zu differs from scalar (%.17g vs %.17g)\n", isa_name(isa), dtype<T>(), fn,
                  i, double(ref[i]), double(got[i]));
      break;
    }
  }
  ++failures;
}

template <class T>
void check_dtype(int n_random) {
  using L = std::numeric_limits<T>;
  const bool f32 = sizeof(T) == 4;
  std::mt19937_64 rng(f32 ? 2024 : 4202);
  std::uniform_real_distribution<double> uni(0, 1);
  const std::vector<T> sp = specials<T>();

  // ---- inputs
  std::vector<T> ex = sp, lx = sp, px, pp;
  const double lo = f32 ? -110 : -760, hi = f32 ? 95 : 720;
  for (int i = 0; i < n_random; ++i) {
    ex.push_back(T(lo + (hi - lo) * uni(rng)));                           // wide range
    ex.push_back(T((uni(rng) - 0.5) * 2));                                // |x| < 1
    if (i % 8 == 0) ex.push_back(random_bits<T>(rng));                    // anything
    lx.push_back(std::fabs(random_bits<T>(rng)));                         // every exponent
    lx.push_back(T(1 + (uni(rng) - 0.5) * (i % 2 ? 1e-3 : 0.6)));         // near 1
    if (i % 8 == 0) lx.push_back(random_bits<T>(rng));                    // negatives, NaN
  }
  // pow: x log-uniform over the finite positives, p log-uniform in [1e-3, 1e3]; plus
  // the specials crossed with a few exponents.
  const double lmin = std::log(double(L::denorm_min())), lmax = std::log(double(L::max()));
  for (int i = 0; i < n_random; ++i) {
    px.push_back(T(std::exp(lmin + (lmax - lmin) * uni(rng))));
    pp.push_back(T(std::exp(std::log(1e-3) + std::log(1e6) * uni(rng))));
    px.push_back(T(std::exp((uni(rng) - 0.5) * 4)));  // x near 1, large p
    pp.push_back(T(std::exp((uni(rng)) * (f32 ? 12 : 25))));
  }
  const T pspec[] = {T(1), T(0.5), T(2), T(3), T(1e-3), T(1e3), T(0.1), L::denorm_min(), L::infinity(), L::quiet_NaN()};
  for (T x : sp)
    for (T p : pspec) {
      px.push_back(x);
      pp.push_back(p);
    }

  // ---- every path against scalar, bitwise (whole arrays, then every tail length at
  // every alignment of the first 70 elements).
  const MathKernels<T>& ref = math_of<T>(kernel_table(Isa::scalar));
  std::vector<T> e0(ex.size()), l0(lx.size()), p0(px.size());
  ref.exp(ex.data(), e0.data(), index_t(ex.size()));
  ref.log(lx.data(), l0.data(), index_t(lx.size()));
  ref.pow(px.data(), pp.data(), p0.data(), index_t(px.size()));
  int paths = 0;
  for (Isa isa : available_isas()) {
    ++paths;
    const MathKernels<T>& k = math_of<T>(kernel_table(isa));
    std::vector<T> e1(ex.size()), l1(lx.size()), p1(px.size());
    k.exp(ex.data(), e1.data(), index_t(ex.size()));
    k.log(lx.data(), l1.data(), index_t(lx.size()));
    k.pow(px.data(), pp.data(), p1.data(), index_t(px.size()));
    compare_paths("exp", isa, e0, e1);
    compare_paths("log", isa, l0, l1);
    compare_paths("pow", isa, p0, p1);
    // Tails: a sentinel after the last element must survive.
    bool tail_ok = true;
    for (index_t off = 0; off < 8 && tail_ok; ++off)
      for (index_t n = 0; n <= 40 && tail_ok; ++n) {
        std::vector<T> y(n + 1, T(-7));
        k.exp(sp.data() + off, y.data(), n);
        tail_ok = y[n] == T(-7) && std::memcmp(y.data(), e0.data() + off, n * sizeof(T)) == 0;
        k.log(sp.data() + off, y.data(), n);
        tail_ok = tail_ok && y[n] == T(-7) && std::memcmp(y.data(), l0.data() + off, n * sizeof(T)) == 0;
        k.pow(px.data() + off, pp.data() + off, y.data(), n);
        tail_ok = tail_ok && y[n] == T(-7) && std::memcmp(y.data(), p0.data() + off, n * sizeof(T)) == 0;
      }
    if (!tail_ok) {
      std::printf("FAIL %s %s: partial arrays differ from scalar or write past the end\n", isa_name(isa), dtype<T>());
      ++failures;
    }
  }

  // ---- scalar against libm (long double)
  Stat se, sl, sp_rel;
  int special_fail = 0;
  for (std::size_t i = 0; i < ex.size(); ++i) se.add(ulp_error<T>(e0[i], std::exp((long double)ex[i])), ex[i]);
  for (std::size_t i = 0; i < lx.size(); ++i) {
    const long double r = lx[i] < 0 ? std::numeric_limits<long double>::quiet_NaN() : std::log((long double)lx[i]);
    sl.add(ulp_error<T>(l0[i], r), lx[i]);
  }
  const double pow_range = f32 ? 80 : 700;
  for (std::size_t i = 0; i < px.size(); ++i) {
    const long double x = px[i], p = pp[i];
    if (!(x > 0) || !(p > 0) || std::isinf(x) || std::isinf(p)) continue;
    const long double y = p * std::log(x);
    if (std::fabs(y) >= pow_range) continue;
    const long double r = std::pow(x, p);
    sp_rel.add(std::fabs((p0[i] - r) / r), double(x), double(p));
  }
  // Exact special values.
  const T inf = L::infinity();
  auto expect = [&](const char* what, T got, T want) {
    const bool ok = std::isnan(want) ? std::isnan(got) : std::memcmp(&got, &want, sizeof(T)) == 0;
    if (!ok) {
      std::printf("FAIL %s %s: got %.17g, want %.17g\n", dtype<T>(), what, double(got), double(want));
      ++special_fail;
    }
  };
  {
    const T xs[] = {inf, -inf, L::quiet_NaN(), T(0), T(-0.0), T(1e6), T(-1e6)};
    const T want_exp[] = {inf, T(0), L::quiet_NaN(), T(1), T(1), inf, T(0)};
    const T lxs[] = {T(0), T(-0.0), inf, -inf, T(-1), L::quiet_NaN(), T(1), -L::denorm_min()};
    const T want_log[] = {-inf, -inf, inf, L::quiet_NaN(), L::quiet_NaN(), L::quiet_NaN(), T(0), L::quiet_NaN()};
    const T pxs[] = {T(0), T(0), inf, L::quiet_NaN(), T(1), T(1), T(1), T(2), T(0.5), T(4)};
    const T pps[] = {T(2), T(1e-3), T(0.5), T(2), T(1e30), inf, L::quiet_NaN(), T(1e6), T(1e6), T(0.5)};
    const T want_pow[] = {T(0), T(0), inf, L::quiet_NaN(), T(1), T(1), T(1), inf, T(0), T(2)};
    T y[10];
    ref.exp(xs, y, 7);
    for (int i = 0; i < 7; ++i) expect("exp special", y[i], want_exp[i]);
    ref.log(lxs, y, 8);
    for (int i = 0; i < 8; ++i) expect("log special", y[i], want_log[i]);
    ref.pow(pxs, pps, y, 10);
    for (int i = 0; i < 10; ++i) expect("pow special", y[i], want_pow[i]);
  }
  failures += special_fail;

  const double tol_ulp = 4, tol_pow = f32 ? 1e-6 : 1e-14;
  const bool ok_e = se.max <= tol_ulp, ok_l = sl.max <= tol_ulp, ok_p = sp_rel.max <= tol_pow;
  failures += !ok_e + !ok_l + !ok_p;
  std::printf("%s: %zu exp, %zu log, %zu pow inputs x %d paths bitwise vs scalar; vs libm: exp max %.3Lf ulp "
              "(x=%.9g)%s, log max %.3Lf ulp (x=%.9g)%s, pow max rel %.3Lg (x=%.9g p=%.9g)%s; specials %s\n",
              dtype<T>(), ex.size(), lx.size(), px.size(), paths, se.max, se.at, ok_e ? "" : " FAIL", sl.max, sl.at,
              ok_l ? "" : " FAIL", sp_rel.max, sp_rel.at, sp_rel.at2, ok_p ? "" : " FAIL",
              special_fail ? "FAIL" : "ok");
}

// Lanes of each path's Vec<T> (the block size of its transpose): the register width
// over sizeof(T); one for the scalar path.
template <class T>
index_t lanes_of(Isa isa) {
  switch (isa) {
    case Isa::scalar: return 1;
    case Isa::neon: return index_t(16 / sizeof(T));
    case Isa::avx2: return index_t(32 / sizeof(T));
    case Isa::avx512: return index_t(64 / sizeof(T));
  }
  return 0;
}

// MathKernels::transpose (V::transpose_block per N x N block) of every path against a
// plain loop: random bit patterns (NaNs with payloads, signalling ones, infinities,
// subnormals) must arrive bit for bit, and nothing around the destination blocks (between
// rows, before, after) may change, nor the source.
template <class T>
void check_transpose(int n_cases) {
  using U = typename Bits<T>::U;
  constexpr int kBits = int(sizeof(U) * 8);
  const U exp_mask = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ULL);
  const U sentinel = sizeof(T) == 4 ? U(0xa5a5a5a5u) : U(0xa5a5a5a5a5a5a5a5ULL);
  std::mt19937_64 rng(sizeof(T) == 4 ? 77 : 78);
  auto value = [&]() -> U {
    U u = U(rng());
    switch (rng() % 4) {
      case 0: return u | exp_mask;                                      // NaN (payload) or inf
      case 1: return (u & ~exp_mask) | (u & (U(1) << (kBits - 1)));     // subnormal or zero
      default: return u;
    }
  };
  int paths = 0, cases = 0;
  for (Isa isa : available_isas()) {
    ++paths;
    const MathKernels<T>& k = math_of<T>(kernel_table(isa));
    const index_t N = lanes_of<T>(isa);
    bool ok = true;
    for (int c = 0; c < n_cases && ok; ++c) {
      const index_t nb = index_t(rng() % 5);                     // blocks (0: no-op)
      const index_t cols = nb * N;
      const index_t ss = N + index_t(rng() % (2 * N + 8));        // src rows may overlap: read only
      const index_t ds = N + index_t(rng() % (N + 8));            // dst rows N apart at least
      const index_t s_off = index_t(rng() % 17), d_off = index_t(rng() % 17), guard = 23;
      const index_t s_len = s_off + (N - 1) * ss + (cols > 0 ? cols : 1) + guard;
      const index_t d_len = d_off + (cols > 0 ? (cols - 1) * ds + N : 0) + guard;
      std::vector<U> src(static_cast<std::size_t>(s_len)), dst(static_cast<std::size_t>(d_len), sentinel);
      for (U& u : src) u = value();
      const std::vector<U> src0 = src;
      std::vector<U> want = dst;
      for (index_t i = 0; i < N; ++i)
        for (index_t j = 0; j < cols; ++j) want[std::size_t(d_off + j * ds + i)] = src[std::size_t(s_off + i * ss + j)];
      // Through T pointers: the kernels see float / double data.
      std::vector<T> ts(src.size()), td(dst.size());
      std::memcpy(ts.data(), src.data(), src.size() * sizeof(U));
      std::memcpy(td.data(), dst.data(), dst.size() * sizeof(U));
      k.transpose(ts.data() + s_off, ss, td.data() + d_off, ds, nb);
      std::memcpy(dst.data(), td.data(), dst.size() * sizeof(U));
      std::memcpy(src.data(), ts.data(), src.size() * sizeof(U));
      ++cases;
      if (dst != want || src != src0) {
        for (std::size_t e = 0; e < dst.size(); ++e)
          if (dst[e] != want[e]) {
            std::printf("FAIL %s %s transpose (N=%ld blocks=%ld ss=%ld ds=%ld): dst[%zu] = %#llx, want %#llx%s\n",
                        isa_name(isa), dtype<T>(), long(N), long(nb), long(ss), long(ds), e, (unsigned long long)dst[e],
                        (unsigned long long)want[e], want[e] == sentinel ? " (outside the blocks)" : "");
            break;
          }
        if (src != src0) std::printf("FAIL %s %s transpose: source modified\n", isa_name(isa), dtype<T>());
        ok = false;
        ++failures;
      }
    }
  }
  std::printf("%s: transpose, %d random cases over %d paths bitwise vs a plain loop (NaN payloads, guards)\n",
              dtype<T>(), cases, paths);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200000;
  check_dtype<float>(n);
  check_dtype<double>(n);
  check_transpose<float>(2000);
  check_transpose<double>(2000);
  std::string names;
  for (Isa isa : available_isas()) names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  std::printf("math: %zu SIMD paths (%s) x 2 dtypes: %d failures\n", available_isas().size(), names.c_str(), failures);
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}
