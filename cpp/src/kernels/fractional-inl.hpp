// Fractional max pooling's forward: the maximum of each window and its flat spatial
// position, PyTorch's scan (first maximum, the last NaN). Windows start at positions
// that differ per plane, so no vector runs across planes or channels; the loops are
// compiled per ISA with the rest, so every path runs the same code.
// Included inside an ISA namespace after common-inl.hpp.

namespace fractional {

// The window starts of output `o` of plane p on every axis.
template <class T>
inline void starts(const FractionalProblem& fp, const T* samples, index_t p, const index_t* o, index_t* s) {
  for (int a = 0; a < kMaxRank; ++a)
    s[a] = fp.sample_axis[a] < 0 ? 0
                                 : fractional_start<T>(samples[p * fp.rank + fp.sample_axis[a]], o[a], fp.in[a],
                                                       fp.out[a], fp.kernel[a]);
}

// Maximum of the window at s of the plane at xp (element stride es), its position.
template <class T>
inline void window_max(const FractionalProblem& fp, const T* xp, index_t es, const index_t* s, T& best,
                       std::int64_t& arg) {
  const index_t H = fp.in[1], W = fp.in[2];
  arg = (s[0] * H + s[1]) * W + s[2];
  best = xp[arg * es];
  for (index_t d = s[0]; d < s[0] + fp.kernel[0]; ++d)
    for (index_t h = s[1]; h < s[1] + fp.kernel[1]; ++h) {
      const index_t row = (d * H + h) * W;
      for (index_t w = s[2]; w < s[2] + fp.kernel[2]; ++w) {
        const T v = xp[(row + w) * es];
        if (v > best || v != v) {
          best = v;
          arg = row + w;
        }
      }
    }
}

template <class T>
void forward(const T* x, const T* samples, T* y, std::int64_t* idx, const FractionalProblem& fp, int threads) {
  const index_t P = fp.in_plane(), Q = fp.out_plane(), C = fp.channels;
  const index_t OD = fp.out[0], OH = fp.out[1], OW = fp.out[2];
  const index_t cost = fp.batch * C * (Q * fp.kernel[0] * fp.kernel[1] * fp.kernel[2] + 2 * Q);
  if (!fp.channels_last) {
    parallel_for(fp.batch * C, threads, cost, [&](index_t p0, index_t p1) {
      for (index_t p = p0; p < p1; ++p) {
        index_t o[3], s[3], q = 0;
        for (o[0] = 0; o[0] < OD; ++o[0])
          for (o[1] = 0; o[1] < OH; ++o[1])
            for (o[2] = 0; o[2] < OW; ++o[2], ++q) {
              starts(fp, samples, p, o, s);
              T best;
              std::int64_t arg;
              window_max(fp, x + p * P, 1, s, best, arg);
              y[p * Q + q] = best;
              if (idx) idx[p * Q + q] = arg;
            }
      }
    });
    return;
  }
  // channels_last: a unit is one output row (n, od, oh); the channels of a pixel are
  // neighbours in memory, so a window's rows stay in cache across them.
  parallel_for(fp.batch * OD * OH, threads, cost, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t n = r / (OD * OH);
      index_t o[3] = {r / OH % OD, r % OH, 0}, s[3];
      for (o[2] = 0; o[2] < OW; ++o[2]) {
        const index_t q = (o[0] * OH + o[1]) * OW + o[2];
        for (index_t c = 0; c < C; ++c) {
          starts(fp, samples, n * C + c, o, s);
          T best;
          std::int64_t arg;
          window_max(fp, x + n * P * C + c, C, s, best, arg);
          y[(n * Q + q) * C + c] = best;
          if (idx) idx[(n * Q + q) * C + c] = arg;
        }
      }
    }
  });
}

}  // namespace fractional
