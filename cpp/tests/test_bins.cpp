// The bin reductions (PoolKernels<T>::bin_forward / bin_backward: max, avg, LP, GeM
// over explicit bins): every compiled SIMD path and thread count against the scalar
// path, bitwise, on random problems (ranks 1-3, both layouts, both dtypes, channel
// tails, planes above the whole-plane copy threshold), random bin grids (adaptive,
// windows, multi-level pyramids written through strided views into one array); the
// scalar path against a plain long double reference; a few hand-computed results; and
// the errors of check_bins. Runs on its own (no Python), so the NEON path can be
// checked under qemu-aarch64.
//
//   fastpool_bin_tests [cases]     # random problems, default 80 (case 3, 13, 23, ... are large)
//   FASTPOOL_TEST_VERBOSE=1 fastpool_bin_tests   # also one line per problem, with its run time
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastpool/bins.hpp"
#include "fastpool/dispatch.hpp"
#include "fastpool/geometry.hpp"
#include "fastpool/ops.hpp"

using namespace fastpool;

namespace {

int failures = 0;
long comparisons = 0;

void fail(const std::string& what) {
  ++failures;
  if (failures <= 80) std::printf("FAIL %s\n", what.c_str());
  if (failures == 80) std::printf("(further failures not printed)\n");
}

template <class T>
const PoolKernels<T>& kernels_of(const KernelTable& t);
template <>
const PoolKernels<float>& kernels_of<float>(const KernelTable& t) { return t.f32; }
template <>
const PoolKernels<double>& kernels_of<double>(const KernelTable& t) { return t.f64; }

template <class T>
const char* dtype() { return sizeof(T) == 4 ? "f32" : "f64"; }

template <class A>
bool same_bits(const std::vector<A>& a, const std::vector<A>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(A)) == 0;
}

// First differing element of two arrays, for the failure message.
template <class A>
std::string first_diff(const std::vector<A>& a, const std::vector<A>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(A)) != 0)
      return " (first difference at " + std::to_string(i) + ": " + std::to_string(double(a[i])) + " vs " +
             std::to_string(double(b[i])) + ")";
  return a.size() == b.size() ? "" : " (sizes differ)";
}

const char* op_name(BinReduce op) {
  switch (op) {
    case BinReduce::max: return "max";
    case BinReduce::avg: return "avg";
    case BinReduce::lp: return "lp";
    case BinReduce::soft: return "soft";
    case BinReduce::mixed: return "mixed";
    case BinReduce::stochastic: return "stochastic";
    case BinReduce::stochastic_mean: return "stochastic_mean";
    case BinReduce::dropout: return "dropout";
    case BinReduce::dropout_mean: return "dropout_mean";
    default: return "gem";
  }
}

// ------------------------------------------------------------------ problems

// One output grid: bins per axis and where its values go in the shared output array.
struct Grid {
  AxisBins ax[kMaxRank];
  std::string desc;
  index_t off = 0, stride_n = 0, stride_c = 0, stride[kMaxRank] = {0, 0, 0};
  index_t bins() const { return ax[0].out * ax[1].out * ax[2].out; }
};

struct Case {
  int id = 0;
  BinProblem pb;
  std::vector<Grid> grids;
  index_t out_size = 0;
  std::vector<char> covered;  // output elements some level writes
  bool large = false;
  std::string desc;
};

using Rng = std::mt19937_64;

int pick(Rng& rng, int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); }

std::string sizes(const index_t* s) {
  return "(" + std::to_string(s[0]) + "," + std::to_string(s[1]) + "," + std::to_string(s[2]) + ")";
}

Grid adaptive_grid(Rng& rng, const BinProblem& pb, int rank, int cap) {
  Grid g;
  index_t out[3];
  const bool whole = pick(rng, 0, 3) == 0;  // global pooling: its own kernels when alone
  for (int i = 0; i < 3; ++i) {
    const index_t in = pb.in[i];
    if (whole)
      out[i] = 1;
    else if (i < 3 - rank)
      out[i] = pick(rng, 0, 7) == 0 ? 2 : 1;  // embedded axis: mostly 1, sometimes out > in
    else if (cap > 0)
      out[i] = pick(rng, 1, int(std::min<index_t>(in + 3, cap)));
    else
      out[i] = pick(rng, 1, int(in + 3));  // out > in occurs
    g.ax[i] = adaptive_bins(in, out[i]);
  }
  g.desc = "adaptive" + sizes(out);
  return g;
}

bool window_grid(Rng& rng, const BinProblem& pb, int rank, Grid& g) {
  const bool ceil_mode = pick(rng, 0, 1) == 1, cip = pick(rng, 0, 1) == 1;
  std::string d = "window[";
  try {
    for (int i = 0; i < 3; ++i) {
      if (i < 3 - rank) {
        g.ax[i] = window_bins(make_axis(pb.in[i], 1, 1, 1, 0, 0, false), cip);
        continue;
      }
      const int k = pick(rng, 1, 5), s = pick(rng, 1, 3), dl = pick(rng, 1, 2);
      const int p0 = pick(rng, 0, k / 2 + 1), p1 = pick(rng, 0, k / 2 + 1);
      const AxisGeometry a = make_axis(pb.in[i], k, s, dl, p0, p1, ceil_mode);
      g.ax[i] = window_bins(a, cip);
      d += "k" + std::to_string(k) + "s" + std::to_string(s) + "d" + std::to_string(dl) + "p" + std::to_string(p0) +
           "," + std::to_string(p1) + (i < 2 ? " " : "");
    }
  } catch (const std::invalid_argument&) {
    return false;
  }
  g.desc = d + (ceil_mode ? " ceil" : "") + (cip ? " cip" : "") + "]";
  return true;
}

// Places the levels in one output array. mode 0: spatial pyramid order, (N, C*total)
// with level l at C*(bins before l), stride_c = bins of the level; 1: the same with
// channels innermost, (N, total, C), stride_c = 1; 2: each level its own block with
// padded strides (gaps nobody may write); 3: as 0 with the spatial axes transposed.
void place(Rng& rng, Case& cs, int mode) {
  const index_t N = cs.pb.batch, C = cs.pb.channels;
  index_t total = 0;
  for (const Grid& g : cs.grids) total += g.bins();
  index_t prefix = 0, end = 0;
  for (Grid& g : cs.grids) {
    const index_t O0 = g.ax[0].out, O1 = g.ax[1].out, O2 = g.ax[2].out, B = g.bins();
    if (mode == 0 || mode == 3) {
      g.off = C * prefix;
      g.stride_n = C * total;
      g.stride_c = B;
      if (mode == 0) {
        g.stride[0] = O1 * O2, g.stride[1] = O2, g.stride[2] = 1;
      } else {
        g.stride[0] = 1, g.stride[1] = O0, g.stride[2] = O0 * O1;
      }
    } else if (mode == 1) {
      g.off = prefix * C;
      g.stride_n = total * C;
      g.stride_c = 1;
      g.stride[0] = O1 * O2 * C, g.stride[1] = O2 * C, g.stride[2] = C;
    } else {
      g.stride[2] = pick(rng, 1, 2);
      g.stride[1] = O2 * g.stride[2] + pick(rng, 0, 2);
      g.stride[0] = O1 * g.stride[1] + pick(rng, 0, 2);
      g.stride_c = O0 * g.stride[0] + pick(rng, 0, 3);
      g.stride_n = C * g.stride_c + pick(rng, 0, 5);
      g.off = end + pick(rng, 0, 3);
    }
    prefix += B;
    const index_t last = g.off + (N - 1) * g.stride_n + (C - 1) * g.stride_c + (O0 - 1) * g.stride[0] +
                         (O1 - 1) * g.stride[1] + (O2 - 1) * g.stride[2];
    end = std::max(end, last + 1);
  }
  cs.out_size = end + (mode == 2 ? pick(rng, 0, 3) : 0);
  cs.covered.assign(std::size_t(cs.out_size), 0);
  for (const Grid& g : cs.grids)
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c)
        for (index_t a = 0; a < g.ax[0].out; ++a)
          for (index_t b = 0; b < g.ax[1].out; ++b)
            for (index_t w = 0; w < g.ax[2].out; ++w) {
              const index_t at = g.off + n * g.stride_n + c * g.stride_c + a * g.stride[0] + b * g.stride[1] +
                                 w * g.stride[2];
              if (cs.covered[std::size_t(at)]) {
                std::printf("test bug: overlapping output placement, case %d\n", cs.id);
                std::exit(2);
              }
              cs.covered[std::size_t(at)] = 1;
            }
  static const char* names[] = {"pyramid(N,C*total)", "channels_last(N,total,C)", "padded", "transposed"};
  cs.desc += std::string(" out=") + names[mode];
}

bool make_case(Rng& rng, int id, Case& cs) {
  cs = Case();
  cs.id = id;
  BinProblem& pb = cs.pb;
  int rank = pick(rng, 1, 3);
  cs.large = id % 10 == 3;
  pb.batch = pick(rng, 1, 3);
  pb.channels = pick(rng, 1, 40);
  pb.channels_last = pick(rng, 0, 1) == 1;
  for (index_t& s : pb.in) s = 1;
  if (cs.large) {
    // Above kPlaneCopyBytes (256 KiB) for some paths: P * lanes * sizeof(T). Rows
    // of copies for AVX-512 (P > 4096), AVX2 (P > 8192), NEON (P > 16384) and,
    // with one or two planes, the scalar path (P > 65536 in f32).
    // The first two (cases 3 and 13) take the row-copy path on every SIMD path
    // (NEON, scalar too), so short runs under qemu cover it.
    const int variant = (id / 10) % 5;
    pb.channels_last = (id / 10) % 7 == 6;  // mostly channels_first
    pb.batch = pick(rng, 1, 2);
    pb.channels = pick(rng, 9, 20) / int(pb.batch);
    if (variant == 0) rank = 2, pb.batch = 1, pb.channels = pick(rng, 2, 6), pb.in[1] = pick(rng, 120, 140),
                      pb.in[2] = pick(rng, 130, 150);
    if (variant == 1) rank = 1, pb.batch = 1, pb.channels = pick(rng, 1, 2), pb.in[2] = pick(rng, 66000, 70000);
    if (variant == 2) rank = 1, pb.in[2] = pick(rng, 4500, 5500);
    if (variant == 3) rank = 1, pb.in[2] = pick(rng, 8300, 9500);
    if (variant == 4) rank = 2, pb.in[1] = pick(rng, 60, 80), pb.in[2] = pick(rng, 70, 90);
  } else {
    const int hi = rank == 1 ? 90 : rank == 2 ? 30 : 10;
    for (int i = 3 - rank; i < 3; ++i) pb.in[i] = pick(rng, 1, hi);
  }
  const int cap = cs.large ? 12 : 0;
  const int kind = pick(rng, 0, 9);
  for (int tries = 0; tries < 20 && cs.grids.empty(); ++tries) {
    if (kind <= 2) {
      cs.grids.push_back(adaptive_grid(rng, pb, rank, cs.large && pick(rng, 0, 3) ? cap : 0));
    } else if (kind <= 5) {
      Grid g;
      if (window_grid(rng, pb, rank, g)) cs.grids.push_back(g);
    } else {
      const int n = pick(rng, 1, 4);
      for (int l = 0; l < n; ++l) {
        Grid g;
        if (kind == 9 && pick(rng, 0, 1) && window_grid(rng, pb, rank, g))
          cs.grids.push_back(g);
        else
          cs.grids.push_back(adaptive_grid(rng, pb, rank, 8));
      }
    }
  }
  if (cs.grids.empty()) return false;
  cs.desc = "problem N=" + std::to_string(pb.batch) + " C=" + std::to_string(pb.channels) + " in=" + sizes(pb.in) +
            (pb.channels_last ? " channels_last" : " channels_first") + " levels:";
  for (const Grid& g : cs.grids) cs.desc += " " + g.desc;
  int mode = pick(rng, 0, 3);
  if (cs.grids.size() == 1 && mode == 3 && pick(rng, 0, 1)) mode = 2;
  place(rng, cs, mode);
  return true;
}

