// Channels-first pooling of planes whose output rows are narrower than a vector
// (7x7 ... 28x28 feature maps): vectorized across all outputs of a plane at once,
// each tap read by a gather through a per-call table of flat input offsets. The
// row driver would run a few lanes per row there and pay its per-row costs for
// nothing. The choice depends only on the geometry, never on the ISA, so every
// SIMD path still computes the same thing.
// Included inside an ISA namespace after common-inl.hpp.

constexpr index_t kSmallOutWidth = 16;
constexpr index_t kSmallTableMax = index_t(1) << 18;

inline bool small_plane_path(const PoolGeometry& g) {
  return !g.channels_last && g.axis[2].out < kSmallOutWidth && g.in_plane() < (index_t(1) << 24) &&
         (g.out_plane() + kRowSlack) * g.kernel_volume() <= kSmallTableMax;
}

// Planes whose whole output is narrower than a vector (global pooling, 7x7 maps)
// are taken several at a time: a group of G consecutive planes is one "plane" of
// G*op outputs (outputs of consecutive planes are contiguous), so no lane idles.
inline index_t small_plane_group(const PoolGeometry& g) {
  const index_t op = g.out_plane(), planes = g.batch * g.channels;
  index_t group = imax(1, kSmallOutWidth / op);
  // Offsets within a group are tracked in T: keep them exact in float32.
  while (group > 1 && group * g.in_plane() >= (index_t(1) << 24)) group /= 2;
  return imin(group, planes);
}

// For output o of a group and full-window tap t: offset[t][o] is the flat input
// offset (from the group's first plane) the tap reads. A padding tap repeats the
// offset of the last valid tap before it (or the first valid tap), which re-reads
// a value the max has already seen, so neither the maximum, its tie rule nor its
// NaN rule changes; valid[t][o] says whether the tap is real (averages add only
// those); offset_value[t][o] is the offset within the output's own plane, as T:
// the winner the max tracks, which is the index PyTorch reports.
template <class T>
struct TapTable {
  index_t outputs = 0, stride = 0, taps = 0, plane_outputs = 0;
  std::int32_t* offset = nullptr;
  std::int32_t* valid = nullptr;
  T* offset_value = nullptr;
  T* divisor = nullptr;  // averages only

  static std::size_t bytes(const PoolGeometry& g, index_t group) {
    const index_t n = g.kernel_volume() * (group * g.out_plane() + kRowSlack);
    return 2 * Scratch::bytes<std::int32_t>(n) + Scratch::bytes<T>(n) +
           Scratch::bytes<T>(group * g.out_plane() + kRowSlack);
  }

  TapTable(Scratch& mem, const PoolGeometry& g, const Divisors* dv, index_t group) {
    plane_outputs = g.out_plane();
    outputs = group * plane_outputs;
    stride = outputs + kRowSlack;  // whole-vector reads past the last output stay inside
    taps = g.kernel_volume();
    offset = mem.take<std::int32_t>(taps * stride);
    valid = mem.take<std::int32_t>(taps * stride);
    offset_value = mem.take<T>(taps * stride);
    divisor = mem.take<T>(stride);
    for (index_t i = 0; i < taps * stride; ++i) {
      offset[i] = 0;
      valid[i] = 0;
      offset_value[i] = T(0);
    }
    for (index_t i = 0; i < stride; ++i) divisor[i] = T(1);
    const AxisGeometry* ax = g.axis;
    const index_t H = ax[1].in, W = ax[2].in, in_plane = g.in_plane();
    index_t o = 0;
    for (index_t od = 0; od < ax[0].out; ++od)
      for (index_t oh = 0; oh < ax[1].out; ++oh)
        for (index_t ow = 0; ow < ax[2].out; ++ow, ++o) {
          const PixelWindow w(g, od, oh, ow);
          index_t last = ((w.st[0] + w.f[0] * ax[0].dilation) * H + w.st[1] + w.f[1] * ax[1].dilation) * W +
                         w.st[2] + w.f[2] * ax[2].dilation;
          const T div = dv ? T(dv->at(od, oh, ow)) : T(1);
          index_t t = 0;
          for (index_t a = 0; a < ax[0].kernel; ++a)
            for (index_t b = 0; b < ax[1].kernel; ++b)
              for (index_t j = 0; j < ax[2].kernel; ++j, ++t) {
                const bool ok = a >= w.f[0] && a < w.l[0] && b >= w.f[1] && b < w.l[1] && j >= w.f[2] && j < w.l[2];
                if (ok)
                  last = ((w.st[0] + a * ax[0].dilation) * H + w.st[1] + b * ax[1].dilation) * W + w.st[2] +
                         j * ax[2].dilation;
                for (index_t p = 0; p < group; ++p) {
                  const index_t e = t * stride + p * plane_outputs + o;
                  offset[e] = std::int32_t(p * in_plane + last);
                  valid[e] = ok ? 1 : 0;
                  offset_value[e] = T(last);
                }
              }
          for (index_t p = 0; p < group; ++p) divisor[p * plane_outputs + o] = div;
        }
  }
};

