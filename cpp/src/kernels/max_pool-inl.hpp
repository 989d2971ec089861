// Max pooling, forward and backward, both layouts, written once over a vector type.
// Scan rule everywhere: take v if v > best or v is NaN, in window order (depth,
// height, width); so ties keep the first maximum and NaN propagates with its index
// at the last NaN. The horizontal-then-vertical order of the channels-first driver
// gives the same winner as a row-major scan: the first row holding the maximum,
// then the first column in that row.
// Included inside an ISA namespace after the vector types and common-inl.hpp.

// ---------------------------------------------------------------- channels first

template <class T, bool kTaps>
struct MaxRowOp {
  using V = Vec<T>;
  const AxisGeometry& aw;
  index_t lo, hi;

  explicit MaxRowOp(const AxisGeometry& a) : aw(a) { steady_range(a, strided_overread(a.stride), lo, hi); }

  // One window of the row, clipped to the input.
  void window(const T* row, index_t o, T& val, T& tap) const {
    index_t f, l;
    aw.valid_taps(o, f, l);
    const T* p = row + aw.start(o);
    T best = p[f * aw.dilation];
    index_t bt = f;
    for (index_t j = f + 1; j < l; ++j) {
      const T v = p[j * aw.dilation];
      if (v > best || v != v) {
        best = v;
        bt = j;
      }
    }
    val = best;
    if (kTaps) tap = T(bt);
  }

  // n windows (n <= V::N) whose first taps start at p, all inside the input; stores
  // a whole vector (scratch rows have slack).
  void steady(const T* p, T* val, T* tap, index_t n = V::N) const {
    const index_t s = aw.stride, d = aw.dilation, k = aw.kernel;
    V best = V::load_strided_n(p, s, n);
    V bt = V::zero();
    for (index_t j = 1; j < k; ++j) {
      const V v = V::load_strided_n(p + j * d, s, n);
      if (kTaps) {
        const typename V::M m = V::gt_or_nan(v, best);
        best = V::select(m, v, best);
        bt = V::select(m, V::set1(T(j)), bt);
      } else {
        best = V::max_nan(best, v);
      }
    }
    V::store(val, best);
    if (kTaps) V::store(tap, bt);
  }

  void hpass(const T* row, index_t c0, index_t c1, T* val, T* tap, T* pad) const {
    if (!kTaps && pad) {  // values only: -inf padding never wins, so no border cases
      index_t lo, hi;
      padded_span(aw, c0, c1, V::N, lo, hi);
      pad_row(row, aw.in, lo, hi - lo, -T(__builtin_inf()), pad);
      for (index_t o = c0; o < c1; o += V::N) steady(pad + (aw.start(o) - lo), val + (o - c0), nullptr);
      return;
    }
    // With taps a padding tap must never be reported: border windows are clipped.
    const index_t a = imin(imax(lo, c0), c1), b = imin(imax(hi, a), c1);
    T dummy;
    index_t o = c0;
    for (; o < a; ++o) window(row, o, val[o - c0], kTaps ? tap[o - c0] : dummy);
    for (; o + V::N <= b; o += V::N)
      steady(row + aw.start(o), val + (o - c0), kTaps ? tap + (o - c0) : nullptr);
    if (o < b && b - a >= V::N) {  // last block overlaps the previous one: same values again
      steady(row + aw.start(b - V::N), val + (b - V::N - c0), kTaps ? tap + (b - V::N - c0) : nullptr);
      o = b;
    }
    // A short row: lanes past b are stored too (into scratch slack or columns the
    // right border overwrites next); only input reads must stop at the row's end.
    if (o < b) steady(row + aw.start(o), val + (o - c0), kTaps ? tap + (o - c0) : nullptr, b - o);
    for (; o < c1; ++o) window(row, o, val[o - c0], kTaps ? tap[o - c0] : dummy);
  }

  void start(T* acc_row, index_t n) const {
    if (kTaps)
      for (index_t i = 0; i < n; ++i) acc_row[i] = T(0);
  }