template <class T>
std::vector<BinLevel<T>> levels_of(const Case& cs, T* y, std::int64_t* idx, const T* gy, const std::int64_t* gidx) {
  std::vector<BinLevel<T>> lv(cs.grids.size());
  for (std::size_t l = 0; l < lv.size(); ++l) {
    const Grid& g = cs.grids[l];
    for (int i = 0; i < 3; ++i) {
      lv[l].axis[i] = g.ax[i].view();
      lv[l].stride[i] = g.stride[i];
    }
    lv[l].stride_n = g.stride_n;
    lv[l].stride_c = g.stride_c;
    lv[l].y = y ? y + g.off : nullptr;
    lv[l].indices = idx ? idx + g.off : nullptr;
    lv[l].grad_y = gy ? gy + g.off : nullptr;
    lv[l].given_indices = gidx ? gidx + g.off : nullptr;
  }
  return lv;
}

// ------------------------------------------------------------------ reference

index_t x_index(const BinProblem& pb, index_t n, index_t c, index_t q) {
  return pb.channels_last ? (n * pb.plane() + q) * pb.channels + c : (n * pb.channels + c) * pb.plane() + q;
}

// Calls f(level, n, c, output position, taps (plane positions in row-major bin
// order), divisor) for every output of every level.
template <class F>
void each_bin(const Case& cs, F&& f) {
  const BinProblem& pb = cs.pb;
  const index_t H = pb.in[1], W = pb.in[2];
  std::vector<index_t> taps;
  for (std::size_t l = 0; l < cs.grids.size(); ++l) {
    const Grid& g = cs.grids[l];
    const AxisBins* ax = g.ax;
    for (index_t od = 0; od < ax[0].out; ++od)
      for (index_t oh = 0; oh < ax[1].out; ++oh)
        for (index_t ow = 0; ow < ax[2].out; ++ow) {
          taps.clear();
          for (index_t a = 0; a < ax[0].count[od]; ++a)
            for (index_t b = 0; b < ax[1].count[oh]; ++b)
              for (index_t j = 0; j < ax[2].count[ow]; ++j)
                taps.push_back(((ax[0].first[od] + a * ax[0].step) * H + ax[1].first[oh] + b * ax[1].step) * W +
                               ax[2].first[ow] + j * ax[2].step);
          const index_t div = ax[0].divisor[od] * ax[1].divisor[oh] * ax[2].divisor[ow];
          for (index_t n = 0; n < pb.batch; ++n)
            for (index_t c = 0; c < pb.channels; ++c) {
              const index_t at = g.off + n * g.stride_n + c * g.stride_c + od * g.stride[0] + oh * g.stride[1] +
                                 ow * g.stride[2];
              f(l, n, c, at, taps, div);
            }
        }
  }
}

using LD = long double;

template <class T>
LD unit_roundoff() { return sizeof(T) == 4 ? LD(6e-8) : LD(1.2e-16); }
template <class T>
LD rel_tol() { return sizeof(T) == 4 ? LD(2e-4) : LD(1e-9); }

template <class T>
bool close(LD got, LD want, LD scale) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= scale + LD(1e-300);
}

// pow in double: within the tolerances above for both dtypes, and the data's range
// (|x| <= 2**104, p <= 7) stays inside double's; powl would dominate the run time.
LD dpow(LD a, LD b) { return LD(std::pow(double(a), double(b))); }

struct Ref {
  std::vector<LD> v, tol;  // value and allowed error
};

// The exponent of channel c.
template <class T>
LD p_of(const BinParams<T>& pp, index_t c) { return LD(pp.p_channel ? pp.p_channel[c] : pp.p); }

template <class T>
LD magnitude(BinReduce op, T v, T eps) {
  if (op == BinReduce::gem) return LD(v < eps ? eps : v);
  return std::fabs(LD(v));
}

// Forward reference of avg / lp / gem (max is checked exactly elsewhere).
template <class T>
Ref ref_forward(const Case& cs, const std::vector<T>& x, BinReduce op, const BinParams<T>& pp) {
  Ref r;
  r.v.assign(std::size_t(cs.out_size), 0);
  r.tol.assign(std::size_t(cs.out_size), 0);
  const LD u = unit_roundoff<T>(), rt = rel_tol<T>();
  each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t div) {
    const LD nt = LD(taps.size());
    if (op == BinReduce::avg) {
      LD s = 0, sa = 0;
      for (index_t q : taps) {
        const LD v = LD(x[std::size_t(x_index(cs.pb, n, c, q))]);
        s += v;
        sa += std::fabs(v);
      }
      r.v[std::size_t(at)] = s / LD(div);
      r.tol[std::size_t(at)] = sa / LD(div) * (rt + nt * u);
      return;
    }
    const LD p = p_of(pp, c);
    LD s = 0;
    for (index_t q : taps) s += dpow(magnitude(op, x[std::size_t(x_index(cs.pb, n, c, q))], pp.eps), p);
    if (op == BinReduce::gem) s /= LD(div);
    const LD y = dpow(s, 1 / p);
    r.v[std::size_t(at)] = y;
    r.tol[std::size_t(at)] = y * (rt + nt * u) * (1 + p);
  });
  return r;
}

// Backward reference: grad_x, and for gem the per-plane dL/dp.
template <class T>
void ref_backward(const Case& cs, const std::vector<T>& x, const std::vector<T>& gy, BinReduce op,
                  const BinParams<T>& pp, Ref& gx, Ref& gp) {
  const BinProblem& pb = cs.pb;
  gx.v.assign(std::size_t(pb.size()), 0);
  gx.tol.assign(std::size_t(pb.size()), 0);
  gp.v.assign(std::size_t(pb.batch * pb.channels), 0);
  gp.tol.assign(std::size_t(pb.batch * pb.channels), 0);
  const LD u = unit_roundoff<T>(), rt = rel_tol<T>();
  each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t div) {
    const LD g = LD(gy[std::size_t(at)]);
    const LD nt = LD(taps.size());
    if (op == BinReduce::max) {
      T best = x[std::size_t(x_index(pb, n, c, taps[0]))];
      index_t arg = taps[0];
      for (std::size_t t = 1; t < taps.size(); ++t) {
        const T v = x[std::size_t(x_index(pb, n, c, taps[t]))];
        if (v > best || std::isnan(v)) best = v, arg = taps[t];
      }
      const std::size_t i = std::size_t(x_index(pb, n, c, arg));
      gx.v[i] += g;
      gx.tol[i] += std::fabs(g) * 4 * u;
      return;
    }
    if (op == BinReduce::avg) {
      for (index_t q : taps) {
        const std::size_t i = std::size_t(x_index(pb, n, c, q));
        gx.v[i] += g / LD(div);
        gx.tol[i] += std::fabs(g) / LD(div) * 4 * u;
      }
      return;
    }
    const bool gem = op == BinReduce::gem;
    const LD p = p_of(pp, c);
    LD a = 0, b = 0;
    for (index_t q : taps) {
      const LD m = magnitude(op, x[std::size_t(x_index(pb, n, c, q))], pp.eps);
      const LD mp = dpow(m, p);
      a += mp;
      if (m > 0) b += mp * LD(std::log(double(m)));
    }
    const LD D = gem ? LD(div) : 1;
    const LD y = dpow(a / D, 1 / p);
    if (y == 0) return;  // lp with every tap 0: zero gradient
    const LD err = rt + nt * u * 4;
    for (index_t q : taps) {
      const T v = x[std::size_t(x_index(pb, n, c, q))];
      const LD m = magnitude(op, v, pp.eps);
      LD d = g / D * dpow(m / y, p - 1);
      if (gem) {
        if (!(v > pp.eps)) d = 0;
      } else {
        if (v == 0) d = 0;
        if (v < 0) d = -d;
      }
      const std::size_t i = std::size_t(x_index(pb, n, c, q));
      gx.v[i] += d;
      gx.tol[i] += std::fabs(d) * err * (1 + p);
    }
    if (gem) {
      const LD t1 = b / (p * a), t2 = LD(std::log(double(a / D))) / (p * p);
      const std::size_t i = std::size_t(n * pb.channels + c);
      gp.v[i] += g * y * (t1 - t2);
      gp.tol[i] += std::fabs(g * y) * (std::fabs(t1) + std::fabs(t2) + 1 / p) * err * 8 * (1 + p);
    }
  });
}

