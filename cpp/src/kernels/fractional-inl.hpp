// Fractional max pooling's forward: the maximum of each window and its flat spatial
// position, PyTorch's scan (first maximum, the last NaN). Window starts differ per
// output and per plane, so a vector holds N outputs of a row (channels_first) or N
// channels of an output (channels_last), each lane gathering its own tap; a lane keeps
// the number of its winning tap, turned into a position only when indices are asked for.
// Included inside an ISA namespace after common-inl.hpp.

namespace fractional {

// Every plane's window starts, computed once: per plane the D, H then W starts
// (channels_first: [plane][S]; channels_last: [n][S][C], a pixel's channels adjacent).
template <class T>
void fill_starts(const FractionalProblem& fp, const T* samples, index_t* st, int threads) {
  const index_t C = fp.channels, S = fp.out[0] + fp.out[1] + fp.out[2];
  parallel_for(fp.batch * C, threads, fp.batch * C * S * 8, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      index_t at = 0;
      for (int a = 0; a < kMaxRank; ++a)
        for (index_t o = 0; o < fp.out[a]; ++o, ++at) {
          const index_t v = fp.sample_axis[a] < 0 ? 0
                                                  : fractional_start<T>(samples[p * fp.rank + fp.sample_axis[a]], o,
                                                                        fp.in[a], fp.out[a], fp.kernel[a]);
          st[fp.channels_last ? ((p / C) * S + at) * C + p % C : p * S + at] = v;
        }
    }
  });
}

// Window sizes in locals: the int64 index stores could alias a struct's fields.
struct Window {
  index_t kd, kh, kw, H, W, C;
  index_t taps() const { return kd * kh * kw; }
  // Element offset of tap j from a window's first tap (C: the element stride).
  index_t offset(index_t j) const { return ((j / (kh * kw) * H + j / kw % kh) * W + j % kw) * C; }
  // Flat spatial position of tap j of the window starting at (s0, s1, s2).
  index_t position(index_t s0, index_t s1, index_t s2, index_t j) const {
    return ((s0 + j / (kh * kw)) * H + s1 + j / kw % kh) * W + s2 + j % kw;
  }
};

// The maximum over the taps of V::N windows, lane i's first tap at base + offs[i]:
// best value and the number of the tap holding it.
template <class T>
inline void lanes_max(const Window& k, const T* base, const std::int32_t* offs, const index_t* tap_off, Vec<T>& best,
                      Vec<T>& tap) {
  using V = Vec<T>;
  best = V::gather(base, offs);
  tap = V::zero();
  for (index_t j = 1; j < k.taps(); ++j) {
    const V v = V::gather(base + tap_off[j], offs);
    const auto m = V::gt_or_nan(v, best);
    best = V::select(m, v, best);
    tap = V::select(m, V::set1(T(j)), tap);
  }
}

template <class T>
void forward(const T* x, const T* samples, T* y, std::int64_t* idx, const FractionalProblem& fp, int threads) {
  using V = Vec<T>;
  const index_t P = fp.in_plane(), Q = fp.out_plane(), C = fp.channels;
  const index_t OD = fp.out[0], OH = fp.out[1], OW = fp.out[2], S = OD + OH + OW;
  const Window k{fp.kernel[0], fp.kernel[1], fp.kernel[2], fp.in[1], fp.in[2], fp.channels_last ? C : 1};
  Scratch table(Scratch::bytes<index_t>(fp.batch * C * S) + Scratch::bytes<index_t>(k.taps()));
  if (!table.ok()) throw std::bad_alloc();
  index_t* st = table.take<index_t>(fp.batch * C * S);
  index_t* tap_off = table.take<index_t>(k.taps());
  for (index_t j = 0; j < k.taps(); ++j) tap_off[j] = k.offset(j);
  fill_starts(fp, samples, st, threads);
  const index_t cost = fp.batch * C * Q * (k.taps() + 2);
  // Lanes [0, n) of a block: values to y, positions (from the tap numbers) to idx.
  auto emit = [&](V best, V tap, index_t n, T* yp, std::int64_t* ip, index_t ystep, auto&& start_of) {
    alignas(64) T b[V::N], t[V::N];
    V::store(b, best);
    V::store(t, tap);
    for (index_t i = 0; i < n; ++i) {
      yp[i * ystep] = b[i];
      if (ip) {
        index_t s0, s1, s2;
        start_of(i, s0, s1, s2);
        ip[i * ystep] = k.position(s0, s1, s2, index_t(t[i]));
      }
    }
  };
  if (!fp.channels_last) {
    parallel_for(fp.batch * C, threads, cost, [&](index_t p0, index_t p1) {
      for (index_t p = p0; p < p1; ++p) {
        const index_t* sd = st + p * S;
        const index_t *sh = sd + OD, *sw = sh + OH;
        for (index_t od = 0; od < OD; ++od)
          for (index_t oh = 0; oh < OH; ++oh) {
            const T* row = x + p * P + (sd[od] * k.H + sh[oh]) * k.W;
            const index_t q0 = p * Q + (od * OH + oh) * OW;
            for (index_t ow = 0; ow < OW; ow += V::N) {
              const index_t n = imin(V::N, OW - ow);
              alignas(64) std::int32_t offs[V::N];
              for (index_t i = 0; i < V::N; ++i) offs[i] = std::int32_t(sw[ow + imin(i, n - 1)]);
              V best, tap;
              lanes_max(k, row, offs, tap_off, best, tap);
              emit(best, tap, n, y + q0 + ow, idx ? idx + q0 + ow : nullptr, 1,
                   [&](index_t i, index_t& s0, index_t& s1, index_t& s2) {
                     s0 = sd[od];
                     s1 = sh[oh];
                     s2 = sw[ow + i];
                   });
            }
          }
      }
    });
    return;
  }
  // channels_last: a unit is one output row (n, od, oh); a vector holds N channels of
  // an output pixel, whose windows lie close together in memory.
  parallel_for(fp.batch * OD * OH, threads, cost, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t n = r / (OD * OH), od = r / OH % OD, oh = r % OH;
      const index_t* sd = st + n * S * C + od * C;
      const index_t* sh = st + (n * S + OD + oh) * C;
      const index_t* sw = st + (n * S + OD + OH) * C;
      const T* xs = x + n * P * C;
      for (index_t ow = 0; ow < OW; ++ow) {
        const index_t q = (n * Q + (od * OH + oh) * OW + ow) * C;
        for (index_t c0 = 0; c0 < C; c0 += V::N) {
          const index_t m = imin(V::N, C - c0);
          alignas(64) std::int32_t offs[V::N];
          for (index_t i = 0; i < V::N; ++i) {
            const index_t c = c0 + imin(i, m - 1);
            offs[i] = std::int32_t(((sd[c] * k.H + sh[c]) * k.W + sw[ow * C + c]) * C + c);
          }
          V best, tap;
          lanes_max(k, xs, offs, tap_off, best, tap);
          emit(best, tap, m, y + q + c0, idx ? idx + q + c0 : nullptr, 1,
               [&](index_t i, index_t& s0, index_t& s1, index_t& s2) {
                 s0 = sd[c0 + i];
                 s1 = sh[c0 + i];
                 s2 = sw[ow * C + c0 + i];
               });
        }
      }
    }
  });
}

}  // namespace fractional