// Max of outputs [o, o + V::N) of a group; bo gets the winners' in-plane offsets.
template <class T, bool kTaps>
inline Vec<T> small_max_block(const T* base, const TapTable<T>& tt, index_t o, Vec<T>& bo) {
  using V = Vec<T>;
  V best = V::gather(base, tt.offset + o);
  if (kTaps) bo = V::load(tt.offset_value + o);
  for (index_t t = 1; t < tt.taps; ++t) {
    const V v = V::gather(base, tt.offset + t * tt.stride + o);
    if (kTaps) {
      const typename V::M m = V::gt_or_nan(v, best);
      best = V::select(m, v, best);
      bo = V::select(m, V::load(tt.offset_value + t * tt.stride + o), bo);
    } else {
      best = V::max_nan(best, v);
    }
  }
  return best;
}

// Builds the tables once per call (one for full groups, one for the planes left
// over), then calls f(tt, first_plane) for every group, groups split over threads.
template <class T, class F>
bool for_each_small_group(const PoolGeometry& g, const AvgOptions* opt, int threads, F&& f) {
  const index_t planes = g.batch * g.channels, group = small_plane_group(g);
  const index_t full = planes / group, rest = planes % group;
  Scratch mem(TapTable<T>::bytes(g, group) + (rest ? TapTable<T>::bytes(g, rest) : 0) + divisor_bytes(g));
  if (!mem.ok()) return false;
  Divisors divisors{};
  if (opt) divisors = make_divisors(mem, g, *opt);
  const Divisors* dv = opt ? &divisors : nullptr;
  const TapTable<T> tt(mem, g, dv, group);
  parallel_for(full, threads, g.in_size() + g.out_size(), [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) f(tt, i * group);
  });
  if (rest) {
    const TapTable<T> tail(mem, g, dv, rest);
    f(tail, full * group);
  }
  return true;
}

template <class T, bool kIdx>
bool max_forward_small(const T* x, T* y, std::int64_t* idx, const PoolGeometry& g, int threads) {
  using V = Vec<T>;
  const index_t in_plane = g.in_plane(), op = g.out_plane();
  return for_each_small_group<T>(g, nullptr, threads, [&](const TapTable<T>& tt, index_t p0) {
    for (index_t o = 0; o < tt.outputs; o += V::N) {
      const index_t n = imin(V::N, tt.outputs - o);
      V bo = V::zero();
      V::store_n(y + p0 * op + o, small_max_block<T, kIdx>(x + p0 * in_plane, tt, o, bo), n);
      if (kIdx) {
        alignas(64) T off[V::N];
        V::store(off, bo);
        for (index_t l = 0; l < n; ++l) idx[p0 * op + o + l] = std::int64_t(off[l]);
      }
    }
  });
}

template <class T>
bool max_backward_small(const T* gy, const T* x, T* gx, const PoolGeometry& g, int threads) {
  using V = Vec<T>;
  const index_t in_plane = g.in_plane(), op = g.out_plane();
  return for_each_small_group<T>(g, nullptr, threads, [&](const TapTable<T>& tt, index_t p0) {
    T* gp = gx + p0 * in_plane;
    const T* gyp = gy + p0 * op;
    std::memset(gp, 0, sizeof(T) * in_plane * (tt.outputs / op));
    for (index_t o = 0; o < tt.outputs; o += V::N) {
      V bo = V::zero();
      small_max_block<T, true>(x + p0 * in_plane, tt, o, bo);
      alignas(64) T off[V::N];
      V::store(off, bo);
      const index_t n = imin(V::N, tt.outputs - o);
      for (index_t l = 0; l < n; ++l) gp[(o + l) / op * in_plane + index_t(off[l])] += gyp[o + l];
    }
  });
}

template <class T>
bool avg_forward_small(const T* x, T* y, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  using V = Vec<T>;
  const index_t in_plane = g.in_plane(), op = g.out_plane();
  return for_each_small_group<T>(g, &opt, threads, [&](const TapTable<T>& tt, index_t p0) {
    const T* xp = x + p0 * in_plane;
    for (index_t o = 0; o < tt.outputs; o += V::N) {
      V sum = V::gather_valid(xp, tt.offset + o, tt.valid + o);
      for (index_t t = 1; t < tt.taps; ++t)
        sum = V::add(sum, V::gather_valid(xp, tt.offset + t * tt.stride + o, tt.valid + t * tt.stride + o));
      V::store_n(y + p0 * op + o, V::div(sum, V::load(tt.divisor + o)), imin(V::N, tt.outputs - o));
    }
  });
}

template <class T>
bool avg_backward_small(const T* gy, T* gx, const PoolGeometry& g, const AvgOptions& opt, int threads) {
  const index_t in_plane = g.in_plane(), op = g.out_plane();
  return for_each_small_group<T>(g, &opt, threads, [&](const TapTable<T>& tt, index_t p0) {
    T* gp = gx + p0 * in_plane;
    const T* gyp = gy + p0 * op;
    std::memset(gp, 0, sizeof(T) * in_plane * (tt.outputs / op));
    for (index_t o = 0; o < tt.outputs; ++o) {
      const T gs = gyp[o] / tt.divisor[o];
      for (index_t t = 0; t < tt.taps; ++t)
        if (tt.valid[t * tt.stride + o]) gp[tt.offset[t * tt.stride + o]] += gs;
    }
  });
}