// SoftPool reference, y = sum e x / sum e with e = exp(x - max), and its gradient
// g e / S0 (1 + x - y). Tolerances follow the rounding of x - max in T (an exponent
// off by u |x - max|) and of the sums.
template <class T>
void ref_soft(const Case& cs, const std::vector<T>& x, const std::vector<T>& gy, Ref& ry, Ref& rg) {
  const BinProblem& pb = cs.pb;
  ry.v.assign(std::size_t(cs.out_size), 0);
  ry.tol.assign(std::size_t(cs.out_size), 0);
  rg.v.assign(std::size_t(pb.size()), 0);
  rg.tol.assign(std::size_t(pb.size()), 0);
  const LD u = unit_roundoff<T>(), rt = rel_tol<T>();
  each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t) {
    const LD nt = LD(taps.size());
    auto val = [&](index_t q) { return LD(x[std::size_t(x_index(pb, n, c, q))]); };
    LD m = val(taps[0]);
    for (index_t q : taps) m = std::max(m, val(q));
    LD s0 = 0, s1 = 0;
    for (index_t q : taps) {
      const LD e = std::exp(val(q) - m);
      s0 += e;
      s1 += e * val(q);
    }
    const LD y = s1 / s0;
    LD ty = 0;
    for (index_t q : taps) {
      const LD v = val(q), e = std::exp(v - m);
      ty += e * (std::fabs(v) + std::fabs(y)) * (std::fabs(v - m) + nt + 4) * u;
    }
    ty = 4 * ty / s0 + std::fabs(y) * rt;
    ry.v[std::size_t(at)] = y;
    ry.tol[std::size_t(at)] = ty;
    const LD g = LD(gy[std::size_t(at)]);
    for (index_t q : taps) {
      const LD v = val(q), w = std::exp(v - m) / s0, d = g * w * (1 + v - y);
      const std::size_t i = std::size_t(x_index(pb, n, c, q));
      rg.v[i] += d;
      rg.tol[i] += 4 * std::fabs(g) * w *
                   (std::fabs(1 + v - y) * ((std::fabs(v - m) + nt + 4) * u + rt) + (std::fabs(v) + std::fabs(y) + 1) * u + ty);
    }
  });
}

// Mixed pooling reference, y = alpha max + (1 - alpha) sum / D; grad_x: alpha g at the
// argmax (scan rule v > best), (1 - alpha) g / D at every tap; dL/dalpha per plane
// g (max - avg).
template <class T>
void ref_mixed(const Case& cs, const std::vector<T>& x, const std::vector<T>& gy, const BinParams<T>& pp, Ref& ry,
               Ref& rg, Ref& ra) {
  const BinProblem& pb = cs.pb;
  ry.v.assign(std::size_t(cs.out_size), 0);
  ry.tol.assign(std::size_t(cs.out_size), 0);
  rg.v.assign(std::size_t(pb.size()), 0);
  rg.tol.assign(std::size_t(pb.size()), 0);
  ra.v.assign(std::size_t(pb.batch * pb.channels), 0);
  ra.tol.assign(std::size_t(pb.batch * pb.channels), 0);
  const LD u = unit_roundoff<T>();
  each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t div) {
    const LD nt = LD(taps.size()), a = p_of(pp, c), D = LD(div);
    T best = x[std::size_t(x_index(pb, n, c, taps[0]))];
    index_t arg = taps[0];
    LD s = 0, sa = 0;
    for (index_t q : taps) {
      const T v = x[std::size_t(x_index(pb, n, c, q))];
      if (v > best) best = v, arg = q;
      s += LD(v);
      sa += std::fabs(LD(v));
    }
    const LD avg = s / D, tavg = (nt + 2) * u * sa / D;  // the sum's and the division's rounding
    const LD y = a * LD(best) + (1 - a) * avg;
    ry.v[std::size_t(at)] = y;
    ry.tol[std::size_t(at)] = 4 * (std::fabs(1 - a) * tavg + (std::fabs(a * LD(best)) + std::fabs((1 - a) * avg) + std::fabs(y)) * u);
    const LD g = LD(gy[std::size_t(at)]);
    for (index_t q : taps) {
      const std::size_t i = std::size_t(x_index(pb, n, c, q));
      const LD d = (1 - a) * g / D + (q == arg ? a * g : 0);
      rg.v[i] += d;
      rg.tol[i] += 4 * u * (std::fabs((1 - a) * g / D) + std::fabs(d) + (q == arg ? std::fabs(a * g) : 0));
    }
    const std::size_t pi = std::size_t(n * pb.channels + c);
    ra.v[pi] += g * (LD(best) - avg);
    ra.tol[pi] += 4 * std::fabs(g) * (tavg + (std::fabs(LD(best)) + std::fabs(avg)) * u) + 4 * u * std::fabs(ra.v[pi]);
  });
}

// Stochastic pooling's documented draw, written out again: u from splitmix64's output
// function of (seed, plane, bin); the first tap whose running sum (in T, tap order)
// exceeds u S, else the last tap where the running sum equals S and the tap is > 0,
// else the first tap.
std::uint64_t ref_mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <class T>
T ref_uniform(std::uint64_t seed, index_t plane, index_t bin) {
  const std::uint64_t h = ref_mix64(seed ^ (std::uint64_t(plane) * 0x9e3779b97f4a7c15ULL));
  const std::uint64_t z = ref_mix64(h + std::uint64_t(bin) * 0xd1b54a32d192ed03ULL);
  return sizeof(T) == 4 ? T(double(z >> 40) / 16777216.0) : T(double(z >> 11) / 9007199254740992.0);
}

// Calls f(n, c, output position, the drawn tap) for every bin of level 0.
template <class T, class F>
void ref_draws(const Case& cs, const std::vector<T>& x, std::uint64_t seed, F&& f) {
  const BinProblem& pb = cs.pb;
  const Grid& g = cs.grids[0];
  const index_t bins_per_plane = g.ax[0].out * g.ax[1].out * g.ax[2].out;
  std::vector<index_t> taps;
  for (index_t bin = 0; bin < bins_per_plane; ++bin) {
    const index_t od = bin / (g.ax[1].out * g.ax[2].out), oh = bin / g.ax[2].out % g.ax[1].out, ow = bin % g.ax[2].out;
    taps.clear();
    for (index_t a = 0; a < g.ax[0].count[od]; ++a)
      for (index_t b = 0; b < g.ax[1].count[oh]; ++b)
        for (index_t j = 0; j < g.ax[2].count[ow]; ++j)
          taps.push_back(((g.ax[0].first[od] + a * g.ax[0].step) * pb.in[1] + g.ax[1].first[oh] + b * g.ax[1].step) *
                             pb.in[2] + g.ax[2].first[ow] + j * g.ax[2].step);
    for (index_t n = 0; n < pb.batch; ++n)
      for (index_t c = 0; c < pb.channels; ++c) {
        auto val = [&](index_t q) { return x[std::size_t(x_index(pb, n, c, q))]; };
        T s = val(taps[0]);
        for (std::size_t i = 1; i < taps.size(); ++i) s += val(taps[i]);
        const T t = ref_uniform<T>(seed, n * pb.channels + c, bin) * s;
        index_t pick = taps[0];
        T run = 0;
        for (index_t q : taps) {
          const T prev = run;
          run += val(q);
          if (!(prev > t) && (run > t || (run == s && val(q) > 0))) pick = q;
        }
        const index_t at =
            g.off + n * g.stride_n + c * g.stride_c + od * g.stride[0] + oh * g.stride[1] + ow * g.stride[2];
        f(n, c, at, pick);
      }
  }
}

template <class T>
void check_ref(const std::string& what, const std::vector<T>& got, const Ref& ref, const std::vector<char>* mask) {
  ++comparisons;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (mask && !(*mask)[i]) continue;
    if (!close<T>(LD(got[i]), ref.v[i], ref.tol[i])) {
      char buf[200];
      std::snprintf(buf, sizeof buf, " vs reference: element %zu is %.9g, want %.9Lg (tolerance %.3Lg)", i,
                    double(got[i]), ref.v[i], ref.tol[i]);
      fail(what + buf);
      return;
    }
  }
}

// ------------------------------------------------------------------ random data

// Ties (multiples of 0.5) and negatives; NaNs for max; non-negative with values at
// and below eps for GeM; times a power of two (ties kept) so the scaled power means
// see huge and tiny data too.
template <class T>
std::vector<T> make_x(Rng& rng, const Case& cs, BinReduce op, T eps, int scale_exp, bool nans) {
  std::normal_distribution<double> nd;
  std::vector<T> x(std::size_t(cs.pb.size()));
  const T scale = T(std::ldexp(1.0, scale_exp));
  for (auto& v : x) v = T(std::round(nd(rng) * 2) / 2) * scale;
  if (op == BinReduce::max && nans && x.size() > 3) {
    x[x.size() / 3] = T(NAN);
    for (int i = 0; i < 1 + int(x.size() / 300); ++i) x[std::size_t(pick(rng, 0, int(x.size()) - 1))] = T(NAN);
  }
  if (op == BinReduce::gem) {
    const T small[] = {T(0), eps / 2, T(eps * T(0.999)), eps, T(1e-9), T(-1)};
    for (auto& v : x) v = std::fabs(v);
    for (std::size_t i = 0; i < x.size(); i += std::size_t(pick(rng, 1, 40))) x[i] = small[pick(rng, 0, 5)];
  }
  return x;
}