  // Row r wins lanes where its value beats the accumulator. All buffers are scratch
  // rows with slack, so whole vectors cover the tail.
  void fold(T* av, T* at, T* ar, const T* hv, const T* ht, index_t r, index_t n) const {
    for (index_t i = 0; i < n; i += V::N) {
      const V v = V::load(hv + i), acc = V::load(av + i);
      if (kTaps) {
        const typename V::M w = V::gt_or_nan(v, acc);
        V::store(av + i, V::select(w, v, acc));
        V::store(at + i, V::select(w, V::load(ht + i), V::load(at + i)));
        V::store(ar + i, V::select(w, V::set1(T(r)), V::load(ar + i)));
      } else {
        V::store(av + i, V::max_nan(acc, v));
      }
    }
  }
};

// Calls f(plane, od, oh, c0, c1) for every (plane, output row, column chunk) item,
// in order, split over threads; scratch is carved per thread.
template <class T, class F>
bool for_each_row_cf(const PoolGeometry& g, const RowPlan<T>& plan, bool with_taps, int threads,
                     index_t work, F&& f) {
  const index_t planes = g.batch * g.channels, od_n = g.axis[0].out, oh_n = g.axis[1].out;
  const index_t items = planes * od_n * oh_n * plan.n_chunks;
  int ok = 1;
  parallel_for(items, threads, work, [&](index_t b, index_t e) {
    Scratch mem(plan.scratch_bytes(with_taps));
    if (!mem.ok()) {
      report_failure(ok);
      return;
    }
    RowScratch<T> s(mem, plan, with_taps);
    // Decompose the first item once, then step the counters (no divisions per item).
    index_t chunk = b % plan.n_chunks, row = b / plan.n_chunks;
    index_t oh = row % oh_n, od = (row / oh_n) % od_n, plane = row / (oh_n * od_n);
    for (index_t it = b; it < e; ++it) {
      const index_t c0 = chunk * plan.chunk, c1 = imin(c0 + plan.chunk, g.axis[2].out);
      f(s, plane, od, oh, c0, c1);
      if (++chunk == plan.n_chunks) {
        chunk = 0;
        if (++oh == oh_n) {
          oh = 0;
          if (++od == od_n) {
            od = 0;
            ++plane;
            if (plan.cached) s.cache.reset();
          }
        }
      }
    }
  });
  return ok != 0;
}

template <class T, bool kIdx>
bool max_forward_cf(const T* x, T* y, std::int64_t* idx, const PoolGeometry& g, int threads) {
  const AxisGeometry& aw = g.axis[2];
  const MaxRowOp<T, kIdx> op(aw);
  const RowPlan<T> plan(g);
  const index_t in_plane = g.in_plane(), out_plane = g.out_plane(), ow_n = aw.out;
  const index_t oh_n = g.axis[1].out;
  return for_each_row_cf<T>(
      g, plan, kIdx, threads, g.in_size() + g.out_size(),
      [&](RowScratch<T>& s, index_t plane, index_t od, index_t oh, index_t c0, index_t c1) {
        const index_t n = window_rows(g, od, oh, s.rows);
        const index_t orow = plane * out_plane + (od * oh_n + oh) * ow_n;
        reduce_rows(op, x + plane * in_plane, aw.in, s.rows, n, c0, c1, s, plan.cached);
        store_row(y + orow + c0, s.acc_val, c1 - c0);
        if (kIdx)
          for (index_t o = c0; o < c1; ++o)
            idx[orow + o] = std::int64_t(s.rows[index_t(s.acc_row[o - c0])] * aw.in + aw.start(o) +
                                         index_t(s.acc_tap[o - c0]) * aw.dilation);
      });
}

