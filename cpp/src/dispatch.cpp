#include "fastpool/dispatch.hpp"
#include "fastpool/ops.hpp"

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#define FASTPOOL_X86 1
#endif

namespace fastpool {

// Each ISA translation unit fills its table (see src/isa/*.cpp).
namespace scalar { void fill_table(KernelTable& t); }
#ifdef FASTPOOL_HAVE_AVX2
namespace avx2 { void fill_table(KernelTable& t); }
#endif
#ifdef FASTPOOL_HAVE_AVX512
namespace avx512 { void fill_table(KernelTable& t); }
#endif
#ifdef FASTPOOL_HAVE_NEON
namespace neon { void fill_table(KernelTable& t); }
#endif

namespace {

#ifdef FASTPOOL_X86
struct CpuFeatures {
  bool avx2 = false;
  bool avx512 = false;
};

// cpuid says what the CPU has; xgetbv says whether the OS saves the YMM/ZMM state.
CpuFeatures detect_x86() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  (void)xhi;
  const bool ymm = (xlo & 0x6) == 0x6, zmm = (xlo & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), f512 = b & (1u << 16), dq = b & (1u << 17),
             cd = b & (1u << 28), bw = b & (1u << 30), vl = b & (1u << 31);
  f.avx2 = ymm && avx2 && fma;
  f.avx512 = f.avx2 && zmm && f512 && dq && cd && bw && vl;
  return f;
}
#endif

struct Registry {
  KernelTable tables[4];
  bool available[4] = {false, false, false, false};
  bool compiled[4] = {false, false, false, false};
  std::atomic<int> active{0};

  Registry() {
    scalar::fill_table(tables[int(Isa::scalar)]);
    compiled[int(Isa::scalar)] = available[int(Isa::scalar)] = true;
#ifdef FASTPOOL_X86
    const CpuFeatures f = detect_x86();
#endif
    // fill_table itself is compiled with its ISA's flags (the compiler may use wide
    // registers to copy the table): call it only where the CPU runs that ISA.
#ifdef FASTPOOL_HAVE_AVX2
    compiled[int(Isa::avx2)] = true;
    available[int(Isa::avx2)] = f.avx2;
    if (f.avx2) avx2::fill_table(tables[int(Isa::avx2)]);
#endif
#ifdef FASTPOOL_HAVE_AVX512
    compiled[int(Isa::avx512)] = true;
    available[int(Isa::avx512)] = f.avx512;
    if (f.avx512) avx512::fill_table(tables[int(Isa::avx512)]);
#endif
#ifdef FASTPOOL_HAVE_NEON
    neon::fill_table(tables[int(Isa::neon)]);
    compiled[int(Isa::neon)] = available[int(Isa::neon)] = true;  // baseline on arm64
#endif
    for (int i = 0; i < 4; ++i)
      if (available[i]) active = i;
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

const Isa kOrder[] = {Isa::scalar, Isa::neon, Isa::avx2, Isa::avx512};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::neon: return "neon";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa i : kOrder)
    if (name == isa_name(i)) return i;
  throw std::invalid_argument("unknown SIMD path '" + name +
                              "': expected one of scalar, avx2, avx512, neon, best");
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> v;
  for (Isa i : kOrder)
    if (registry().compiled[int(i)]) v.push_back(i);
  return v;
}

std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  for (Isa i : kOrder)
    if (registry().available[int(i)]) v.push_back(i);
  return v;
}

Isa active_isa() { return Isa(registry().active.load()); }

void set_isa(Isa isa) {
  Registry& r = registry();
  if (!r.available[int(isa)]) {
    std::string avail;
    for (Isa i : available_isas()) avail += std::string(avail.empty() ? "" : ", ") + isa_name(i);
    throw std::invalid_argument(std::string("SIMD path '") + isa_name(isa) + "' is not " +
                                (r.compiled[int(isa)] ? "supported by this CPU" : "compiled in") +
                                "; available: " + avail);
  }
  r.active = int(isa);
}

const KernelTable& kernel_table() { return registry().tables[registry().active.load()]; }

const KernelTable& kernel_table(Isa isa) {
  if (!registry().available[int(isa)]) set_isa(isa);  // throws with the message
  return registry().tables[int(isa)];
}

// ------------------------------------------------------------------ public ops
namespace {
template <class T> const PoolKernels<T>& ops();
template <> const PoolKernels<float>& ops<float>() { return kernel_table().f32; }
template <> const PoolKernels<double>& ops<double>() { return kernel_table().f64; }
}  // namespace

template <class T>
void max_pool_forward(const T* x, T* y, std::int64_t* indices, const PoolGeometry& g, int threads) {
  check_geometry(g);
  ops<T>().max_forward(x, y, indices, g, threads);
}