// Stochastic pooling: the draws (exact, against ref_draws) and the inference form
// sum x^2 / sum x with its gradient (2x - y) / S, on non-negative data with zeros and
// ties; a negative value, a NaN or an inf inside a bin is reported.
template <class T, class Who, class Threads, class Cover>
void check_stochastic(Rng& rng, const Case& cs, Who& who, Threads& threads_of, Cover& check_cover) {
  const BinProblem& pb = cs.pb;
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const std::vector<Isa> isas = available_isas();
  const std::size_t O = std::size_t(cs.out_size), X = std::size_t(pb.size());
  const T ysent = T(-12345.25);  // check_case's sentinels
  const std::int64_t isent = -7;
  const std::string tag = std::string(sizeof(T) == 4 ? "f32" : "f64") + " case " + std::to_string(cs.id);
  std::vector<T> x = make_x<T>(rng, cs, BinReduce::avg, T(0), 0, false);
  for (auto& v : x) v = std::fabs(v) < T(0.75) ? T(0) : std::fabs(v);  // ReLU-like: many zeros, ties
  std::vector<T> gy(O);
  for (auto& v : gy) v = T(pick(rng, -8, 8)) / T(4);
  BinParams<T> pp;
  pp.seed = (std::uint64_t(rng()) << 32) ^ std::uint64_t(rng());
  // draws: values and positions
  if (cs.grids.size() == 1) {
    std::vector<T> y0(O, ysent);
    std::vector<std::int64_t> i0(O, isent);
    auto lv = levels_of<T>(cs, y0.data(), i0.data(), nullptr, nullptr);
    const index_t r0 = ref.bin_forward(x.data(), pb, BinReduce::stochastic, pp, lv.data(), int(lv.size()), 1);
    ++comparisons;
    if (r0 != -1) fail("scalar stochastic forward " + tag + " reported an invalid value");
    ++comparisons;
    bool ok = true;
    ref_draws(cs, x, pp.seed, [&](index_t n, index_t c, index_t at, index_t q) {
      if (!ok) return;
      const T want = x[std::size_t(x_index(pb, n, c, q))];
      if (i0[std::size_t(at)] != q || std::memcmp(&y0[std::size_t(at)], &want, sizeof(T)) != 0) {
        fail("scalar stochastic forward " + tag + " at output " + std::to_string(at) + ": drew @" +
             std::to_string(i0[std::size_t(at)]) + ", want @" + std::to_string(q));
        ok = false;
      }
    });
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), y2(O, ysent);
      std::vector<std::int64_t> i1(O, isent);
      auto l1 = levels_of<T>(cs, y1.data(), i1.data(), nullptr, nullptr);
      auto l2 = levels_of<T>(cs, y2.data(), nullptr, nullptr, nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::stochastic, pp, l1.data(), int(l1.size()), threads_of(k));
      kk.bin_forward(x.data(), pb, BinReduce::stochastic, pp, l2.data(), int(l2.size()), threads_of(k));
      comparisons += 3;
      if (!same_bits(y0, y1)) fail(who(k, "stochastic forward") + first_diff(y0, y1));
      if (i0 != i1) fail(who(k, "stochastic forward indices") + first_diff(i0, i1));
      if (!same_bits(y0, y2)) fail(who(k, "stochastic forward (no indices)") + first_diff(y0, y2));
    }
  }
  // inference form
  {
    std::vector<T> y0(O, ysent), g0(X, ysent);
    auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::stochastic_mean, pp, lv.data(), int(lv.size()), 1);
    ref.bin_backward(x.data(), pb, BinReduce::stochastic_mean, pp, lv.data(), int(lv.size()), g0.data(), nullptr, 1);
    Ref ry, rg;
    ry.v.assign(O, 0);
    ry.tol.assign(O, 0);
    rg.v.assign(X, 0);
    rg.tol.assign(X, 0);
    const LD u = unit_roundoff<T>();
    each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t) {
      LD s = 0, q = 0;
      for (index_t t : taps) {
        const LD v = LD(x[std::size_t(x_index(pb, n, c, t))]);
        s += v;
        q += v * v;
      }
      const LD nt = LD(taps.size()), y = s == 0 ? 0 : q / s, g = LD(gy[std::size_t(at)]);
      ry.v[std::size_t(at)] = y;
      ry.tol[std::size_t(at)] = 4 * (nt + 2) * u * y;
      if (s == 0) return;
      for (index_t t : taps) {
        const std::size_t i = std::size_t(x_index(pb, n, c, t));
        const LD v = LD(x[i]);
        rg.v[i] += g * (2 * v - y) / s;
        rg.tol[i] += 8 * (nt + 4) * u * std::fabs(g) * (2 * v + y) / s;
      }
    });
    check_cover("scalar stochastic_mean forward " + tag, y0, nullptr);
    check_ref("scalar stochastic_mean forward " + tag, y0, ry, &cs.covered);
    check_ref("scalar stochastic_mean backward " + tag, g0, rg, nullptr);
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), g1(X, ysent);
      auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::stochastic_mean, pp, l1.data(), int(l1.size()), threads_of(k));
      kk.bin_backward(x.data(), pb, BinReduce::stochastic_mean, pp, l1.data(), int(l1.size()), g1.data(), nullptr,
                      threads_of(k));
      comparisons += 2;
      if (!same_bits(y0, y1)) fail(who(k, "stochastic_mean forward") + first_diff(y0, y1));
      if (!same_bits(g0, g1)) fail(who(k, "stochastic_mean backward") + first_diff(g0, g1));
    }
  }
  // a value that is no weight, inside some bin: reported by every path and form
  std::vector<index_t> inside;
  each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t, const std::vector<index_t>& taps, index_t) {
    if (inside.size() < 64) inside.push_back(x_index(pb, n, c, taps[taps.size() / 2]));
  });
  const T bad_values[] = {T(-0.5), T(NAN), T(INFINITY), T(-INFINITY)};
  std::vector<T> xb = x;
  xb[std::size_t(inside[std::size_t(pick(rng, 0, int(inside.size()) - 1))])] = bad_values[cs.id % 4];
  for (std::size_t k = 0; k < isas.size(); ++k) {
    const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
    std::vector<T> y1(O, ysent), g1(X, ysent);
    auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
    for (BinReduce op : {BinReduce::stochastic, BinReduce::stochastic_mean}) {
      if (op == BinReduce::stochastic && cs.grids.size() != 1) continue;
      ++comparisons;
      if (kk.bin_forward(xb.data(), pb, op, pp, l1.data(), int(l1.size()), threads_of(k)) != 0)
        fail(who(k, (std::string(op_name(op)) + " forward: invalid value not reported").c_str()));
    }
    ++comparisons;
    if (kk.bin_backward(xb.data(), pb, BinReduce::stochastic_mean, pp, l1.data(), int(l1.size()), g1.data(), nullptr,
                        threads_of(k)) != 0)
      fail(who(k, "stochastic_mean backward: invalid value not reported"));
  }
}

// Max-pooling dropout, from the documented rule: element q of plane P is dropped when
// h < floor(rate 2**32), h = f(f(q_lo ^ k0) ^ (k1 + q_hi)), (k0, k1) the halves of
// mix64(seed ^ (P + 1) golden), f MurmurHash3's finalizer.
std::uint32_t ref_fmix32(std::uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

bool ref_dropped(std::uint64_t seed, index_t plane, index_t q, double rate) {
  const std::uint64_t key = ref_mix64(seed ^ ((std::uint64_t(plane) + 1) * 0x9e3779b97f4a7c15ULL));
  const std::uint64_t uq = std::uint64_t(q);
  const std::uint32_t h =
      ref_fmix32(ref_fmix32(std::uint32_t(uq) ^ std::uint32_t(key)) ^ std::uint32_t((key >> 32) + (uq >> 32)));
  return double(h) < std::floor(rate * 4294967296.0);
}

// Training: the exact max over the taps with dropped ones read as 0 (first maximum,
// the last NaN), its position or -1 for a dropped winner, and the backward's routing;
// inference: sum p q^c_i x_i (c_i: taps ranked above, NaN highest, the earlier of
// equal values higher) with its gradient, in long double. Every path bitwise equal
// to scalar.
template <class T, class Who, class Threads, class Cover>
void check_dropout(Rng& rng, const Case& cs, Who& who, Threads& threads_of, Cover& check_cover) {
  if (cs.grids.size() != 1) return;  // windows: one grid
  const BinProblem& pb = cs.pb;
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const std::vector<Isa> isas = available_isas();
  const std::size_t O = std::size_t(cs.out_size), X = std::size_t(pb.size());
  const T ysent = T(-12345.25);
  const std::int64_t isent = -7;
  const std::string tag = std::string(sizeof(T) == 4 ? "f32" : "f64") + " case " + std::to_string(cs.id);
  std::vector<T> x = make_x<T>(rng, cs, BinReduce::max, T(0), 0, cs.id % 3 == 0);
  for (std::size_t i = 0; i < x.size(); i += std::size_t(pick(rng, 1, 60))) x[i] = pick(rng, 0, 1) ? T(0) : T(-0.0);
  if (cs.id % 5 == 0 && x.size() > 2) x[x.size() / 2] = T(INFINITY), x[x.size() / 3 + 1] = T(-INFINITY);
  std::vector<T> gy(O);
  for (auto& v : gy) v = T(pick(rng, -8, 8)) / T(4);
  const double rates[] = {0.0, 0.25, 0.5, 0.9, 1.0, 1.0 / 3.0};
  const double rate = rates[cs.id % 6];
  BinParams<T> pp;
  pp.p = T(rate);
  pp.keep = T(1.0 - rate);
  pp.drop_below = dropout_threshold(rate);
  pp.seed = (std::uint64_t(rng()) << 32) ^ std::uint64_t(rng());
  auto xv = [&](index_t n, index_t c, index_t q) { return x[std::size_t(x_index(pb, n, c, q))]; };
  // training
  {
    std::vector<T> y0(O, ysent), g0(X, ysent);
    std::vector<std::int64_t> i0(O, isent);
    auto lv = levels_of<T>(cs, y0.data(), i0.data(), gy.data(), nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::dropout, pp, lv.data(), 1, 1);
    ref.bin_backward(x.data(), pb, BinReduce::dropout, pp, lv.data(), 1, g0.data(), nullptr, 1);
    std::vector<T> rg(X, T(0));
    bool ok = true;
    ++comparisons;
    each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t) {
      if (!ok) return;
      const index_t plane = n * pb.channels + c;
      auto val = [&](index_t q) { return ref_dropped(pp.seed, plane, q, rate) ? T(0) : xv(n, c, q); };
      index_t best = taps[0];
      for (index_t q : taps)
        if (val(q) > val(best) || std::isnan(double(val(q)))) best = q;
      const bool kept = !ref_dropped(pp.seed, plane, best, rate);
      const T want = val(best);
      const std::int64_t want_i = kept ? best : -1;
      if (kept) rg[std::size_t(x_index(pb, n, c, best))] += gy[std::size_t(at)];
      const bool same = std::isnan(double(want)) ? std::isnan(double(y0[std::size_t(at)]))
                                                  : std::memcmp(&want, &y0[std::size_t(at)], sizeof(T)) == 0;
      if (!same || i0[std::size_t(at)] != want_i) {
        fail("scalar dropout forward " + tag + " at output " + std::to_string(at) + ": " +
             std::to_string(double(y0[std::size_t(at)])) + " @" + std::to_string(i0[std::size_t(at)]) + ", want " +
             std::to_string(double(want)) + " @" + std::to_string(want_i));
        ok = false;
      }
    });
    ++comparisons;
    if (!same_bits(g0, rg)) fail("scalar dropout backward " + tag + first_diff(g0, rg));
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), y2(O, ysent), g1(X, ysent);
      std::vector<std::int64_t> i1(O, isent);
      auto l1 = levels_of<T>(cs, y1.data(), i1.data(), gy.data(), nullptr);
      auto l2 = levels_of<T>(cs, y2.data(), nullptr, nullptr, nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::dropout, pp, l1.data(), 1, threads_of(k));
      kk.bin_forward(x.data(), pb, BinReduce::dropout, pp, l2.data(), 1, threads_of(k));
      kk.bin_backward(x.data(), pb, BinReduce::dropout, pp, l1.data(), 1, g1.data(), nullptr, threads_of(k));
      comparisons += 4;
      if (!same_bits(y0, y1)) fail(who(k, "dropout forward") + first_diff(y0, y1));
      if (i0 != i1) fail(who(k, "dropout forward indices") + first_diff(i0, i1));
      if (!same_bits(y0, y2)) fail(who(k, "dropout forward (no indices)") + first_diff(y0, y2));
      if (!same_bits(g0, g1)) fail(who(k, "dropout backward") + first_diff(g0, g1));
    }
  }
  // inference
  {
    std::vector<T> y0(O, ysent), g0(X, ysent);
    auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::dropout_mean, pp, lv.data(), 1, 1);
    ref.bin_backward(x.data(), pb, BinReduce::dropout_mean, pp, lv.data(), 1, g0.data(), nullptr, 1);
    Ref ry, rgr;
    ry.v.assign(O, 0);
    ry.tol.assign(O, 0);
    rgr.v.assign(X, 0);
    rgr.tol.assign(X, 0);
    const LD u = unit_roundoff<T>(), p = LD(pp.keep), q = LD(pp.p), tiny = LD(std::numeric_limits<T>::min());
    std::vector<char> finite_out(O, 1);  // outputs whose reference is finite
    std::vector<T> special_want(O, T(0));
    each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t) {
      const std::size_t nt = taps.size();
      // infinite and NaN terms by flags, and such outputs compared in T: valgrind's x87
      // is 64-bit and stores an infinite long double as the largest finite one
      LD y = 0, scale = 0, floor = 0;
      bool nan = false, pinf = false, ninf = false;
      for (std::size_t i = 0; i < nt; ++i) {
        const T a = xv(n, c, taps[i]);
        int above = 0;
        for (std::size_t j = 0; j < nt; ++j) {
          const T b = xv(n, c, taps[j]);
          const bool an = std::isnan(double(a)), bn = std::isnan(double(b));
          const bool equal = (an && bn) || (!an && !bn && a == b);
          if (j != i && ((bn && !an) || (!an && !bn && b > a) || (equal && j < i))) ++above;
        }
        const LD w = p * std::pow(q, LD(above));
        const std::size_t xi = std::size_t(x_index(pb, n, c, taps[i]));
        const LD g = LD(gy[std::size_t(at)]);
        if (w != 0) {
          const bool finite = std::isfinite(double(a));
          nan = nan || std::isnan(double(a));
          pinf = pinf || (!finite && a > 0);
          ninf = ninf || (!finite && a < 0);
          if (finite) {
            y += w * LD(a);
            scale += w * std::fabs(LD(a));
            floor += 2 * tiny * std::fabs(LD(a));
          }
          rgr.v[xi] += g * w;
          // a weight that reaches T's subnormals is off by up to the smallest normal
          rgr.tol[xi] += std::fabs(g) * (4 * LD(nt + 2) * u * w + 2 * tiny);
        }
      }
      if (nan || pinf || ninf) {
        finite_out[std::size_t(at)] = 0;
        special_want[std::size_t(at)] = nan || (pinf && ninf) ? T(NAN) : pinf ? T(INFINITY) : -T(INFINITY);
      }
      ry.v[std::size_t(at)] = y;
      ry.tol[std::size_t(at)] = 4 * LD(nt + 2) * u * scale + floor;
    });
    ++comparisons;
    for (std::size_t i = 0; i < O; ++i) {
      if (!cs.covered[i] || finite_out[i]) continue;
      const T want = special_want[i], got = y0[i];
      if (std::isnan(double(want)) ? !std::isnan(double(got)) : got != want) {
        fail("scalar dropout_mean forward " + tag + " at output " + std::to_string(i) + ": " +
             std::to_string(double(got)) + ", want " + std::to_string(double(want)));
        break;
      }
    }
    check_cover("scalar dropout_mean forward " + tag, y0, nullptr);
    for (std::size_t i = 0; i < O; ++i) finite_out[i] = finite_out[i] && cs.covered[i];
    check_ref("scalar dropout_mean forward " + tag, y0, ry, &finite_out);
    check_ref("scalar dropout_mean backward " + tag, g0, rgr, nullptr);
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), g1(X, ysent);
      auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::dropout_mean, pp, l1.data(), 1, threads_of(k));
      kk.bin_backward(x.data(), pb, BinReduce::dropout_mean, pp, l1.data(), 1, g1.data(), nullptr, threads_of(k));
      comparisons += 2;
      if (!same_bits(y0, y1)) fail(who(k, "dropout_mean forward") + first_diff(y0, y1));
      if (!same_bits(g0, g1)) fail(who(k, "dropout_mean backward") + first_diff(g0, g1));
    }
  }
}

