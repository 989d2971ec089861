// Channels-last drivers: each output pixel's window is walked tap by tap, and the
// work is vectorized across channels (contiguous in memory), several vectors at a
// time. The operators supply only what they do per tap.
// Included inside an ISA namespace after common-inl.hpp.

// Valid taps [f, l) and window start st of one output pixel, per axis (D, H, W).
struct PixelWindow {
  index_t f[3], l[3], st[3];

  PixelWindow(const PoolGeometry& g, index_t od, index_t oh, index_t ow) {
    const index_t o[3] = {od, oh, ow};
    for (int i = 0; i < 3; ++i) {
      g.axis[i].valid_taps(o[i], f[i], l[i]);
      st[i] = g.axis[i].start(o[i]);
    }
  }

  // Last input row (id*H + ih) the window reads.
  index_t last_row(const PoolGeometry& g) const {
    return (st[0] + (l[0] - 1) * g.axis[0].dilation) * g.axis[1].in + st[1] + (l[1] - 1) * g.axis[1].dilation;
  }
};

// Calls f(pixel, tap) for each valid tap in window order: pixel is the flat spatial
// index of the input position, tap its number over the full window.
template <class F>
inline void for_each_tap(const PoolGeometry& g, const PixelWindow& w, F&& f) {
  const AxisGeometry* ax = g.axis;
  const index_t H = ax[1].in, Wd = ax[2].in, KH = ax[1].kernel, KW = ax[2].kernel;
  for (index_t a = w.f[0]; a < w.l[0]; ++a) {
    const index_t id = w.st[0] + a * ax[0].dilation;
    for (index_t b = w.f[1]; b < w.l[1]; ++b) {
      const index_t base = (id * H + w.st[1] + b * ax[1].dilation) * Wd + w.st[2];
      const index_t tap = (a * KH + b) * KW;
      for (index_t j = w.f[2]; j < w.l[2]; ++j) f(base + j * ax[2].dilation, tap + j);
    }
  }
}

// Flat spatial index of full-window tap t of window w.
inline std::int64_t tap_index(const PoolGeometry& g, const PixelWindow& w, index_t t) {
  const AxisGeometry* ax = g.axis;
  const index_t j = t % ax[2].kernel, b = (t / ax[2].kernel) % ax[1].kernel,
                a = t / (ax[2].kernel * ax[1].kernel);
  return std::int64_t(((w.st[0] + a * ax[0].dilation) * ax[1].in + w.st[1] + b * ax[1].dilation) * ax[2].in +
                      w.st[2] + j * ax[2].dilation);
}

// Channels [c0, c1) in groups: emit(vector tag, Int<U>, c) handles U vectors from c,
// and a scalar tag covers the channels left over.
template <class T, class E>
inline void for_channel_groups(index_t c0, index_t c1, E&& emit) {
  using V = Vec<T>;
  index_t c = c0;
  for (; c + 4 * V::N <= c1; c += 4 * V::N) emit(V{}, Int<4>{}, c);
  for (; c + V::N <= c1; c += V::N) emit(V{}, Int<1>{}, c);
  for (; c < c1; ++c) emit(Scalar<T>{}, Int<1>{}, c);
}

// Forward: calls f(n, od, oh, ow, pixel, w) for every output pixel (pixel: its flat
// index over batch and spatial axes), output rows split over threads.
template <class F>
void for_each_pixel_cl(const PoolGeometry& g, int threads, F&& f) {
  const index_t od_n = g.axis[0].out, oh_n = g.axis[1].out, ow_n = g.axis[2].out;
  parallel_for(g.batch * od_n * oh_n, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    for (index_t row = b; row < e; ++row) {
      const index_t oh = row % oh_n, od = (row / oh_n) % od_n, n = row / (oh_n * od_n);
      for (index_t ow = 0; ow < ow_n; ++ow) f(n, od, oh, ow, row * ow_n + ow, PixelWindow(g, od, oh, ow));
    }
  });
}

// Backward work units: (sample, channel block) pairs, enough to give every thread
// work even at batch 1; each unit owns its slice of grad_x, so no two threads write
// the same element, and it visits output pixels in order, zeroing each input row
// just before the first window that reaches it. Calls f(n, c0, c1, od, oh, ow,
// pixel, w).
template <class T, class F>
void for_each_unit_cl(T* gx, const PoolGeometry& g, int threads, F&& f) {
  const index_t C = g.channels, od_n = g.axis[0].out, oh_n = g.axis[1].out, ow_n = g.axis[2].out;
  const index_t Wd = g.axis[2].in, in_n = g.in_plane() * C, n_rows_in = g.axis[0].in * g.axis[1].in;
  const index_t lanes = Vec<T>::N;
  index_t want = (2 * index_t(threads) + g.batch - 1) / g.batch;  // blocks per sample
  if (want < 1) want = 1;
  index_t blk = ((C + want - 1) / want + lanes - 1) / lanes * lanes;
  blk = imax(imin(blk, C), 1);
  const index_t n_blk = (C + blk - 1) / blk;
  parallel_for(g.batch * n_blk, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    for (index_t unit = b; unit < e; ++unit) {
      const index_t n = unit / n_blk, c0 = (unit % n_blk) * blk, c1 = imin(c0 + blk, C);
      T* gn = gx + n * in_n;
      index_t zeroed = -1;
      auto zero_upto = [&](index_t r) {
        for (; zeroed < r; ++zeroed)
          for (index_t iw = 0; iw < Wd; ++iw)
            std::memset(gn + ((zeroed + 1) * Wd + iw) * C + c0, 0, sizeof(T) * (c1 - c0));
      };
      for (index_t od = 0; od < od_n; ++od)
        for (index_t oh = 0; oh < oh_n; ++oh)
          for (index_t ow = 0; ow < ow_n; ++ow) {
            const PixelWindow w(g, od, oh, ow);
            if (ow == 0) zero_upto(w.last_row(g));
            f(n, c0, c1, od, oh, ow, (n * od_n + od) * oh_n * ow_n + oh * ow_n + ow, w);
          }
      zero_upto(n_rows_in - 1);
    }
  });
}