template <class T>
index_t max_pool_backward(const T* gy, const T* x, const std::int64_t* indices, T* gx,
                          const PoolGeometry& g, int threads) {
  check_geometry(g);
  if (!x && !indices) throw std::invalid_argument("max_pool_backward needs x or indices");
  return ops<T>().max_backward(gy, x, indices, gx, g, threads);
}

template <class T>
void avg_pool_forward(const T* x, T* y, const PoolGeometry& g, const AvgOptions& o, int threads) {
  check_geometry(g);
  if (o.divisor_override < 0) throw std::invalid_argument("divisor_override must be >= 1");
  ops<T>().avg_forward(x, y, g, o, threads);
}

template <class T>
void avg_pool_backward(const T* gy, T* gx, const PoolGeometry& g, const AvgOptions& o, int threads) {
  check_geometry(g);
  if (o.divisor_override < 0) throw std::invalid_argument("divisor_override must be >= 1");
  ops<T>().avg_backward(gy, gx, g, o, threads);
}

template <class T>
static void check_power(const BinProblem& pb, BinReduce op, const BinParams<T>& pp) {
  if (op == BinReduce::dropout || op == BinReduce::dropout_mean) {
    if (!(pp.p >= T(0) && pp.p <= T(1) && pp.keep >= T(0) && pp.keep <= T(1)) || pp.drop_below > (1ULL << 32))
      throw std::invalid_argument("the dropout rate must be in [0, 1]");
    return;
  }
  if (op != BinReduce::lp && op != BinReduce::gem && op != BinReduce::mixed) return;
  const bool mixed = op == BinReduce::mixed;
  auto bad = [&](T p) { return mixed ? !(std::fabs(p) < T(__builtin_inf())) : !(p > T(0)) || p == T(__builtin_inf()); };
  const char* what = mixed ? "alpha must be finite" : "p must be finite and > 0";
  if (pp.p_channel) {
    for (index_t c = 0; c < pb.channels; ++c)
      if (bad(pp.p_channel[c])) throw std::invalid_argument(what);
  } else if (bad(pp.p)) {
    throw std::invalid_argument(what);
  }
  if (op == BinReduce::gem && !(pp.eps > T(0))) throw std::invalid_argument("eps must be > 0");
}

template <class T>
index_t bin_forward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                 const BinLevel<T>* levels, int n_levels, int threads) {
  check_bins(pb, op, levels, n_levels);
  check_power(pb, op, pp);
  return ops<T>().bin_forward(x, pb, op, pp, levels, n_levels, threads);
}

template <class T>
index_t bin_backward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                     const BinLevel<T>* levels, int n_levels, T* grad_x, T* grad_p, int threads) {
  check_bins(pb, op, levels, n_levels);
  check_power(pb, op, pp);
  const bool given = op == BinReduce::max && levels[0].given_indices;
  for (int l = 1; l < n_levels; ++l)
    if ((levels[l].given_indices != nullptr) != (levels[0].given_indices != nullptr))
      throw std::invalid_argument("given indices are needed for every level or for none");
  if (!x && op != BinReduce::avg && !given) throw std::invalid_argument("this backward needs x");
  if (op == BinReduce::stochastic)  // the draw's gradient goes to its position
    throw std::invalid_argument("stochastic pooling's backward is max's with the drawn positions as given indices");
  // Per-plane dL/dp, summed over the batch here in a fixed order.
  std::vector<T> per_plane((op == BinReduce::gem || op == BinReduce::mixed) && grad_p ? std::size_t(pb.batch * pb.channels) : 0);
  const index_t bad = ops<T>().bin_backward(x, pb, op, pp, levels, n_levels, grad_x,
                                            per_plane.empty() ? nullptr : per_plane.data(), threads);
  if (!per_plane.empty())
    for (index_t c = 0; c < pb.channels; ++c) {
      T s = per_plane[std::size_t(c)];
      for (index_t n = 1; n < pb.batch; ++n) s += per_plane[std::size_t(n * pb.channels + c)];
      grad_p[c] = s;
    }
  return bad;
}

template <class T>
void line_max_forward(const T* x, const T* add, T* y, const LineProblem& lp, int threads) {
  check_lines(lp);
  ops<T>().line_forward(x, add, y, lp, threads);
}

template <class T>
void line_max_backward(const T* gy, const T* x, const T* add, T* gx, const LineProblem& lp, int threads) {
  check_lines(lp);
  ops<T>().line_backward(gy, x, add, gx, lp, threads);
}

template <class T>
void center_max_forward(const T* x, const T* x2, T* y, const LineProblem& lp, int threads) {
  check_lines(lp);
  ops<T>().center_forward(x, x2, y, lp, threads);
}