// ------------------------------------------------------------------ comparisons

template <class T>
void check_case(Rng& rng, const Case& cs) {
  const BinProblem& pb = cs.pb;
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const std::vector<Isa> isas = available_isas();
  const std::size_t O = std::size_t(cs.out_size), X = std::size_t(pb.size());
  const std::size_t planes = std::size_t(pb.batch * pb.channels);
  const T ysent = T(-12345.25);
  const std::int64_t isent = -7;
  const T eps = T(1e-6);
  std::normal_distribution<double> nd;
  std::vector<T> gy(O);
  for (auto& v : gy) v = T(nd(rng));
  const int scale_exp = cs.id % 9 == 4 ? (cs.id % 2 ? 100 : -100) : 0;
  const std::string tag = std::string(dtype<T>()) + " case " + std::to_string(cs.id) + " [" + cs.desc + "]";

  auto threads_of = [&](std::size_t i) { return 1 + int((std::size_t(cs.id) + i) % 3); };
  auto who = [&](std::size_t i, const char* what) {
    return std::string(isa_name(isas[i])) + " threads=" + std::to_string(threads_of(i)) + " " + what + " " + tag;
  };
  // Outputs nobody covers keep the sentinel; covered ones are written.
  auto check_cover = [&](const std::string& what, const std::vector<T>& y, const std::vector<std::int64_t>* idx) {
    for (std::size_t i = 0; i < O; ++i) {
      const bool untouched = std::memcmp(&y[i], &ysent, sizeof(T)) == 0 && (!idx || (*idx)[i] == isent);
      const bool idx_untouched = idx && (*idx)[i] == isent;
      if (!cs.covered[i] && !(std::memcmp(&y[i], &ysent, sizeof(T)) == 0 && (!idx || idx_untouched))) {
        fail(what + ": wrote output element " + std::to_string(i) + " that no level covers");
        return;
      }
      if (cs.covered[i] && (untouched || (idx && idx_untouched))) {
        fail(what + ": left output element " + std::to_string(i) + " unwritten");
        return;
      }
    }
  };

  // ---------------------------------------------------------------- max
  {
    const bool nans = cs.id % 2 == 0;
    const std::vector<T> x = make_x<T>(rng, cs, BinReduce::max, eps, scale_exp, nans);
    const BinParams<T> pp;
    std::vector<T> y0(O, ysent);
    std::vector<std::int64_t> i0(O, isent);
    auto lv = levels_of<T>(cs, y0.data(), i0.data(), nullptr, nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::max, pp, lv.data(), int(lv.size()), 1);
    check_cover("scalar max_forward " + tag, y0, &i0);
    // exact reference: the scan rule v > best || isnan(v)
    ++comparisons;
    bool ok = true;
    each_bin(cs, [&](std::size_t, index_t n, index_t c, index_t at, const std::vector<index_t>& taps, index_t) {
      if (!ok) return;
      T best = x[std::size_t(x_index(pb, n, c, taps[0]))];
      index_t arg = taps[0];
      for (std::size_t t = 1; t < taps.size(); ++t) {
        const T v = x[std::size_t(x_index(pb, n, c, taps[t]))];
        if (v > best || std::isnan(v)) best = v, arg = taps[t];
      }
      if (std::memcmp(&best, &y0[std::size_t(at)], sizeof(T)) != 0 || arg != i0[std::size_t(at)]) {
        fail("scalar max_forward " + tag + " vs reference at output " + std::to_string(at) + ": got " +
             std::to_string(double(y0[std::size_t(at)])) + " @" + std::to_string(i0[std::size_t(at)]) + ", want " +
             std::to_string(double(best)) + " @" + std::to_string(arg));
        ok = false;
      }
    });
    std::vector<T> g0(X, ysent), g0i(X, ysent);
    auto lb = levels_of<T>(cs, nullptr, nullptr, gy.data(), nullptr);
    ref.bin_backward(x.data(), pb, BinReduce::max, pp, lb.data(), int(lb.size()), g0.data(), nullptr, 1);
    Ref rg, rp;
    ref_backward(cs, x, gy, BinReduce::max, pp, rg, rp);
    check_ref("scalar max_backward " + tag, g0, rg, nullptr);
    auto lbi = levels_of<T>(cs, nullptr, nullptr, gy.data(), i0.data());
    const index_t bad0 =
        ref.bin_backward(nullptr, pb, BinReduce::max, pp, lbi.data(), int(lbi.size()), g0i.data(), nullptr, 1);
    ++comparisons;
    if (bad0 != -1) fail("scalar max_backward (given indices) " + tag + " returned " + std::to_string(bad0));
    // The recomputed path pushes a pyramid's coarse gradients down to the finest level's
    // argmax before routing, so it sums in another order: equal to the reference's rounding.
    check_ref("scalar max_backward given indices " + tag, g0i, rg, nullptr);

    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      const int th = threads_of(k);
      std::vector<T> y1(O, ysent);
      std::vector<std::int64_t> i1(O, isent);
      auto l1 = levels_of<T>(cs, y1.data(), i1.data(), nullptr, nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::max, pp, l1.data(), int(l1.size()), th);
      comparisons += 2;
      if (!same_bits(y0, y1)) fail(who(k, "max_forward values") + first_diff(y0, y1));
      if (i0 != i1) fail(who(k, "max_forward indices") + first_diff(i0, i1));
      std::vector<T> y2(O, ysent);
      auto l2 = levels_of<T>(cs, y2.data(), nullptr, nullptr, nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::max, pp, l2.data(), int(l2.size()), th);
      ++comparisons;
      if (!same_bits(y0, y2)) fail(who(k, "max_forward (no indices)") + first_diff(y0, y2));
      std::vector<T> g1(X, ysent), g2(X, ysent);
      kk.bin_backward(x.data(), pb, BinReduce::max, pp, lb.data(), int(lb.size()), g1.data(), nullptr, th);
      ++comparisons;
      if (!same_bits(g0, g1)) fail(who(k, "max_backward (recomputed)") + first_diff(g0, g1));
      const index_t bad =
          kk.bin_backward(nullptr, pb, BinReduce::max, pp, lbi.data(), int(lbi.size()), g2.data(), nullptr, th);
      ++comparisons;
      if (!same_bits(g0i, g2) || bad != -1) fail(who(k, "max_backward (given indices)") + first_diff(g0i, g2));
    }

    // An index outside the plane: reported, as the flat position in level 0's array
    // (the levels are views into one array), the same on every path.
    {
      std::vector<std::int64_t> bi = i0;
      std::vector<index_t> cov;
      for (std::size_t i = 0; i < O; ++i)
        if (cs.covered[i]) cov.push_back(index_t(i));
      const index_t a = cov[std::size_t(pick(rng, 0, int(cov.size()) - 1))];
      const index_t b = cov[std::size_t(pick(rng, 0, int(cov.size()) - 1))];
      bi[std::size_t(a)] = pb.plane();
      bi[std::size_t(b)] = -1;
      const index_t want = std::min(a, b) - cs.grids[0].off;
      auto lbb = levels_of<T>(cs, nullptr, nullptr, gy.data(), bi.data());
      for (std::size_t k = 0; k < isas.size(); ++k) {
        const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
        std::vector<T> g(X, ysent);
        const index_t bad = kk.bin_backward(nullptr, pb, BinReduce::max, pp, lbb.data(), int(lbb.size()), g.data(),
                                            nullptr, threads_of(k));
        ++comparisons;
        if (bad != want)
          fail(who(k, "max_backward (bad given index)") + ": returned " + std::to_string(bad) + ", want " +
               std::to_string(want));
      }
    }
  }

  // ---------------------------------------------------------------- avg
  {
    const std::vector<T> x = make_x<T>(rng, cs, BinReduce::avg, eps, scale_exp, false);
    const BinParams<T> pp;
    std::vector<T> y0(O, ysent), g0(X, ysent);
    auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::avg, pp, lv.data(), int(lv.size()), 1);
    check_cover("scalar avg_forward " + tag, y0, nullptr);
    check_ref("scalar avg_forward " + tag, y0, ref_forward(cs, x, BinReduce::avg, pp), &cs.covered);
    ref.bin_backward(nullptr, pb, BinReduce::avg, pp, lv.data(), int(lv.size()), g0.data(), nullptr, 1);
    Ref rg, rp;
    ref_backward(cs, x, gy, BinReduce::avg, pp, rg, rp);
    check_ref("scalar avg_backward " + tag, g0, rg, nullptr);
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), g1(X, ysent);
      auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::avg, pp, l1.data(), int(l1.size()), threads_of(k));
      kk.bin_backward(nullptr, pb, BinReduce::avg, pp, l1.data(), int(l1.size()), g1.data(), nullptr, threads_of(k));
      comparisons += 2;
      if (!same_bits(y0, y1)) fail(who(k, "avg_forward") + first_diff(y0, y1));
      if (!same_bits(g0, g1)) fail(who(k, "avg_backward") + first_diff(g0, g1));
    }
  }

  // ---------------------------------------------------------------- lp, gem
  static const double kP[] = {1, 2, 3, 4, 2.5, 7};
  static const double kPChannel[] = {1, 2, 3, 4, 2.5, 7, 1.5, 0.5};
  for (BinReduce op : {BinReduce::lp, BinReduce::gem}) {
    const std::vector<T> x = make_x<T>(rng, cs, op, eps, scale_exp, false);
    std::vector<T> p_channel(std::size_t(pb.channels));
    for (auto& p : p_channel) p = T(kPChannel[pick(rng, 0, 7)]);
    // Two scalar exponents per case (every one over the cases), and per-channel ones.
    const int v0 = (cs.id * 2) % 6, v1 = (cs.id * 2 + 1 + cs.id / 3) % 6;
    const int n_var = op == BinReduce::gem || cs.id % 2 ? 3 : 2;
    for (int var = 0; var < n_var; ++var) {
      BinParams<T> pp;
      pp.eps = eps;
      std::string pdesc;
      if (var < 2) {
        pp.p = T(kP[var == 0 ? v0 : v1]);
        pdesc = "p=" + std::to_string(double(pp.p));
      } else {
        pp.p = T(2);
        pp.p_channel = p_channel.data();
        pdesc = "p per channel";
      }
      const std::string name = std::string(op_name(op)) + " " + pdesc;
      const bool gem = op == BinReduce::gem;
      std::vector<T> y0(O, ysent), g0(X, ysent), g0n(X, ysent), gp0(planes, ysent);
      auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
      ref.bin_forward(x.data(), pb, op, pp, lv.data(), int(lv.size()), 1);
      check_cover("scalar " + name + " forward " + tag, y0, nullptr);
      check_ref("scalar " + name + " forward " + tag, y0, ref_forward(cs, x, op, pp), &cs.covered);
      ref.bin_backward(x.data(), pb, op, pp, lv.data(), int(lv.size()), g0.data(), gem ? gp0.data() : nullptr, 1);
      Ref rg, rp;
      ref_backward(cs, x, gy, op, pp, rg, rp);
      check_ref("scalar " + name + " backward " + tag, g0, rg, nullptr);
      if (gem) {
        check_ref("scalar " + name + " backward grad_p " + tag, gp0, rp, nullptr);
        ref.bin_backward(x.data(), pb, op, pp, lv.data(), int(lv.size()), g0n.data(), nullptr, 1);
        ++comparisons;
        if (!same_bits(g0, g0n)) fail("scalar " + name + " backward: grad_x with and without grad_p " + tag);
      }
      for (std::size_t k = 0; k < isas.size(); ++k) {
        const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
        const int th = threads_of(k);
        std::vector<T> y1(O, ysent), g1(X, ysent), g2(X, ysent), gp1(planes, ysent);
        auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
        kk.bin_forward(x.data(), pb, op, pp, l1.data(), int(l1.size()), th);
        ++comparisons;
        if (!same_bits(y0, y1)) fail(who(k, (name + " forward").c_str()) + first_diff(y0, y1));
        kk.bin_backward(x.data(), pb, op, pp, l1.data(), int(l1.size()), g1.data(), gem ? gp1.data() : nullptr, th);
        ++comparisons;
        if (!same_bits(g0, g1)) fail(who(k, (name + " backward").c_str()) + first_diff(g0, g1));
        if (gem) {
          ++comparisons;
          if (!same_bits(gp0, gp1)) fail(who(k, (name + " backward grad_p").c_str()) + first_diff(gp0, gp1));
          kk.bin_backward(x.data(), pb, op, pp, l1.data(), int(l1.size()), g2.data(), nullptr, th);
          ++comparisons;
          if (!same_bits(g0, g2)) fail(who(k, (name + " backward (grad_p null)").c_str()) + first_diff(g0, g2));
        }
      }
      // The public entry point (active path): grad_p per channel, summed over the batch.
      if (gem && var == 2) {
        std::vector<T> gx(X, ysent), gpc(std::size_t(pb.channels) + 4, ysent), y(O, ysent);
        auto l1 = levels_of<T>(cs, y.data(), nullptr, gy.data(), nullptr);
        bin_forward<T>(x.data(), pb, op, pp, l1.data(), int(l1.size()), 2);
        bin_backward<T>(x.data(), pb, op, pp, l1.data(), int(l1.size()), gx.data(), gpc.data(), 2);
        comparisons += 3;
        if (!same_bits(y0, y)) fail(std::string("fastpool::bin_forward (") + isa_name(active_isa()) + ") " + tag);
        if (!same_bits(g0, gx)) fail(std::string("fastpool::bin_backward (") + isa_name(active_isa()) + ") " + tag);
        for (index_t c = 0; c < pb.channels; ++c) {
          T s = gp0[std::size_t(c)];
          for (index_t n = 1; n < pb.batch; ++n) s += gp0[std::size_t(n * pb.channels + c)];
          if (std::memcmp(&s, &gpc[std::size_t(c)], sizeof(T)) != 0) {
            fail("fastpool::bin_backward grad_p of channel " + std::to_string(c) + " " + tag);
            break;
          }
        }
        for (std::size_t i = std::size_t(pb.channels); i < gpc.size(); ++i)
          if (std::memcmp(&gpc[i], &ysent, sizeof(T)) != 0) {
            fail("fastpool::bin_backward wrote grad_p past its C values " + tag);
            break;
          }
      }
    }
  }

  // ---------------------------------------------------------------- soft
  {
    const std::vector<T> x = make_x<T>(rng, cs, BinReduce::soft, eps, scale_exp, false);
    const BinParams<T> pp;
    std::vector<T> y0(O, ysent), g0(X, ysent);
    auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
    ref.bin_forward(x.data(), pb, BinReduce::soft, pp, lv.data(), int(lv.size()), 1);
    ref.bin_backward(x.data(), pb, BinReduce::soft, pp, lv.data(), int(lv.size()), g0.data(), nullptr, 1);
    Ref ry, rg;
    ref_soft(cs, x, gy, ry, rg);
    check_cover("scalar soft_forward " + tag, y0, nullptr);
    check_ref("scalar soft_forward " + tag, y0, ry, &cs.covered);
    check_ref("scalar soft_backward " + tag, g0, rg, nullptr);
    for (std::size_t k = 0; k < isas.size(); ++k) {
      const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
      std::vector<T> y1(O, ysent), g1(X, ysent);
      auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
      kk.bin_forward(x.data(), pb, BinReduce::soft, pp, l1.data(), int(l1.size()), threads_of(k));
      kk.bin_backward(x.data(), pb, BinReduce::soft, pp, l1.data(), int(l1.size()), g1.data(), nullptr, threads_of(k));
      comparisons += 2;
      if (!same_bits(y0, y1)) fail(who(k, "soft_forward") + first_diff(y0, y1));
      if (!same_bits(g0, g1)) fail(who(k, "soft_backward") + first_diff(g0, g1));
    }
  }

  // ---------------------------------------------------------------- mixed
  {
    const std::vector<T> x = make_x<T>(rng, cs, BinReduce::avg, eps, scale_exp, false);
    std::vector<T> a_channel(std::size_t(pb.channels));
    static const double kAlpha[] = {0, 1, 0.25, 0.5, 0.75, -0.5, 1.5, 0.3};
    for (auto& a : a_channel) a = T(kAlpha[pick(rng, 0, 7)]);
    for (int var = 0; var < 2; ++var) {
      BinParams<T> pp;
      pp.p = T(kAlpha[cs.id % 8]);
      if (var == 1) pp.p_channel = a_channel.data();
      const std::string name = var ? "mixed (alpha per channel)" : "mixed alpha=" + std::to_string(double(pp.p));
      std::vector<T> y0(O, ysent), g0(X, ysent), g0n(X, ysent), ga0(planes, ysent);
      auto lv = levels_of<T>(cs, y0.data(), nullptr, gy.data(), nullptr);
      ref.bin_forward(x.data(), pb, BinReduce::mixed, pp, lv.data(), int(lv.size()), 1);
      ref.bin_backward(x.data(), pb, BinReduce::mixed, pp, lv.data(), int(lv.size()), g0.data(), ga0.data(), 1);
      ref.bin_backward(x.data(), pb, BinReduce::mixed, pp, lv.data(), int(lv.size()), g0n.data(), nullptr, 1);
      Ref ry, rg, ra;
      ref_mixed(cs, x, gy, pp, ry, rg, ra);
      check_cover("scalar " + name + " forward " + tag, y0, nullptr);
      check_ref("scalar " + name + " forward " + tag, y0, ry, &cs.covered);
      check_ref("scalar " + name + " backward " + tag, g0, rg, nullptr);
      check_ref("scalar " + name + " backward grad_alpha " + tag, ga0, ra, nullptr);
      ++comparisons;
      if (!same_bits(g0, g0n)) fail("scalar " + name + " backward: grad_x with and without grad_alpha " + tag);
      for (std::size_t k = 0; k < isas.size(); ++k) {
        const PoolKernels<T>& kk = kernels_of<T>(kernel_table(isas[k]));
        std::vector<T> y1(O, ysent), g1(X, ysent), ga1(planes, ysent);
        auto l1 = levels_of<T>(cs, y1.data(), nullptr, gy.data(), nullptr);
        kk.bin_forward(x.data(), pb, BinReduce::mixed, pp, l1.data(), int(l1.size()), threads_of(k));
        kk.bin_backward(x.data(), pb, BinReduce::mixed, pp, l1.data(), int(l1.size()), g1.data(), ga1.data(),
                        threads_of(k));
        comparisons += 3;
        if (!same_bits(y0, y1)) fail(who(k, (name + " forward").c_str()) + first_diff(y0, y1));
        if (!same_bits(g0, g1)) fail(who(k, (name + " backward").c_str()) + first_diff(g0, g1));
        if (!same_bits(ga0, ga1)) fail(who(k, (name + " backward grad_alpha").c_str()) + first_diff(ga0, ga1));
      }
    }
  }

  check_stochastic<T>(rng, cs, who, threads_of, check_cover);
  check_dropout<T>(rng, cs, who, threads_of, check_cover);
}

