// Every compiled SIMD path against the scalar path, bitwise, on random geometries,
// both layouts, both dtypes, forward and backward (windowed max / avg pooling and
// the line maxima of corner and center pooling). Runs on its own (no Python), so
// the NEON path can be checked under qemu-aarch64.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fastpool/dispatch.hpp"
#include "fastpool/geometry.hpp"

using namespace fastpool;

namespace {

int failures = 0;

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
const PoolKernels<T>& kernels_of(const KernelTable& t);
template <>
const PoolKernels<float>& kernels_of<float>(const KernelTable& t) { return t.f32; }
template <>
const PoolKernels<double>& kernels_of<double>(const KernelTable& t) { return t.f64; }

bool random_geometry(std::mt19937_64& rng, PoolGeometry& g) {
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  const int rank = pick(1, 3);
  g.batch = pick(1, 2);
  g.channels = pick(1, 40);
  g.channels_last = pick(0, 1) == 1;
  const bool ceil_mode = pick(0, 1) == 1;
  try {
    for (int i = 0; i < 3; ++i) {
      if (i < 3 - rank) {
        g.axis[i] = make_axis(1, 1, 1, 1, 0, 0, false);
        continue;
      }
      const int in = pick(1, rank == 1 ? 90 : rank == 2 ? 40 : 12);
      const int k = pick(1, 5), s = pick(1, 3), d = pick(1, 2);
      g.axis[i] = make_axis(in, k, s, d, pick(0, k / 2 + 1), pick(0, k / 2 + 1), ceil_mode);
    }
    check_geometry(g);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

template <class T>
void check_isa(Isa isa, const PoolGeometry& g, std::mt19937_64& rng, int case_id) {
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
  std::normal_distribution<double> nd;
  std::vector<T> x(g.in_size()), gy(g.out_size());
  for (auto& v : x) v = T(std::round(nd(rng) * 2) / 2);  // many ties
  for (auto& v : gy) v = T(nd(rng));
  if (x.size() > 3) x[x.size() / 3] = T(NAN);
  std::vector<T> y0(g.out_size()), y1(g.out_size()), gx0(g.in_size()), gx1(g.in_size());
  std::vector<std::int64_t> i0(g.out_size()), i1(g.out_size());
  const int threads = 1 + case_id % 3;
  auto report = [&](const char* what) {
    ++failures;
    std::printf("FAIL %s %s %s case %d\n", isa_name(isa), sizeof(T) == 4 ? "f32" : "f64", what, case_id);
  };
  ref.max_forward(x.data(), y0.data(), i0.data(), g, 1);
  k.max_forward(x.data(), y1.data(), i1.data(), g, threads);
  if (!same_bits(y0, y1) || i0 != i1) report("max_forward");
  k.max_forward(x.data(), y1.data(), nullptr, g, threads);
  if (!same_bits(y0, y1)) report("max_forward (no indices)");
  ref.max_backward(gy.data(), x.data(), nullptr, gx0.data(), g, 1);
  k.max_backward(gy.data(), x.data(), nullptr, gx1.data(), g, threads);
  if (!same_bits(gx0, gx1)) report("max_backward");
  k.max_backward(gy.data(), nullptr, i0.data(), gx1.data(), g, threads);
  for (std::size_t i = 0; i < gx0.size(); ++i)
    if (std::fabs(double(gx0[i]) - double(gx1[i])) > 1e-5 * (1 + std::fabs(double(gx0[i])))) {
      report("max_backward (indices)");
      break;
    }
  for (int include = 0; include < 2; ++include) {
    const AvgOptions opt{include == 1, case_id % 5 == 0 ? 3 : 0};
    ref.avg_forward(x.data(), y0.data(), g, opt, 1);
    k.avg_forward(x.data(), y1.data(), g, opt, threads);
    if (!same_bits(y0, y1)) report("avg_forward");
    ref.avg_backward(gy.data(), gx0.data(), g, opt, 1);
    k.avg_backward(gy.data(), gx1.data(), g, opt, threads);
    if (!same_bits(gx0, gx1)) report("avg_backward");
  }
}

// Line maxima: every axis and scan, with and without an added array (also added in
// place), forward and backward.
template <class T>
void check_lines_isa(Isa isa, std::mt19937_64& rng, int case_id) {
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  LineProblem lp;
  lp.batch = pick(1, 2);
  lp.channels = pick(1, 40);
  lp.height = pick(1, 40);
  lp.width = pick(1, 40);
  lp.channels_last = pick(0, 1) == 1;
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
  std::normal_distribution<double> nd;
  const std::size_t n = std::size_t(lp.size());
  std::vector<T> x(n), add(n), gy(n);
  for (auto& v : x) v = T(std::round(nd(rng) * 2) / 2);  // many ties
  for (auto& v : add) v = T(nd(rng));
  for (auto& v : gy) v = T(nd(rng));
  if (n > 3) x[n / 3] = T(NAN);
  if (n > 7) x[n / 7] = T(NAN);
  const int threads = 1 + case_id % 3;
  for (int axis = 0; axis < 2; ++axis)
    for (int s = 0; s < 3; ++s) {
      lp.axis = axis;
      lp.scan = static_cast<LineScan>(s);
      auto report = [&](const char* what) {
        ++failures;
        std::printf("FAIL %s %s %s axis %d scan %d case %d\n", isa_name(isa), sizeof(T) == 4 ? "f32" : "f64", what,
                    axis, s, case_id);
      };
      for (int with_add = 0; with_add < 3; ++with_add) {  // none, another array, in place
        std::vector<T> r0 = add, r1 = add;
        const T* a0 = with_add == 1 ? add.data() : with_add == 2 ? r0.data() : nullptr;
        const T* a1 = with_add == 1 ? add.data() : with_add == 2 ? r1.data() : nullptr;
        ref.line_forward(x.data(), a0, r0.data(), lp, 1);
        k.line_forward(x.data(), a1, r1.data(), lp, threads);
        if (!same_bits(r0, r1)) report("line_forward");
        r0 = add;
        r1 = add;
        ref.line_backward(gy.data(), x.data(), a0, r0.data(), lp, 1);
        k.line_backward(gy.data(), x.data(), a1, r1.data(), lp, threads);
        if (!same_bits(r0, r1)) report("line_backward");
      }
    }
  // Center pooling's forward: the two whole-line passes of the scalar path, in one.
  for (int other = 0; other < 2; ++other) {
    const T* x2 = other ? add.data() : x.data();
    std::vector<T> r0(n), r1(n);
    lp.axis = 0;
    lp.scan = LineScan::whole;
    ref.line_forward(x.data(), nullptr, r0.data(), lp, 1);
    lp.axis = 1;
    ref.line_forward(x2, r0.data(), r0.data(), lp, 1);
    k.center_forward(x.data(), x2, r1.data(), lp, threads);
    if (!same_bits(r0, r1)) {
      ++failures;
      std::printf("FAIL %s %s center_forward x2 %d case %d\n", isa_name(isa), sizeof(T) == 4 ? "f32" : "f64", other,
                  case_id);
    }
  }
}

// Max unpooling and its gradient: every path against scalar, bitwise, with duplicate
// indices (the last wins) and, in some cases, an index outside the plane (the same
// first bad position must be reported); scatter_add (duplicates add up) against a loop.
template <class T>
void check_unpool_isa(Isa isa, std::mt19937_64& rng, int case_id) {
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  UnpoolProblem up;
  up.batch = pick(1, 3);
  up.channels = pick(1, 40);
  up.in_size = pick(1, 60);
  up.out_size = pick(1, 4 * int(up.in_size));
  up.channels_last = pick(0, 1) == 1;
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
  std::normal_distribution<double> nd;
  std::vector<T> x(std::size_t(up.in_elements())), gy(std::size_t(up.out_elements()));
  std::vector<std::int64_t> idx(x.size());
  for (auto& v : x) v = T(nd(rng));
  for (auto& v : gy) v = T(nd(rng));
  for (auto& j : idx) j = pick(0, int(up.out_size) - 1);
  if (case_id % 4 == 0) idx[std::size_t(pick(0, int(idx.size()) - 1))] = pick(0, 1) ? -1 : up.out_size;
  const int threads = 1 + case_id % 3;
  std::vector<T> y0(gy.size()), y1(gy.size()), g0(x.size()), g1(x.size());
  const index_t b0 = ref.unpool_forward(x.data(), idx.data(), y0.data(), up, 1);
  const index_t b1 = k.unpool_forward(x.data(), idx.data(), y1.data(), up, threads);
  const index_t c0 = ref.unpool_backward(gy.data(), idx.data(), g0.data(), up, 1);
  const index_t c1 = k.unpool_backward(gy.data(), idx.data(), g1.data(), up, threads);
  // scatter_add: y = 0, y[index] += x in input order (a plain loop)
  std::vector<T> s0(gy.size(), T(0)), s1(gy.size(), T(-3));
  for (index_t n = 0; n < up.batch; ++n)
    for (index_t c = 0; c < up.channels; ++c)
      for (index_t i = 0; i < up.in_size; ++i) {
        const index_t at = up.channels_last ? (n * up.in_size + i) * up.channels + c : (n * up.channels + c) * up.in_size + i;
        const std::int64_t j = idx[std::size_t(at)];
        if (j < 0 || j >= up.out_size) continue;
        s0[std::size_t(up.channels_last ? (n * up.out_size + j) * up.channels + c : (n * up.channels + c) * up.out_size + j)] += x[std::size_t(at)];
      }
  const index_t d1 = k.scatter_add(x.data(), idx.data(), s1.data(), up, threads);
  const bool ok = b0 == b1 && c0 == c1 && b0 == c0 && (b0 >= 0 || same_bits(y0, y1)) && same_bits(g0, g1) &&
                  d1 == b0 && (d1 >= 0 || same_bits(s0, s1));
  if (!ok) {
    ++failures;
    std::printf("FAIL %s %s max_unpool case %d (bad %lld/%lld, %lld/%lld)\n", isa_name(isa),
                sizeof(T) == 4 ? "f32" : "f64", case_id, (long long)b0, (long long)b1, (long long)c0, (long long)c1);
  }
}

// Fractional max pooling: every path against a plain loop over PyTorch's intervals
// (values and positions, bitwise), NaN and ties included, both layouts.
template <class T>
void check_fractional_isa(Isa isa, std::mt19937_64& rng, int case_id) {
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  FractionalProblem fp;
  fp.rank = pick(2, 3);
  fp.batch = pick(1, 3);
  fp.channels = pick(1, 20);
  fp.channels_last = pick(0, 1) == 1;
  for (int a = 3 - fp.rank; a < 3; ++a) {
    fp.in[a] = pick(1, fp.rank == 3 ? 12 : 40);
    fp.kernel[a] = pick(1, int(std::min<index_t>(fp.in[a], 4)));
    fp.out[a] = pick(1, int(fp.in[a] - fp.kernel[a] + 1));
  }
  if (fp.rank == 3) {
    fp.sample_axis[0] = 0;
    fp.sample_axis[1] = 1;
    fp.sample_axis[2] = 2;
  }
  const index_t planes = fp.batch * fp.channels, P = fp.in_plane(), Q = fp.out_plane(), C = fp.channels;
  std::vector<T> x(std::size_t(planes * P)), u(std::size_t(planes * fp.rank));
  for (auto& v : x) v = T(pick(-6, 6)) / T(2);  // ties
  if (case_id % 3 == 0)
    for (int i = 0; i < 3; ++i) x[std::size_t(pick(0, int(x.size()) - 1))] = T(NAN);
  for (auto& v : u) v = T(std::uniform_real_distribution<double>(0, 1)(rng));
  if (case_id % 5 == 0) u[0] = std::nextafter(T(1), T(0));
  std::vector<T> y0(std::size_t(planes * Q)), y1(y0.size(), T(-99));
  std::vector<std::int64_t> i0(y0.size()), i1(y0.size(), -5);
  // the plain loop
  for (index_t n = 0; n < fp.batch; ++n)
    for (index_t c = 0; c < C; ++c) {
      const index_t p = n * C + c;
      auto at = [&](index_t s) { return fp.channels_last ? (n * P + s) * C + c : p * P + s; };
      auto oat = [&](index_t q) { return fp.channels_last ? (n * Q + q) * C + c : p * Q + q; };
      for (index_t od = 0; od < fp.out[0]; ++od)
        for (index_t oh = 0; oh < fp.out[1]; ++oh)
          for (index_t ow = 0; ow < fp.out[2]; ++ow) {
            const index_t o[3] = {od, oh, ow};
            index_t s[3];
            for (int a = 0; a < 3; ++a) {
              const int sa = fp.sample_axis[a];
              if (sa < 0) {
                s[a] = 0;
                continue;
              }
              const T uu = u[std::size_t(p * fp.rank + sa)];
              if (o[a] == fp.out[a] - 1) {
                s[a] = fp.in[a] - fp.kernel[a];
              } else {
                const T alpha = T(fp.in[a] - fp.kernel[a]) / T(fp.out[a] - 1);
                s[a] = index_t(int((T(o[a]) + uu) * alpha) - int(uu * alpha));
              }
            }
            T best = -std::numeric_limits<T>::infinity();
            index_t arg = (s[0] * fp.in[1] + s[1]) * fp.in[2] + s[2];
            for (index_t d = s[0]; d < s[0] + fp.kernel[0]; ++d)
              for (index_t h = s[1]; h < s[1] + fp.kernel[1]; ++h)
                for (index_t w = s[2]; w < s[2] + fp.kernel[2]; ++w) {
                  const index_t q = (d * fp.in[1] + h) * fp.in[2] + w;
                  const T v = x[std::size_t(at(q))];
                  if (v > best || std::isnan(v)) best = v, arg = q;
                }
            const index_t q = (od * fp.out[1] + oh) * fp.out[2] + ow;
            y0[std::size_t(oat(q))] = best;
            i0[std::size_t(oat(q))] = arg;
          }
    }
  const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
  k.fractional_forward(x.data(), u.data(), y1.data(), i1.data(), fp, 1 + case_id % 3);
  std::vector<T> y2(y0.size(), T(-99));
  k.fractional_forward(x.data(), u.data(), y2.data(), nullptr, fp, 2);
  if (!same_bits(y0, y1) || i0 != i1 || !same_bits(y0, y2)) {
    ++failures;
    std::printf("FAIL %s %s fractional_max case %d (rank %d, %s)\n", isa_name(isa), sizeof(T) == 4 ? "f32" : "f64",
                case_id, fp.rank, fp.channels_last ? "channels_last" : "channels_first");
  }
}

// Hopfield pooling: the scalar path against a long-double plain loop (the softmax
// and the three gradients), every path bitwise equal to scalar at 1-3 threads.
template <class T>
void check_hopfield_isa(Isa isa, std::mt19937_64& rng, int case_id) {
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  std::normal_distribution<double> nd;
  HopfieldProblem hp;
  hp.batch = pick(1, 3);
  hp.channels = pick(1, 40);
  hp.positions = case_id % 7 == 0 ? pick(300, 2500) : pick(1, 60);  // several tiles, or one
  hp.queries = pick(1, 5);
  hp.channels_last = pick(0, 1) == 1;
  const index_t N = hp.batch, C = hp.channels, L = hp.positions, Q = hp.queries;
  const T beta = case_id % 5 == 0 ? T(-3) : T(pick(0, 16)) / T(8);
  std::vector<T> x(std::size_t(N * C * L)), q(std::size_t(Q * C)), g(std::size_t(N * Q * C));
  for (auto& v : x) v = T(nd(rng));
  for (auto& v : q) v = T(nd(rng));
  for (auto& v : g) v = T(nd(rng));
  auto xv = [&](index_t n, index_t j, index_t c) {
    return x[std::size_t(hp.channels_last ? (n * L + j) * C + c : (n * C + c) * L + j)];
  };
  const PoolKernels<T>& ref = kernels_of<T>(kernel_table(Isa::scalar));
  const PoolKernels<T>& k = kernels_of<T>(kernel_table(isa));
  const std::size_t nq = std::size_t(N) * q.size(), nb = std::size_t(N);  // the kernel's per-sample parts
  std::vector<T> y0(g.size()), gx0(x.size()), gq0(nq), gb0(nb);
  ref.hopfield_forward(x.data(), q.data(), beta, y0.data(), hp, 1);
  ref.hopfield_backward(x.data(), q.data(), beta, g.data(), gx0.data(), gq0.data(), gb0.data(), hp, 1);
  const int th = 1 + case_id % 3;
  std::vector<T> y1(g.size()), gx1(x.size()), gq1(nq), gb1(nb);
  k.hopfield_forward(x.data(), q.data(), beta, y1.data(), hp, th);
  k.hopfield_backward(x.data(), q.data(), beta, g.data(), gx1.data(), gq1.data(), gb1.data(), hp, th);
  if (!same_bits(y0, y1) || !same_bits(gx0, gx1) || !same_bits(gq0, gq1) || !same_bits(gb0, gb1)) {
    ++failures;
    std::printf("FAIL %s %s hopfield case %d differs from scalar\n", isa_name(isa), sizeof(T) == 4 ? "f32" : "f64",
                case_id);
  }
  if (isa != Isa::scalar) return;
  // the plain loop, in long double
  using LD = long double;
  const LD tol = sizeof(T) == 4 ? LD(2e-4) : LD(1e-9);
  std::vector<LD> gq(q.size(), 0);
  LD gb = 0;
  bool ok = true;
  for (index_t n = 0; n < N && ok; ++n) {
    std::vector<LD> a(std::size_t(Q * L)), s(std::size_t(Q * L)), gxn(std::size_t(L * C), 0);
    for (index_t i = 0; i < Q; ++i) {
      LD m = -INFINITY, sum = 0;
      for (index_t j = 0; j < L; ++j) {
        LD d = 0;
        for (index_t c = 0; c < C; ++c) d += LD(q[std::size_t(i * C + c)]) * LD(xv(n, j, c));
        s[std::size_t(i * L + j)] = d;
        m = std::max(m, LD(beta) * d);
      }
      for (index_t j = 0; j < L; ++j) sum += a[std::size_t(i * L + j)] = std::exp(LD(beta) * s[std::size_t(i * L + j)] - m);
      LD dd = 0;
      for (index_t c = 0; c < C; ++c) {
        LD y = 0;
        for (index_t j = 0; j < L; ++j) y += a[std::size_t(i * L + j)] / sum * LD(xv(n, j, c));
        const LD got = LD(y0[std::size_t((n * Q + i) * C + c)]);
        if (std::fabs(got - y) > tol * (1 + std::fabs(y))) ok = false;
        dd += LD(g[std::size_t((n * Q + i) * C + c)]) * y;
      }
      for (index_t j = 0; j < L; ++j) {
        LD& aj = a[std::size_t(i * L + j)];
        aj /= sum;
        LD da = 0;
        for (index_t c = 0; c < C; ++c) da += LD(g[std::size_t((n * Q + i) * C + c)]) * LD(xv(n, j, c));
        const LD ds = aj * (da - dd);
        gb += ds * s[std::size_t(i * L + j)];
        for (index_t c = 0; c < C; ++c) {
          gxn[std::size_t(j * C + c)] += aj * LD(g[std::size_t((n * Q + i) * C + c)]) + LD(beta) * ds * LD(q[std::size_t(i * C + c)]);
          gq[std::size_t(i * C + c)] += LD(beta) * ds * LD(xv(n, j, c));
        }
      }
    }
    for (index_t j = 0; j < L && ok; ++j)
      for (index_t c = 0; c < C; ++c) {
        const std::size_t at = std::size_t(hp.channels_last ? (n * L + j) * C + c : (n * C + c) * L + j);
        if (std::fabs(LD(gx0[at]) - gxn[std::size_t(j * C + c)]) > tol * (1 + std::fabs(gxn[std::size_t(j * C + c)])) * 4)
          ok = false;
      }
  }
  for (std::size_t i = 0; ok && i < gq.size(); ++i) {
    LD got = 0;
    for (index_t n = 0; n < N; ++n) got += LD(gq0[std::size_t(n) * q.size() + i]);
    if (std::fabs(got - gq[i]) > tol * (1 + std::fabs(gq[i])) * 4 * LD(N)) ok = false;
  }
  LD gbs = 0;
  for (T v : gb0) gbs += LD(v);
  if (ok && std::fabs(gbs - gb) > tol * (1 + std::fabs(gb)) * 8 * LD(N)) ok = false;
  if (!ok) {
    ++failures;
    std::printf("FAIL scalar %s hopfield case %d (N %lld C %lld L %lld Q %lld beta %g) vs the plain loop\n",
                sizeof(T) == 4 ? "f32" : "f64", case_id, (long long)N, (long long)C, (long long)L, (long long)Q,
                double(beta));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 400;
  std::mt19937_64 rng(12345);
  int run = 0;
  for (int c = 0; c < cases; ++c) {
    PoolGeometry g;
    if (!random_geometry(rng, g)) continue;
    for (Isa isa : available_isas()) {
      check_isa<float>(isa, g, rng, c);
      check_isa<double>(isa, g, rng, c);
      check_lines_isa<float>(isa, rng, c);
      check_lines_isa<double>(isa, rng, c);
      check_unpool_isa<float>(isa, rng, c);
      check_unpool_isa<double>(isa, rng, c);
      check_fractional_isa<float>(isa, rng, c);
      check_fractional_isa<double>(isa, rng, c);
      check_hopfield_isa<float>(isa, rng, c);
      check_hopfield_isa<double>(isa, rng, c);
    }
    ++run;
  }
  std::string names;
  for (Isa isa : available_isas()) names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  std::printf("%d geometries x %zu SIMD paths (%s) x 2 dtypes: %d failures\n", run, available_isas().size(),
              names.c_str(), failures);
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}