template <class T>
void fractional_max_forward(const T* x, const T* samples, T* y, std::int64_t* idx, const FractionalProblem& fp,
                            int threads) {
  check_fractional(fp);
  const index_t planes = fp.batch * fp.channels;
  for (index_t p = 0; p < planes * fp.rank; ++p)
    if (!(samples[p] >= T(0) && samples[p] < T(1))) throw std::invalid_argument("samples must be in [0, 1)");
  ops<T>().fractional_forward(x, samples, y, idx, fp, threads);
}

template <class T>
index_t max_unpool_forward(const T* x, const std::int64_t* idx, T* y, const UnpoolProblem& up, int threads) {
  check_unpool(up);
  return ops<T>().unpool_forward(x, idx, y, up, threads);
}

template <class T>
index_t scatter_add(const T* x, const std::int64_t* idx, T* y, const UnpoolProblem& up, int threads) {
  check_unpool(up);
  return ops<T>().scatter_add(x, idx, y, up, threads);
}

template <class T>
index_t max_unpool_backward(const T* gy, const std::int64_t* idx, T* gx, const UnpoolProblem& up, int threads) {
  check_unpool(up);
  return ops<T>().unpool_backward(gy, idx, gx, up, threads);
}

template <class T>
static void check_beta(T beta) {
  if (!(std::fabs(beta) < T(__builtin_inf()))) throw std::invalid_argument("beta must be finite");
}

template <class T>
void hopfield_forward(const T* x, const T* queries, T beta, T* y, const HopfieldProblem& hp, int threads) {
  check_hopfield(hp);
  check_beta(beta);
  ops<T>().hopfield_forward(x, queries, beta, y, hp, threads);
}

template <class T>
void hopfield_backward(const T* x, const T* queries, T beta, const T* grad_y, T* grad_x, T* grad_queries,
                       T* grad_beta, const HopfieldProblem& hp, int threads) {
  check_hopfield(hp);
  check_beta(beta);
  const std::size_t qc = std::size_t(hp.queries * hp.channels);
  std::vector<T> gq(std::size_t(hp.batch) * qc), gb(std::size_t(hp.batch));
  ops<T>().hopfield_backward(x, queries, beta, grad_y, grad_x, gq.data(), gb.data(), hp, threads);
  for (std::size_t i = 0; i < qc; ++i) {  // over the batch in order
    T s = gq[i];
    for (index_t n = 1; n < hp.batch; ++n) s += gq[std::size_t(n) * qc + i];
    grad_queries[i] = s;
  }
  T b = gb[0];
  for (index_t n = 1; n < hp.batch; ++n) b += gb[std::size_t(n)];
  *grad_beta = b;
}

#define FASTPOOL_INSTANTIATE(T)                                                                 \
  template void max_pool_forward<T>(const T*, T*, std::int64_t*, const PoolGeometry&, int);     \
  template index_t max_pool_backward<T>(const T*, const T*, const std::int64_t*, T*,             \
                                        const PoolGeometry&, int);                              \
  template void avg_pool_forward<T>(const T*, T*, const PoolGeometry&, const AvgOptions&, int); \
  template void avg_pool_backward<T>(const T*, T*, const PoolGeometry&, const AvgOptions&, int); \
  template index_t bin_forward<T>(const T*, const BinProblem&, BinReduce, const BinParams<T>&,  \
                               const BinLevel<T>*, int, int);                                  \
  template index_t bin_backward<T>(const T*, const BinProblem&, BinReduce, const BinParams<T>&, \
                                   const BinLevel<T>*, int, T*, T*, int);                    \
  template void line_max_forward<T>(const T*, const T*, T*, const LineProblem&, int);             \
  template void line_max_backward<T>(const T*, const T*, const T*, T*, const LineProblem&, int); \
  template void center_max_forward<T>(const T*, const T*, T*, const LineProblem&, int);          \
  template index_t max_unpool_forward<T>(const T*, const std::int64_t*, T*, const UnpoolProblem&, int); \
  template index_t max_unpool_backward<T>(const T*, const std::int64_t*, T*, const UnpoolProblem&, int); \
  template index_t scatter_add<T>(const T*, const std::int64_t*, T*, const UnpoolProblem&, int);              \
  template void fractional_max_forward<T>(const T*, const T*, T*, std::int64_t*, const FractionalProblem&, int); \
  template void hopfield_forward<T>(const T*, const T*, T, T*, const HopfieldProblem&, int);                      \
  template void hopfield_backward<T>(const T*, const T*, T, const T*, T*, T*, T*, const HopfieldProblem&, int);
FASTPOOL_INSTANTIATE(float)
FASTPOOL_INSTANTIATE(double)
#undef FASTPOOL_INSTANTIATE

}  // namespace fastpool