// ------------------------------------------------------------------ hand-computed

template <class T>
void expect_near(const std::string& what, T got, double want, double tol) {
  ++comparisons;
  const bool ok = std::isnan(want) ? std::isnan(double(got)) : std::fabs(double(got) - want) <= tol;
  if (!ok) fail(what + ": got " + std::to_string(double(got)) + ", want " + std::to_string(want));
}

// One 1D grid over W positions, C channels with the same data, channels_last when
// C > 1 so the lanes are channels.
template <class T>
struct Tiny {
  BinProblem pb;
  AxisBins ax[3];
  Tiny(index_t C, const AxisBins& w) {
    pb.channels = C;
    pb.channels_last = C > 1;
    pb.in[2] = w.in;
    ax[0] = adaptive_bins(1, 1);
    ax[1] = adaptive_bins(1, 1);
    ax[2] = w;
  }
  BinLevel<T> level(T* y, std::int64_t* idx, const T* gy, const std::int64_t* gi) const {
    BinLevel<T> lv;
    for (int i = 0; i < 3; ++i) lv.axis[i] = ax[i].view();
    const index_t O = ax[2].out, C = pb.channels;
    lv.stride_n = O * C;
    lv.stride_c = C > 1 ? 1 : O;  // output in the input's layout
    lv.stride[2] = C > 1 ? C : 1;
    lv.y = y, lv.indices = idx, lv.grad_y = gy, lv.given_indices = gi;
    return lv;
  }
  std::vector<T> spread(const std::vector<double>& v) const {  // value of position q, every channel
    std::vector<T> x;
    for (double d : v)
      for (index_t c = 0; c < pb.channels; ++c) x.push_back(T(d));
    return x;
  }
};

