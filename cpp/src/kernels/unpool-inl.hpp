// Max unpooling: y = 0, then y[index] = x per plane (the last of equal indices wins,
// in input order, as PyTorch's CPU loop); its gradient gathers grad_y at the indices.
// Scatter and gather have no useful vector form here; the loops are compiled per ISA
// with the rest, so every path runs the same code.
// Included inside an ISA namespace after common-inl.hpp.

namespace unpool {

// Work units: channels_first planes; channels_last (sample, channel block) pairs, the
// blocks cut so that small batches still give every thread work.
struct Split {
  index_t block = 1, per = 1, units = 1;
  Split(const UnpoolProblem& up, int threads) {
    if (!up.channels_last) {
      units = up.batch * up.channels;
      return;
    }
    const index_t C = up.channels, want = imax(1, (2 * index_t(threads) + up.batch - 1) / up.batch);
    block = imin(C, imax(16, (C + want - 1) / want));
    per = (C + block - 1) / block;
    units = up.batch * per;
  }
};

inline bool outside(std::int64_t j, index_t n) { return static_cast<std::uint64_t>(j) >= static_cast<std::uint64_t>(n); }
inline void keep_first(index_t& mine, index_t pos) {
  if (mine < 0 || pos < mine) mine = pos;
}

// Returns the flat position of the first index outside [0, out_size), or -1. kAdd:
// y[index] += x (a gradient routed to its argmax; equal indices add up; an index of
// -1 adds nothing where up.skip_minus_one).
template <class T, bool kAdd = false>
index_t forward(const T* x, const std::int64_t* idx, T* y, const UnpoolProblem& up, int threads) {
  const index_t I = up.in_size, O = up.out_size, C = up.channels;
  const Split sp(up, threads);
  index_t bad = -1;
  parallel_for(sp.units, threads, up.out_elements() + 2 * up.in_elements(), [&](index_t u0, index_t u1) {
    index_t my_bad = -1;
    for (index_t u = u0; u < u1; ++u) {
      if (!up.channels_last) {
        T* yp = y + u * O;
        std::memset(static_cast<void*>(yp), 0, std::size_t(O) * sizeof(T));
        const T* xp = x + u * I;
        const std::int64_t* ip = idx + u * I;
        for (index_t i = 0; i < I; ++i) {
          if (kAdd && up.skip_minus_one && ip[i] == -1) continue;
          if (outside(ip[i], O)) {
            keep_first(my_bad, u * I + i);
            break;
          }
          if (kAdd)
            yp[ip[i]] += xp[i];
          else
            yp[ip[i]] = xp[i];
        }
        continue;
      }
      const index_t n = u / sp.per, c0 = (u % sp.per) * sp.block, nc = imin(sp.block, C - c0);
      T* ys = y + n * O * C + c0;
      if (nc == C)
        std::memset(static_cast<void*>(ys), 0, std::size_t(O * C) * sizeof(T));
      else
        for (index_t p = 0; p < O; ++p) std::memset(static_cast<void*>(ys + p * C), 0, std::size_t(nc) * sizeof(T));
      const index_t first = n * I * C + c0;
      for (index_t p = 0; p < I; ++p) {
        const T* xs = x + first + p * C;
        const std::int64_t* is = idx + first + p * C;
        for (index_t c = 0; c < nc; ++c) {
          if (kAdd && up.skip_minus_one && is[c] == -1) continue;
          if (outside(is[c], O)) {
            keep_first(my_bad, first + p * C + c);
            continue;
          }
          if (kAdd)
            ys[is[c] * C + c] += xs[c];
          else
            ys[is[c] * C + c] = xs[c];
        }
      }
    }
    report_bad_index(bad, my_bad);
  });
  return bad;
}

// grad_x = grad_y at the indices (0 where an index is outside; the position of the
// first such index is returned, else -1).
template <class T>
index_t backward(const T* gy, const std::int64_t* idx, T* gx, const UnpoolProblem& up, int threads) {
  const index_t I = up.in_size, O = up.out_size, C = up.channels;
  const Split sp(up, threads);
  index_t bad = -1;
  parallel_for(sp.units, threads, 3 * up.in_elements(), [&](index_t u0, index_t u1) {
    index_t my_bad = -1;
    for (index_t u = u0; u < u1; ++u) {
      if (!up.channels_last) {
        const T* gp = gy + u * O;
        const std::int64_t* ip = idx + u * I;
        T* out = gx + u * I;
        for (index_t i = 0; i < I; ++i) {
          const bool off = outside(ip[i], O);
          if (off) keep_first(my_bad, u * I + i);
          out[i] = off ? T(0) : gp[ip[i]];
        }
        continue;
      }
      const index_t n = u / sp.per, c0 = (u % sp.per) * sp.block, nc = imin(sp.block, C - c0);
      const T* gs = gy + n * O * C + c0;
      const index_t first = n * I * C + c0;
      for (index_t p = 0; p < I; ++p) {
        const std::int64_t* is = idx + first + p * C;
        T* out = gx + first + p * C;
        for (index_t c = 0; c < nc; ++c) {
          const bool off = outside(is[c], O);
          if (off) keep_first(my_bad, first + p * C + c);
          out[c] = off ? T(0) : gs[is[c] * C + c];
        }
      }
    }
    report_bad_index(bad, my_bad);
  });
  return bad;
}

}  // namespace unpool