// Backward from x: whole planes per thread, output rows in order, each gradient row
// zeroed just before the first window that reaches it.
template <class T>
bool max_backward_cf(const T* gy, const T* x, T* gx, const PoolGeometry& g, int threads) {
  const AxisGeometry& aw = g.axis[2];
  const MaxRowOp<T, true> op(aw);
  const RowPlan<T> plan(g);
  const index_t planes = g.batch * g.channels, in_plane = g.in_plane(), out_plane = g.out_plane();
  const index_t od_n = g.axis[0].out, oh_n = g.axis[1].out, ow_n = aw.out;
  const index_t n_rows_in = g.axis[0].in * g.axis[1].in, w = aw.in;
  int ok = 1;
  parallel_for(planes, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    Scratch mem(plan.scratch_bytes(true));
    if (!mem.ok()) {
      report_failure(ok);
      return;
    }
    RowScratch<T> s(mem, plan, true);
    for (index_t plane = b; plane < e; ++plane) {
      if (plan.cached) s.cache.reset();
      const T* xp = x + plane * in_plane;
      T* gp = gx + plane * in_plane;
      index_t zeroed = -1;
      for (index_t od = 0; od < od_n; ++od)
        for (index_t oh = 0; oh < oh_n; ++oh) {
          const index_t n = window_rows(g, od, oh, s.rows);
          if (s.rows[n - 1] > zeroed) {
            zero_rows(gp, w, w, zeroed, s.rows[n - 1]);
            zeroed = s.rows[n - 1];
          }
          const T* grow = gy + plane * out_plane + (od * oh_n + oh) * ow_n;
          for (index_t c0 = 0; c0 < ow_n; c0 += plan.chunk) {
            const index_t c1 = imin(c0 + plan.chunk, ow_n);
            reduce_rows(op, xp, w, s.rows, n, c0, c1, s, plan.cached);
            for (index_t o = c0; o < c1; ++o)
              gp[s.rows[index_t(s.acc_row[o - c0])] * w + aw.start(o) +
                 index_t(s.acc_tap[o - c0]) * aw.dilation] += grow[o];
          }
        }
      zero_rows(gp, w, w, zeroed, n_rows_in - 1);
    }
  });
  return ok != 0;
}

// ---------------------------------------------------------------- channels last

// Max over window w for channels [c, c + U*W::N), U vectors at a time so that U
// loads are in flight per tap; bt gets the winning tap.
template <class T, class W, int U, bool kTaps>
inline void max_pixel(const T* xn, const PoolGeometry& g, const PixelWindow& w, index_t c, W* best, W* bt) {
  const index_t C = g.channels;
  bool first = true;
  for_each_tap(g, w, [&](index_t pixel, index_t tap) {
    const T* p = xn + pixel * C + c;
    const W t = W::set1(T(tap));
    for (int u = 0; u < U; ++u) {
      const W v = W::load(p + u * W::N);
      if (first) {
        best[u] = v;
        if (kTaps) bt[u] = t;
      } else if (kTaps) {
        const typename W::M m = W::gt_or_nan(v, best[u]);
        best[u] = W::select(m, v, best[u]);
        bt[u] = W::select(m, t, bt[u]);
      } else {
        best[u] = W::max_nan(best[u], v);
      }
    }
    first = false;
  });
}

template <class T, bool kIdx>
bool max_forward_cl(const T* x, T* y, std::int64_t* idx, const PoolGeometry& g, int threads) {
  const index_t C = g.channels, in_n = g.in_plane() * C;
  for_each_pixel_cl(g, threads, [&](index_t n, index_t, index_t, index_t, index_t pixel, const PixelWindow& w) {
    const T* xn = x + n * in_n;
    const index_t out = pixel * C;
    for_channel_groups<T>(0, C, [&](auto tag, auto n_vec, index_t c) {
      using W = decltype(tag);
      constexpr int U = decltype(n_vec)::value;
      W best[U] = {}, bt[U] = {};
      max_pixel<T, W, U, kIdx>(xn, g, w, c, best, bt);
      for (int u = 0; u < U; ++u) {
        W::store(y + out + c + u * W::N, best[u]);
        if (kIdx) {
          alignas(64) T taps[W::N];
          W::store(taps, bt[u]);
          for (int i = 0; i < W::N; ++i) idx[out + c + u * W::N + i] = tap_index(g, w, index_t(taps[i]));
        }
      }
    });
  });
  return true;
}

