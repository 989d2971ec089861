// Global max and average pooling (one bin covering the whole spatial plane), forward
// and backward: the commonest bin reduction gets loops of its own that stream x once
// and write each output element once, without the general bin machinery (row
// copies, level staging, compare-routing over every tap).
//
// Max: the general bin kernels' scan rule (`v > best || isnan(v)` in row-major order),
// so the same values and indices. Average: channels_last folds the taps in order from
// -0 (-0 + v == v for every v: the same as starting from the first tap, and the same
// bits as the general kernels); a channels_first plane is summed along its memory in
// 8 interleaved partial sums (plane_sum), one fixed order on every SIMD path. Both
// divide once and report one canonical NaN.
// Included inside an ISA namespace after bins-inl.hpp.

namespace global {

// Channels a channels_last unit reduces at once: the accumulators stay in L1.
constexpr index_t kChunkBytes = 8192;

// Whether the call is one global max / avg level whose argmax positions are exact in T.
template <class T>
bool applies(const BinProblem& pb, BinReduce op, const BinLevel<T>* levels, int n_levels) {
  if (n_levels != 1 || (op != BinReduce::max && op != BinReduce::avg)) return false;
  for (const BinAxis& a : levels[0].axis)
    if (a.out != 1 || a.first[0] != 0 || a.count[0] != a.in || (a.in > 1 && a.step != 1)) return false;
  return pb.plane() <= (index_t(1) << std::numeric_limits<T>::digits);
}

// Folds pixel q's values into the accumulator: the max scan rule with its position,
// or the running sum.
template <BinReduce Op, class V>
inline void fold(V& acc, V& arg, V v, V q) {
  if (Op == BinReduce::max) {
    const typename V::M m = V::gt_or_nan(v, acc);
    acc = V::select(m, v, acc);
    arg = V::select(m, q, arg);
  } else {
    acc = V::add(acc, v);
  }
}

template <BinReduce Op, class T>
inline Vec<T> start_value() {
  return Vec<T>::set1(Op == BinReduce::max ? -__builtin_inf() : T(-0.0));
}

// The per-call layout: units, offsets of outputs, the avg divisor.
template <class T>
struct Plan {
  using V = Vec<T>;
  index_t N, C, P, NC, chunk, per_n;
  bool cl;
  T divisor;

