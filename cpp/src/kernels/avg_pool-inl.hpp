// Average pooling, forward and backward, both layouts, written once over a vector
// type. Sums run in window order (depth, height, width) on every path and without
// FMA contraction, so all SIMD paths and thread counts agree bitwise.
// Included inside an ISA namespace after max_pool-inl.hpp (shares its helpers).

// y[i] = sum[i] / div[i] for i < n; sum and div are scratch rows with slack.
template <class T>
inline void divide(T* y, const T* sum, const T* div, index_t n) {
  using V = Vec<T>;
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, V::div(V::load(sum + i), V::load(div + i)));
  if (i < n) V::store_n(y + i, V::div(V::load(sum + i), V::load(div + i)), n - i);
}

// ---------------------------------------------------------------- channels first

template <class T>
struct SumRowOp {
  using V = Vec<T>;
  const AxisGeometry& aw;
  index_t lo, hi;

  explicit SumRowOp(const AxisGeometry& a) : aw(a) { steady_range(a, strided_overread(a.stride), lo, hi); }

  T window(const T* row, index_t o) const {
    index_t f, l;
    aw.valid_taps(o, f, l);
    const T* p = row + aw.start(o);
    T sum = p[f * aw.dilation];
    for (index_t j = f + 1; j < l; ++j) sum = sum + p[j * aw.dilation];
    return sum;
  }

  // n windows (n <= V::N) whose first taps start at p, all inside the input; stores
  // a whole vector (scratch rows have slack).
  void steady(const T* p, T* val, index_t n = V::N) const {
    const index_t s = aw.stride, d = aw.dilation, k = aw.kernel;
    V sum = V::load_strided_n(p, s, n);
    for (index_t j = 1; j < k; ++j) sum = V::add(sum, V::load_strided_n(p + j * d, s, n));
    V::store(val, sum);
  }

  void hpass(const T* row, index_t c0, index_t c1, T* val, T*, T* pad) const {
    if (pad) {  // zero padding adds nothing, so no border cases
      index_t lo, hi;
      padded_span(aw, c0, c1, V::N, lo, hi);
      pad_row(row, aw.in, lo, hi - lo, T(0), pad);
      for (index_t o = c0; o < c1; o += V::N) steady(pad + (aw.start(o) - lo), val + (o - c0));
      return;
    }
    const index_t a = imin(imax(lo, c0), c1), b = imin(imax(hi, a), c1);
    index_t o = c0;
    for (; o < a; ++o) val[o - c0] = window(row, o);
    for (; o + V::N <= b; o += V::N) steady(row + aw.start(o), val + (o - c0));
    if (o < b && b - a >= V::N) {  // last block overlaps the previous one: same values again
      steady(row + aw.start(b - V::N), val + (b - V::N - c0));
      o = b;
    }
    if (o < b) steady(row + aw.start(o), val + (o - c0), b - o);  // short row, as MaxRowOp::hpass
    for (; o < c1; ++o) val[o - c0] = window(row, o);
  }

  void start(T*, index_t) const {}

  void fold(T* av, T*, T*, const T* hv, const T*, index_t, index_t n) const {
    for (index_t i = 0; i < n; i += V::N) V::store(av + i, V::add(V::load(av + i), V::load(hv + i)));
  }
};

template <class T>
bool avg_forward_cf(const T* x, T* y, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  const AxisGeometry& aw = g.axis[2];
  const SumRowOp<T> op(aw);
  const RowPlan<T> plan(g);
  Scratch shared(divisor_bytes(g));
  if (!shared.ok()) return false;
  const Divisors dv = make_divisors(shared, g, opt);
  const index_t in_plane = g.in_plane(), out_plane = g.out_plane(), ow_n = aw.out, oh_n = g.axis[1].out;
  return for_each_row_cf<T>(
      g, plan, false, threads, g.in_size() + g.out_size(),
      [&](RowScratch<T>& s, index_t plane, index_t od, index_t oh, index_t c0, index_t c1) {
        const index_t n = window_rows(g, od, oh, s.rows);
        T* yr = y + plane * out_plane + (od * oh_n + oh) * ow_n + c0;
        reduce_rows(op, x + plane * in_plane, aw.in, s.rows, n, c0, c1, s, plan.cached);
        for (index_t o = c0; o < c1; ++o) s.acc_tap[o - c0] = T(dv.at(od, oh, o));
        divide(yr, s.acc_val, s.acc_tap, c1 - c0);
      });
}