// Backward from x: recompute each window's winning tap per lane, then a masked add
// of the gradient at every valid tap routes it to the winner.
template <class T>
bool max_backward_cl(const T* gy, const T* x, T* gx, const PoolGeometry& g, int threads) {
  const index_t C = g.channels, in_n = g.in_plane() * C;
  for_each_unit_cl(gx, g, threads, [&](index_t n, index_t c0, index_t c1, index_t, index_t, index_t,
                                       index_t pixel, const PixelWindow& w) {
    const T* xn = x + n * in_n;
    T* gn = gx + n * in_n;
    const T* gsrc = gy + pixel * C;
    for_channel_groups<T>(c0, c1, [&](auto tag, auto n_vec, index_t c) {
      using W = decltype(tag);
      constexpr int U = decltype(n_vec)::value;
      W best[U] = {}, bt[U] = {}, gv[U];
      max_pixel<T, W, U, true>(xn, g, w, c, best, bt);
      for (int u = 0; u < U; ++u) gv[u] = W::load(gsrc + c + u * W::N);
      for_each_tap(g, w, [&](index_t p_in, index_t tap) {
        T* p = gn + p_in * C + c;
        const W t = W::set1(T(tap));
        for (int u = 0; u < U; ++u)
          W::store(p + u * W::N, W::add(W::load(p + u * W::N), W::select(W::eq(bt[u], t), gv[u], W::zero())));
      });
    });
  });
  return true;
}

// ---------------------------------------------------------------- given indices

// Scatter through stored indices: zero the unit's gradient, then add. Returns the
// lowest flat position of grad_y whose index is outside the plane, or -1.
template <class T>
index_t max_backward_indices(const T* gy, const std::int64_t* idx, T* gx, const PoolGeometry& g,
                             int threads) {
  const index_t C = g.channels, in_plane = g.in_plane(), out_plane = g.out_plane();
  const bool cl = g.channels_last;
  const index_t units = cl ? g.batch : g.batch * C;
  const index_t per_unit_in = cl ? in_plane * C : in_plane, per_unit_out = cl ? out_plane * C : out_plane;
  const index_t lanes = cl ? C : 1;
  index_t bad = -1;
  parallel_for(units, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    index_t my_bad = -1;
    for (index_t u = b; u < e && my_bad < 0; ++u) {
      T* gu = gx + u * per_unit_in;
      std::memset(gu, 0, sizeof(T) * per_unit_in);
      const T* gyu = gy + u * per_unit_out;
      const std::int64_t* iu = idx + u * per_unit_out;
      for (index_t o = 0; o < per_unit_out; ++o) {
        const std::int64_t i = iu[o];
        if (i < 0 || i >= in_plane) {
          my_bad = u * per_unit_out + o;
          break;
        }
        gu[index_t(i) * lanes + o % lanes] += gyu[o];
      }
    }
    report_bad_index(bad, my_bad);
  });
  return bad;
}

// ---------------------------------------------------------------- entry points

template <class T>
void max_pool_forward_impl(const T* x, T* y, std::int64_t* idx, const PoolGeometry& g, int threads) {
  bool ok;
  if (g.channels_last)
    ok = idx ? max_forward_cl<T, true>(x, y, idx, g, threads) : max_forward_cl<T, false>(x, y, idx, g, threads);
  else if (small_plane_path(g))
    ok = idx ? max_forward_small<T, true>(x, y, idx, g, threads) : max_forward_small<T, false>(x, y, idx, g, threads);
  else
    ok = idx ? max_forward_cf<T, true>(x, y, idx, g, threads) : max_forward_cf<T, false>(x, y, idx, g, threads);
  if (!ok) throw std::bad_alloc();
}

template <class T>
index_t max_pool_backward_impl(const T* gy, const T* x, const std::int64_t* idx, T* gx,
                               const PoolGeometry& g, int threads) {
  if (idx) return max_backward_indices(gy, idx, gx, g, threads);
  const bool ok = g.channels_last       ? max_backward_cl(gy, x, gx, g, threads)
                  : small_plane_path(g) ? max_backward_small(gy, x, gx, g, threads)
                                        : max_backward_cf(gy, x, gx, g, threads);
  if (!ok) throw std::bad_alloc();
  return -1;
}