  Plan(const BinProblem& pb, const BinLevel<T>& lv, int threads)
      : N(pb.batch), C(pb.channels), P(pb.plane()), NC(pb.batch * pb.channels), cl(pb.channels_last) {
    divisor = T(lv.axis[0].divisor[0] * lv.axis[1].divisor[0] * lv.axis[2].divisor[0]);
    // channels_last: chunks of whole vectors, small enough that every thread gets a few
    chunk = imin(C, kChunkBytes / index_t(sizeof(T)));
    const index_t want = (4 * index_t(threads) + N - 1) / N;
    if (threads > 1 && want > 1) chunk = imin(chunk, imax(V::N, (C / want) / V::N * V::N));
    per_n = (C + chunk - 1) / chunk;
  }
  index_t units() const { return cl ? N * per_n : (NC + V::N - 1) / V::N; }
  // channels_last unit u: its channels [c0, c0 + n) of one sample, the first of them
  // plane (n, c0) = plane0, at x offset `at`.
  struct ClUnit {
    index_t n, plane0, at;
  };
  ClUnit cl_unit(index_t u) const {
    const index_t s = u / per_n, c0 = (u % per_n) * chunk;
    return {imin(chunk, C - c0), s * C + c0, s * P * C + c0};
  }
  index_t out_offset(const BinLevel<T>& lv, index_t plane) const {
    return (plane / C) * lv.stride_n + (plane % C) * lv.stride_c;
  }
};

// ------------------------------------------------------------------ channels_first
// A plane is contiguous: average sums it along its own memory; max folds groups of
// planes through block transposes (one lane per plane, the scan rule per lane).

// Sum of a plane in one fixed order on every path: 8 interleaved partial sums
// (s_j adds x[j], x[j + 8], ... in order, missing tail elements as +0), combined as
// ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)).
constexpr index_t kPartials = 8;

template <class T>
inline T plane_sum(const T* p, index_t P) {
  using V = Vec<T>;
  constexpr index_t L = V::N < kPartials ? V::N : kPartials, NV = kPartials / L;
  V acc[NV];
  for (V& a : acc) a = V::set1(T(-0.0));
  index_t q = 0;
  for (; q + kPartials <= P; q += kPartials)
    for (index_t v = 0; v < NV; ++v) acc[v] = V::add(acc[v], L == V::N ? V::load(p + q + v * L) : V::load_n(p + q, L));
  if (q < P)
    for (index_t v = 0; v < NV; ++v) {
      const index_t n = imin(P - q - v * L, L);
      acc[v] = V::add(acc[v], n <= 0 ? V::zero() : n == V::N ? V::load(p + q + v * L) : V::load_n(p + q + v * L, n));
    }
  alignas(64) T t[NV * V::N];
  for (index_t v = 0; v < NV; ++v) V::store(t + v * L, acc[v]);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

// Plane groups ahead of the one being folded whose memory is prefetched: the
// transposes read N rows P apart, a pattern the hardware prefetcher follows late
// (global max backward, channels_first (64, 2048, 7, 7): 4.6 -> 3.0 ms).
constexpr index_t kGroupsAhead = 4;

// The maxima of up to N consecutive planes, one per lane, through N x N transposes,
// with their positions. `end`: the end of x (nothing past it is prefetched).
template <class T>
inline void fold_planes(const T* x, index_t P, index_t lanes, T* val, T* pos, T* tmp, const T* end) {
  using V = Vec<T>;
  prefetch_elements(x, kGroupsAhead * V::N * P, (kGroupsAhead + 1) * V::N * P, end - x);
  V acc = V::set1(-__builtin_inf()), arg = V::zero();
  index_t q = 0;
  if (lanes == V::N)
    for (; q + V::N <= P; q += V::N) {
      V::transpose_block(x + q, P, tmp, V::N);
      for (index_t j = 0; j < V::N; ++j) fold<BinReduce::max>(acc, arg, V::load(tmp + j * V::N), V::set1(T(q + j)));
    }
  for (; q < P; ++q) fold<BinReduce::max>(acc, arg, load_plane_lanes(x + q, P, lanes, q + 1 == P), V::set1(T(q)));
  V::store(val, acc);
  V::store(pos, arg);
}

// ------------------------------------------------------------------ channels_last
// Channels [c0, c0 + kc) of one sample: accumulators per channel, four pixels per
// pass so each accumulator is loaded once per four rows of x.
template <BinReduce Op, class T>
inline void fold_channels(const T* x, index_t P, index_t C, index_t kc, T* acc, T* arg) {
  using V = Vec<T>;
  for (index_t i = 0; i < kc; i += V::N) {
    V::store(acc + i, start_value<Op, T>());
    V::store(arg + i, V::zero());
  }
  for (index_t q = 0; q < P; q += 4) {
    const index_t r = imin(4, P - q);
    const T* p = x + q * C;
    for (index_t i = 0; i < kc; i += V::N) {
      V a = V::load(acc + i), g = V::load(arg + i);
      const index_t n = imin(V::N, kc - i);
      for (index_t j = 0; j < r; ++j)
        fold<Op>(a, g, n == V::N ? V::load(p + j * C + i) : V::load_n(p + j * C + i, n), V::set1(T(q + j)));
      V::store(acc + i, a);
      V::store(arg + i, g);
    }
  }
}

template <class T>
inline Vec<T> avg_value(Vec<T> sum, T divisor) {
  return bins::canonical_nan(Vec<T>::div(sum, Vec<T>::set1(divisor)));
}

// y (and indices) of planes [plane0, plane0 + n) from lane values.
template <class T>
inline void put_planes(const Plan<T>& pl, const BinLevel<T>& lv, index_t plane0, index_t n, const T* val,
                       const T* pos) {
  for (index_t l = 0; l < n; ++l) {
    const index_t o = pl.out_offset(lv, plane0 + l);
    lv.y[o] = val[l];
    if (lv.indices) lv.indices[o] = std::int64_t(pos[l]);
  }
}

// grad_y of planes [plane0, plane0 + n) into lanes, zeros up to a whole vector.
template <class T>
inline void get_planes(const Plan<T>& pl, const BinLevel<T>& lv, index_t plane0, index_t n, T* g) {
  for (index_t l = 0; l < n; ++l) g[l] = lv.grad_y[pl.out_offset(lv, plane0 + l)];
  for (index_t l = n; l % Vec<T>::N; ++l) g[l] = T(0);
}

template <BinReduce Op, class T>
void forward(const T* x, const BinProblem& pb, const BinLevel<T>& lv, int threads) {
  using V = Vec<T>;
  const Plan<T> pl(pb, lv, threads);
  int ok = 1;
  parallel_for(pl.units(), threads, pb.size(), [&](index_t u0, index_t u1) {
    const index_t len = pl.cl ? pl.chunk + V::N : V::N * V::N;
    Scratch mem(Scratch::bytes<T>(len) * 3);
    if (!mem.ok()) return report_failure(ok);
    T* a = mem.take<T>(len);
    T* b = mem.take<T>(len);
    T* t = mem.take<T>(len);
    for (index_t u = u0; u < u1; ++u) {
      index_t plane0, n;
      if (pl.cl) {
        const auto cu = pl.cl_unit(u);
        n = cu.n;
        plane0 = cu.plane0;
        fold_channels<Op>(x + cu.at, pl.P, pl.C, n, a, b);
        if (Op == BinReduce::avg)
          for (index_t i = 0; i < n; i += V::N) V::store(a + i, avg_value(V::load(a + i), pl.divisor));
      } else {
        plane0 = u * V::N;
        n = imin(V::N, pl.NC - plane0);
        if (Op == BinReduce::avg) {
          for (index_t l = 0; l < n; ++l) a[l] = plane_sum(x + (plane0 + l) * pl.P, pl.P);
          V::store(a, avg_value(V::load(a), pl.divisor));
        } else {
          fold_planes(x + plane0 * pl.P, pl.P, n, a, b, t, x + pl.NC * pl.P);
        }
      }
      put_planes(pl, lv, plane0, n, a, b);
    }
  });
  if (!ok) throw std::bad_alloc();
}

// Gradient of a channels_first plane group, elements [0, n*P) of its contiguous
// memory, staged a chunk at a time (so large outputs stream out aligned): plane l is
// value[l] everywhere (avg), or zero but 0 + value[l] at pos[l] (max; pos < 0: none).
constexpr index_t kStageElems = 4096;

template <BinReduce Op, class T>
inline void emit_planes(T* out, index_t P, index_t n, const T* value, const T* pos, T* stage, bool nt) {
  using V = Vec<T>;
  const index_t total = n * P;
  for (index_t e0 = 0; e0 < total; e0 += kStageElems) {
    const index_t e1 = imin(total, e0 + kStageElems);
    for (index_t l = e0 / P; l < n && l * P < e1; ++l) {
      const index_t lo = imax(e0, l * P), hi = imin(e1, (l + 1) * P);
      const V v = Op == BinReduce::avg ? V::set1(value[l]) : V::zero();
      for (index_t e = lo; e < hi; e += V::N) V::store(stage + (e - e0), v);  // slack after the stage
      if (Op == BinReduce::max && pos[l] >= T(0)) {
        const index_t at = l * P + index_t(pos[l]);
        if (at >= lo && at < hi) stage[at - e0] = T(0) + value[l];
      }
    }
    emit_row(out + e0, stage, e1 - e0, nt);
  }
}

// Backward. avg: every element of a plane gets grad_y / divisor. max: the plane is
// zero but at its argmax (recomputed from x, or given), which gets 0 + grad_y, as
// the general kernels' accumulation gives. Each element of grad_x is written once.
// Returns the offset of the first given index outside the plane, or -1.
template <BinReduce Op, class T>
index_t backward(const T* x, const BinProblem& pb, const BinLevel<T>& lv, T* gx, int threads) {
  using V = Vec<T>;
  const Plan<T> pl(pb, lv, threads);
  const std::int64_t* given = Op == BinReduce::max ? lv.given_indices : nullptr;
  const bool nt = std::size_t(pb.size()) * sizeof(T) >= kStreamBytes;
  int ok = 1;
  index_t bad = -1;
  parallel_for(pl.units(), threads, pb.size(), [&](index_t u0, index_t u1) {
    const index_t len = pl.cl ? pl.chunk + V::N : V::N * V::N;
    Scratch mem(Scratch::bytes<T>(len) * 4 + Scratch::bytes<T>(kStageElems + V::N));
    if (!mem.ok()) return report_failure(ok);
    T* a = mem.take<T>(len);
    T* b = mem.take<T>(len);
    T* g = mem.take<T>(len);
    T* row = mem.take<T>(len);
    T* stage = mem.take<T>(kStageElems + V::N);
    index_t my_bad = -1;
    // b[l] = the given index of lane l as T, or -1 (reported) outside the plane
    auto given_positions = [&](index_t plane0, index_t n) {
      for (index_t l = 0; l < n; ++l) {
        const index_t o = pl.out_offset(lv, plane0 + l), pos = index_t(given[o]);
        const bool in = pos >= 0 && pos < pl.P;
        if (!in && (my_bad < 0 || o < my_bad)) my_bad = o;
        b[l] = in ? T(pos) : T(-1);
      }
    };
    for (index_t u = u0; u < u1; ++u) {
      if (pl.cl) {
        const auto cu = pl.cl_unit(u);
        const index_t n = cu.n, plane0 = cu.plane0;
        T* out = gx + cu.at;
        get_planes(pl, lv, plane0, n, g);
        if (Op == BinReduce::avg) {
          for (index_t i = 0; i < n; i += V::N) V::store(g + i, avg_value(V::load(g + i), pl.divisor));
          for (index_t q = 0; q < pl.P; ++q) emit_row(out + q * pl.C, g, n, nt);
          continue;
        }
        if (given) {
          given_positions(plane0, n);
          for (index_t i = n; i % V::N; ++i) b[i] = T(-1);
        } else {
          fold_channels<Op>(x + cu.at, pl.P, pl.C, n, a, b);
        }
        for (index_t i = 0; i < n; i += V::N) V::store(g + i, V::add(V::zero(), V::load(g + i)));
        for (index_t q = 0; q < pl.P; ++q) {
          const V qv = V::set1(T(q));
          for (index_t i = 0; i < n; i += V::N)
            V::store(row + i, V::select(V::eq(V::load(b + i), qv), V::load(g + i), V::zero()));
          emit_row(out + q * pl.C, row, n, nt);
        }
        continue;
      }
      const index_t plane0 = u * V::N, n = imin(V::N, pl.NC - plane0);
      get_planes(pl, lv, plane0, n, g);
      if (Op == BinReduce::avg) {
        V::store(g, avg_value(V::load(g), pl.divisor));
      } else if (given) {
        given_positions(plane0, n);
      } else {
        fold_planes(x + plane0 * pl.P, pl.P, n, a, b, row, x + pl.NC * pl.P);
      }
      emit_planes<Op>(gx + plane0 * pl.P, pl.P, n, g, b, stage, nt);
    }
    if (nt) V::fence();
    report_bad_index(bad, my_bad);
  });
  if (!ok) throw std::bad_alloc();
  return bad;
}

}  // namespace global