template <class T>
void hand_checks() {
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  for (Isa isa : available_isas()) {
    const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
    for (index_t C : {index_t(1), index_t(19)}) {
      const std::string at = std::string(isa_name(isa)) + " " + dtype<T>() + " C=" + std::to_string(C) + " ";
      const index_t last = C - 1;  // the check reads the last channel (a tail lane)
      {  // adaptive max of {1, 3, 3, 0, 5, 5} into 4 bins: [0,2) [1,3) [3,5) [4,6)
        const Tiny<T> t(C, adaptive_bins(6, 4));
        const std::vector<T> x = t.spread({1, 3, 3, 0, 5, 5});
        std::vector<T> y(std::size_t(4 * C));
        std::vector<std::int64_t> idx(std::size_t(4 * C));
        const BinLevel<T> lv = t.level(y.data(), idx.data(), nullptr, nullptr);
        k.bin_forward(x.data(), t.pb, BinReduce::max, BinParams<T>(), &lv, 1, 1);
        const double want[] = {3, 3, 5, 5};
        const std::int64_t want_i[] = {1, 1, 4, 4};
        for (index_t o = 0; o < 4; ++o) {
          const std::size_t i = std::size_t(C > 1 ? o * C + last : o);
          expect_near(at + "adaptive max {1,3,3,0,5,5} -> 4 bin " + std::to_string(o), y[i], want[o], 0);
          ++comparisons;
          if (idx[i] != want_i[o]) fail(at + "adaptive max argmax of bin " + std::to_string(o));
        }
      }
      {  // NaN: max of {2, nan, 1, nan, 4, 0} into 2 bins and 1 bin: NaN, last NaN's index
        for (index_t out : {index_t(1), index_t(2)}) {
          const Tiny<T> t(C, adaptive_bins(6, out));
          const std::vector<T> x = t.spread({2, NAN, 1, NAN, 4, 0});
          std::vector<T> y(std::size_t(out * C));
          std::vector<std::int64_t> idx(std::size_t(out * C));
          const BinLevel<T> lv = t.level(y.data(), idx.data(), nullptr, nullptr);
          k.bin_forward(x.data(), t.pb, BinReduce::max, BinParams<T>(), &lv, 1, 1);
          const std::int64_t want_i[2][2] = {{3, -1}, {1, 3}};
          for (index_t o = 0; o < out; ++o) {
            const std::size_t i = std::size_t(C > 1 ? o * C + last : o);
            expect_near(at + "max with NaN", y[i], NAN, 0);
            ++comparisons;
            if (idx[i] != want_i[out - 1][o])
              fail(at + "max with NaN: argmax " + std::to_string(idx[i]) + ", want " +
                   std::to_string(want_i[out - 1][o]));
          }
        }
      }
      {  // max backward: x = {1, 3, 2, 0, 5}, bins [0,2) [1,4) [3,5), grad {1, 2, 4} -> {0, 3, 0, 0, 4}
         // avg backward: grad {2, 3, 4} -> {1, 2, 1, 3, 2}
        const Tiny<T> t(C, adaptive_bins(5, 3));
        const std::vector<T> x = t.spread({1, 3, 2, 0, 5});
        const std::vector<T> g1 = t.spread({1, 2, 4}), g2 = t.spread({2, 3, 4});
        std::vector<T> gx(x.size());
        BinLevel<T> lv = t.level(nullptr, nullptr, g1.data(), nullptr);
        k.bin_backward(x.data(), t.pb, BinReduce::max, BinParams<T>(), &lv, 1, gx.data(), nullptr, 1);
        const double want_max[] = {0, 3, 0, 0, 4}, want_avg[] = {1, 2, 1, 3, 2};
        for (index_t q = 0; q < 5; ++q)
          expect_near(at + "max backward position " + std::to_string(q), gx[std::size_t(q * C + last)],
                      want_max[q], 0);
        lv = t.level(nullptr, nullptr, g2.data(), nullptr);
        k.bin_backward(nullptr, t.pb, BinReduce::avg, BinParams<T>(), &lv, 1, gx.data(), nullptr, 1);
        for (index_t q = 0; q < 5; ++q)
          expect_near(at + "avg backward position " + std::to_string(q), gx[std::size_t(q * C + last)],
                      want_avg[q], tol);
      }
      {  // avg backward over dilated windows (kernel 2, dilation 2 on 5: taps {0,2} {1,3} {2,4}),
         // grad 1 each: {0.5, 0.5, 1, 0.5, 0.5}; not runs of positions, so no gather form
        const Tiny<T> t(C, window_bins(make_axis(5, 2, 1, 2, 0, 0, false), true));
        const std::vector<T> g = t.spread({1, 1, 1});
        std::vector<T> gx(std::size_t(5 * C));
        const BinLevel<T> lv = t.level(nullptr, nullptr, g.data(), nullptr);
        k.bin_backward(nullptr, t.pb, BinReduce::avg, BinParams<T>(), &lv, 1, gx.data(), nullptr, 1);
        const double want[] = {0.5, 0.5, 1, 0.5, 0.5};
        for (index_t q = 0; q < 5; ++q)
          expect_near(at + "avg backward over dilated windows, position " + std::to_string(q),
                      gx[std::size_t(q * C + last)], want[q], 0);
      }
      {  // windowed avg of {1, 2, 3, 4}, kernel 3, stride 1, padding 1
        for (bool cip : {true, false}) {
          const Tiny<T> t(C, window_bins(make_axis(4, 3, 1, 1, 1, 1, false), cip));
          const std::vector<T> x = t.spread({1, 2, 3, 4});
          std::vector<T> y(std::size_t(4 * C));
          const BinLevel<T> lv = t.level(y.data(), nullptr, nullptr, nullptr);
          k.bin_forward(x.data(), t.pb, BinReduce::avg, BinParams<T>(), &lv, 1, 1);
          const double w1[] = {1, 2, 3, 7.0 / 3}, w0[] = {1.5, 2, 3, 3.5};
          for (index_t o = 0; o < 4; ++o)
            expect_near(at + (cip ? "window avg (count_include_pad) " : "window avg ") + std::to_string(o),
                        y[std::size_t(o * C + last)], cip ? w1[o] : w0[o], tol);
        }
      }
      {  // global power means
        const Tiny<T> t(C, adaptive_bins(4, 1));
        auto one = [&](BinReduce op, double p, const std::vector<double>& v) {
          const std::vector<T> x = t.spread(v);
          std::vector<T> y(static_cast<std::size_t>(C));
          BinParams<T> pp;
          pp.p = T(p);
          pp.eps = T(1e-6);
          const BinLevel<T> lv = t.level(y.data(), nullptr, nullptr, nullptr);
          k.bin_forward(x.data(), t.pb, op, pp, &lv, 1, 1);
          return y[std::size_t(last)];
        };
        // gem p=1: the mean of max(x, eps)
        expect_near(at + "gem p=1", one(BinReduce::gem, 1, {0.5, 1e-9, 2, -3}), (0.5 + 1e-6 + 2 + 1e-6) / 4, tol);
        expect_near(at + "gem p=2", one(BinReduce::gem, 2, {1, 1, 1, 5}), std::sqrt(7.0), tol * 3);
        expect_near(at + "gem p=3 constant", one(BinReduce::gem, 3, {2.5, 2.5, 2.5, 2.5}), 2.5, tol * 3);
        expect_near(at + "lp p=2", one(BinReduce::lp, 2, {3, -4, 0, 0}), 5, tol * 5);
        expect_near(at + "lp p=1", one(BinReduce::lp, 1, {-1, 2, -3, 0.5}), 6.5, tol * 5);
        expect_near(at + "lp p=2.5 zeros", one(BinReduce::lp, 2.5, {0, 0, 0, 0}), 0, 0);
        expect_near(at + "lp p=4", one(BinReduce::lp, 4, {1, -1, 1, -1}), std::sqrt(2.0), tol * 3);
      }
    }
  }
  // adaptive_bins(5, 3) is {[0,2), [1,4), [3,5)}
  const AxisBins b = adaptive_bins(5, 3);
  ++comparisons;
  if (b.first != std::vector<index_t>{0, 1, 3} || b.count != std::vector<index_t>{2, 3, 2} ||
      b.divisor != std::vector<index_t>{2, 3, 2} || b.step != 1)
    fail("adaptive_bins(5, 3) is not {[0,2), [1,4), [3,5)}");
  const AxisBins b2 = adaptive_bins(3, 5);  // out > in: [0,1) [0,2) [1,2) [1,3) [2,3)
  ++comparisons;
  if (b2.first != std::vector<index_t>{0, 0, 1, 1, 2} || b2.count != std::vector<index_t>{1, 2, 1, 2, 1})
    fail("adaptive_bins(3, 5) is not {[0,1), [0,2), [1,2), [1,3), [2,3)}");
  // window bins: in 5, kernel 3, stride 2, dilation 2, padding 2: windows start at -2, 0, 2
  const AxisBins wb = window_bins(make_axis(5, 3, 2, 2, 2, 2, false), false);
  ++comparisons;
  if (wb.out != 3 || wb.step != 2 || wb.first != std::vector<index_t>{0, 0, 2} ||
      wb.count != std::vector<index_t>{2, 3, 2} || wb.divisor != std::vector<index_t>{2, 3, 2})
    fail("window_bins(in 5, k3 s2 d2 p2) is not {0,2}, {0,2,4}, {2,4}");
}