// Backward: whole planes per thread, output rows in order. Each output row's
// scaled gradient is spread along W once (into a row buffer), then added to every
// input row of its window; rows are zeroed just before first use.
template <class T>
bool avg_backward_cf(const T* gy, T* gx, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  using V = Vec<T>;
  const AxisGeometry& aw = g.axis[2];
  Scratch shared(divisor_bytes(g));
  if (!shared.ok()) return false;
  const Divisors dv = make_divisors(shared, g, opt);
  const index_t planes = g.batch * g.channels, in_plane = g.in_plane(), out_plane = g.out_plane();
  const index_t od_n = g.axis[0].out, oh_n = g.axis[1].out, ow_n = aw.out, w = aw.in;
  const index_t n_rows_in = g.axis[0].in * g.axis[1].in, max_rows = g.axis[0].kernel * g.axis[1].kernel;
  const index_t chunk = imin(ow_n, kChunk);
  int ok = 1;
  parallel_for(planes, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    Scratch mem(Scratch::bytes<index_t>(max_rows) + Scratch::bytes<T>(chunk) + Scratch::bytes<T>(w));
    if (!mem.ok()) {
      report_failure(ok);
      return;
    }
    index_t* rows = mem.take<index_t>(max_rows);
    T* gs = mem.take<T>(chunk);
    T* spread = mem.take<T>(w);
    for (index_t plane = b; plane < e; ++plane) {
      T* gp = gx + plane * in_plane;
      index_t zeroed = -1;
      for (index_t od = 0; od < od_n; ++od)
        for (index_t oh = 0; oh < oh_n; ++oh) {
          const index_t n = window_rows(g, od, oh, rows);
          if (rows[n - 1] > zeroed) {
            zero_rows(gp, w, w, zeroed, rows[n - 1]);
            zeroed = rows[n - 1];
          }
          const T* grow = gy + plane * out_plane + (od * oh_n + oh) * ow_n;
          for (index_t c0 = 0; c0 < ow_n; c0 += chunk) {
            const index_t c1 = imin(c0 + chunk, ow_n);
            for (index_t o = c0; o < c1; ++o) gs[o - c0] = T(dv.at(od, oh, o));
            // gs = grad / divisor
            for (index_t o = c0; o < c1; ++o) gs[o - c0] = grow[o] / gs[o - c0];
            // Every tap of windows c0..c1-1 lies in [lo, hi) (with dilation a later
            // window may reach further left than the first one's first valid tap).
            const index_t lo = imax(aw.start(c0), 0);
            const index_t hi = imin(aw.start(c1 - 1) + (aw.kernel - 1) * aw.dilation + 1, w);
            for (index_t i = lo; i < hi; ++i) spread[i] = T(0);
            index_t f, l;
            for (index_t o = c0; o < c1; ++o) {
              aw.valid_taps(o, f, l);
              T* sp = spread + aw.start(o);
              for (index_t j = f; j < l; ++j) sp[j * aw.dilation] += gs[o - c0];
            }
            for (index_t r = 0; r < n; ++r) {
              T* dst = gp + rows[r] * w;
              index_t i = lo;
              for (; i + V::N <= hi; i += V::N) V::store(dst + i, V::add(V::load(dst + i), V::load(spread + i)));
              for (; i < hi; ++i) dst[i] = dst[i] + spread[i];
            }
          }
        }
      zero_rows(gp, w, w, zeroed, n_rows_in - 1);
    }
  });
  return ok != 0;
}

// ---------------------------------------------------------------- channels last

template <class T>
bool avg_forward_cl(const T* x, T* y, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  Scratch shared(divisor_bytes(g));
  if (!shared.ok()) return false;
  const Divisors dv = make_divisors(shared, g, opt);
  const index_t C = g.channels, in_n = g.in_plane() * C;
  for_each_pixel_cl(g, threads, [&](index_t n, index_t od, index_t oh, index_t ow, index_t pixel,
                                    const PixelWindow& w) {
    const T* xn = x + n * in_n;
    T* yp = y + pixel * C;
    const T div = T(dv.at(od, oh, ow));
    for_channel_groups<T>(0, C, [&](auto tag, auto n_vec, index_t c) {
      using W = decltype(tag);
      constexpr int U = decltype(n_vec)::value;
      W sum[U] = {};
      bool first = true;
      for_each_tap(g, w, [&](index_t p_in, index_t) {
        const T* p = xn + p_in * C + c;
        for (int u = 0; u < U; ++u) sum[u] = first ? W::load(p + u * W::N) : W::add(sum[u], W::load(p + u * W::N));
        first = false;
      });
      for (int u = 0; u < U; ++u) W::store(yp + c + u * W::N, W::div(sum[u], W::set1(div)));
    });
  });
  return true;
}

template <class T>
bool avg_backward_cl(const T* gy, T* gx, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  Scratch shared(divisor_bytes(g));
  if (!shared.ok()) return false;
  const Divisors dv = make_divisors(shared, g, opt);
  const index_t C = g.channels, in_n = g.in_plane() * C;
  for_each_unit_cl(gx, g, threads, [&](index_t n, index_t c0, index_t c1, index_t od, index_t oh, index_t ow,
                                       index_t pixel, const PixelWindow& w) {
    T* gn = gx + n * in_n;
    const T* gsrc = gy + pixel * C;
    const T div = T(dv.at(od, oh, ow));
    for_channel_groups<T>(c0, c1, [&](auto tag, auto n_vec, index_t c) {
      using W = decltype(tag);
      constexpr int U = decltype(n_vec)::value;
      W gv[U];
      for (int u = 0; u < U; ++u) gv[u] = W::div(W::load(gsrc + c + u * W::N), W::set1(div));
      for_each_tap(g, w, [&](index_t p_in, index_t) {
        T* p = gn + p_in * C + c;
        for (int u = 0; u < U; ++u) W::store(p + u * W::N, W::add(W::load(p + u * W::N), gv[u]));
      });
    });
  });
  return true;
}

// ---------------------------------------------------------------- entry points

template <class T>
void avg_pool_forward_impl(const T* x, T* y, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  const bool ok = g.channels_last       ? avg_forward_cl(x, y, g, opt, threads)
                  : small_plane_path(g) ? avg_forward_small(x, y, g, opt, threads)
                                        : avg_forward_cf(x, y, g, opt, threads);
  if (!ok) throw std::bad_alloc();
}

template <class T>
void avg_pool_backward_impl(const T* gy, T* gx, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  const bool ok = g.channels_last       ? avg_backward_cl(gy, gx, g, opt, threads)
                  : small_plane_path(g) ? avg_backward_small(gy, gx, g, opt, threads)
                                        : avg_backward_cf(gy, gx, g, opt, threads);
  if (!ok) throw std::bad_alloc();
}