// ------------------------------------------------------------------ check_bins

template <class T>
void error_checks() {
  auto throws = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument&) {
      return true;
    } catch (...) {
      return false;
    }
    return false;
  };
  auto expect = [&](const std::string& what, bool thrown) {
    ++comparisons;
    if (!thrown) fail(std::string(dtype<T>()) + " " + what + ": no std::invalid_argument");
  };
  BinProblem pb;
  pb.batch = 2;
  pb.channels = 3;
  pb.in[1] = 6;
  pb.in[2] = 7;
  const AxisBins one = adaptive_bins(1, 1), h = adaptive_bins(6, 2), w = adaptive_bins(7, 3);
  std::vector<T> x(std::size_t(pb.size()), T(1)), y(std::size_t(2 * 3 * 6)), gx(x.size());
  auto level = [&](const AxisBins& a0, const AxisBins& a1, const AxisBins& a2) {
    BinLevel<T> lv;
    lv.axis[0] = a0.view();
    lv.axis[1] = a1.view();
    lv.axis[2] = a2.view();
    lv.stride_n = 18, lv.stride_c = 6, lv.stride[1] = 3, lv.stride[2] = 1;
    lv.y = y.data();
    lv.grad_y = y.data();
    return lv;
  };
  const BinLevel<T> good = level(one, h, w);
  ++comparisons;
  try {
    check_bins(pb, BinReduce::max, &good, 1);
    bin_forward<T>(x.data(), pb, BinReduce::avg, BinParams<T>(), &good, 1, 1);
  } catch (const std::exception& e) {
    fail(std::string(dtype<T>()) + " check_bins rejected a valid level: " + e.what());
  }
  // in size mismatch, on each axis
  const AxisBins h5 = adaptive_bins(5, 2), w8 = adaptive_bins(8, 3), d2 = adaptive_bins(2, 1);
  for (const BinLevel<T>& bad : {level(one, h5, w), level(one, h, w8), level(d2, h, w)}) {
    expect("check_bins with a bins object of another in size", throws([&] { check_bins(pb, BinReduce::avg, &bad, 1); }));
    expect("bin_forward with a bins object of another in size",
           throws([&] { bin_forward<T>(x.data(), pb, BinReduce::max, BinParams<T>(), &bad, 1, 1); }));
    expect("bin_backward with a bins object of another in size",
           throws([&] { bin_backward<T>(x.data(), pb, BinReduce::avg, BinParams<T>(), &bad, 1, gx.data(), nullptr, 1); }));
  }
  // the second level mismatching
  {
    const BinLevel<T> two[] = {good, level(one, h, w8)};
    expect("check_bins with a second level of another in size", throws([&] { check_bins(pb, BinReduce::max, two, 2); }));
  }
  // a bin reaching outside the input
  {
    AxisBins o = adaptive_bins(7, 3);
    o.count[2] += 1;
    const BinLevel<T> lv = level(one, h, o);
    expect("check_bins with a bin past the input", throws([&] { check_bins(pb, BinReduce::lp, &lv, 1); }));
    AxisBins s = adaptive_bins(7, 3);
    s.step = 2;  // [4, 7) becomes 4, 6, 8
    const BinLevel<T> ls = level(one, h, s);
    expect("check_bins with a strided bin past the input", throws([&] { check_bins(pb, BinReduce::avg, &ls, 1); }));
    AxisBins z = adaptive_bins(7, 3);
    z.count[1] = 0;
    const BinLevel<T> lz = level(one, h, z);
    expect("check_bins with an empty bin", throws([&] { check_bins(pb, BinReduce::avg, &lz, 1); }));
    AxisBins d = adaptive_bins(7, 3);
    d.divisor[0] = 0;
    const BinLevel<T> ld = level(one, h, d);
    expect("check_bins with a zero divisor", throws([&] { check_bins(pb, BinReduce::avg, &ld, 1); }));
  }
  expect("check_bins with no levels", throws([&] { check_bins(pb, BinReduce::avg, &good, 0); }));
  {
    BinProblem p0 = pb;
    p0.channels = 0;
    expect("check_bins with 0 channels", throws([&] { check_bins(p0, BinReduce::avg, &good, 1); }));
  }
  // argmax exactness: a bin of 2**24 + 1 columns is too large for float32 only
  {
    BinProblem big;
    big.in[2] = (index_t(1) << 24) + 1;
    AxisBins wide(big.in[2], 1, 1);
    wide.first[0] = 0;
    wide.count[0] = wide.divisor[0] = big.in[2];
    BinLevel<T> lv;
    lv.axis[0] = one.view();
    lv.axis[1] = one.view();
    lv.axis[2] = wide.view();
    const bool thrown = throws([&] { check_bins(big, BinReduce::max, &lv, 1); });
    ++comparisons;
    if (thrown != (sizeof(T) == 4))
      fail(std::string(dtype<T>()) + " check_bins of a max bin of 2**24 + 1 columns: " +
           (thrown ? "threw" : "did not throw"));
    expect("(avg has no such limit)", !throws([&] { check_bins(big, BinReduce::avg, &lv, 1); }));
  }
  // exponents and eps (public entry points)
  {
    BinParams<T> pp;
    pp.eps = T(1e-6);
    for (double p : {0.0, -1.0, double(INFINITY), double(NAN)}) {
      pp.p = T(p);
      expect("bin_forward lp with p=" + std::to_string(p),
             throws([&] { bin_forward<T>(x.data(), pb, BinReduce::lp, pp, &good, 1, 1); }));
    }
    pp.p = T(3);
    std::vector<T> pc = {T(1), T(0), T(2)};
    pp.p_channel = pc.data();
    expect("bin_forward gem with a per-channel p of 0",
           throws([&] { bin_forward<T>(x.data(), pb, BinReduce::gem, pp, &good, 1, 1); }));
    pp.p_channel = nullptr;
    pp.eps = T(0);
    expect("bin_forward gem with eps=0", throws([&] { bin_forward<T>(x.data(), pb, BinReduce::gem, pp, &good, 1, 1); }));
    pp.eps = T(1e-6);
    expect("bin_backward lp without x",
           throws([&] { bin_backward<T>(nullptr, pb, BinReduce::lp, pp, &good, 1, gx.data(), nullptr, 1); }));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 80;
  const bool verbose = std::getenv("FASTPOOL_TEST_VERBOSE") != nullptr;  // one line per problem, with its time
  Rng rng(20240611);
  hand_checks<float>();
  hand_checks<double>();
  error_checks<float>();
  error_checks<double>();
  int run = 0, large = 0;
  for (int c = 0; c < cases; ++c) {
    Case cs;
    if (!make_case(rng, c, cs)) continue;
    const auto t0 = std::chrono::steady_clock::now();
    check_case<float>(rng, cs);
    check_case<double>(rng, cs);
    if (verbose)
      std::printf("case %d (%.3f s): %s\n", c,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), cs.desc.c_str());
    ++run;
    large += cs.large ? 1 : 0;
  }
  std::string names;
  for (Isa isa : available_isas()) names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  std::printf("%d bin problems (%d large) x %zu SIMD paths (%s) x 2 dtypes, %ld comparisons: %d failures\n", run,
              large, available_isas().size(), names.c_str(), comparisons, failures);
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}
