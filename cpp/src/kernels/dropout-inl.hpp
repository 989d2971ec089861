// Max-pooling dropout (Wu & Gu 2015): the mask, the training maximum over kept taps
// and the inference form's rank weights, over the bin machinery's rows.
// Included by bins-inl.hpp inside namespace bins (after the reductions it reuses).

// MurmurHash3's finalizer: a bijection of 32-bit words; vectorizes where a 64-bit
// multiply would not (AVX2 has none).
inline std::uint32_t fmix32(std::uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

// The 64-bit key of plane n*C + c; the mask of position q is a 32-bit hash of key and q.
// plane + 1: seed 0 would give plane 0 the key mix64(0) = 0, whose element 0 hashes
// to 0 and is dropped at every rate.
inline std::uint64_t plane_key(std::uint64_t seed, index_t plane) {
  return mix64(seed ^ ((std::uint64_t(plane) + 1) * 0x9e3779b97f4a7c15ULL));
}

// The mask of one work unit's planes, pixel-major like Rows: row r's pixel w, lane i
// (block b, lane l: i = b*N + l) at get(r) + w*ps() + i; 1 kept, 0 dropped. Every
// row of the plane group is made once when that fits, else one row on demand.
// Python's reference: fastpool.max_pool_dropout's docstring spells out the same steps.
template <class T>
class KeepRows {
 public:
  using V = Vec<T>;
  // active = false: an unused mask (other reductions), nothing computed. whole:
  // whole_fits for the call's most blocks per unit (buffer_elems sized the buffer).
  KeepRows(const BinParams<T>& pp, const Unit<T>& u, index_t rows, index_t width, T* buf, std::uint32_t* keys,
           bool whole, bool active)
      : n_(u.blocks * V::N), rows_(rows), w_(width), buf_(buf), k0_(keys), k1_(keys + n_),
        all_(pp.drop_below > 0xffffffffULL), thr_(std::uint32_t(pp.drop_below)), whole_(whole) {
    if (!active) return;
    const index_t last = (u.blocks - 1) * V::N + u.lanes - 1;  // lanes past it hold no plane
    for (index_t i = 0; i < n_; ++i) {
      const std::uint64_t k = plane_key(pp.seed, u.plane0 + imin(i, last));
      k0_[i] = std::uint32_t(k);
      k1_[i] = std::uint32_t(k >> 32);
    }
    if (whole_)
      for (index_t r = 0; r < rows_; ++r) fill(r, buf_ + r * w_ * n_);
  }
  static bool whole_fits(index_t blocks, index_t rows, index_t width) {
    return std::size_t(rows * width * blocks) * V::N * sizeof(T) <= kPlaneCopyBytes;
  }
  static index_t buffer_elems(index_t blocks, index_t rows, index_t width) {
    return (whole_fits(blocks, rows, width) ? rows : 1) * width * blocks * V::N;
  }
  static index_t key_elems(index_t blocks) { return 2 * blocks * V::N; }
  index_t ps() const { return n_; }
  bool whole() const { return whole_; }
  const T* get(index_t r) {
    if (whole_) return buf_ + r * w_ * n_;
    if (r != cur_) {
      fill(r, buf_);
      cur_ = r;
    }
    return buf_;
  }

 private:
  void fill(index_t r, T* dst) const {
    for (index_t w = 0; w < w_; ++w) {
      const std::uint64_t q = std::uint64_t(r * w_ + w);
      const std::uint32_t lo = std::uint32_t(q), hi = std::uint32_t(q >> 32);
      T* d = dst + w * n_;
      for (index_t i = 0; i < n_; ++i) {  // independent lanes: the compiler vectorizes this
        const std::uint32_t h = fmix32(fmix32(lo ^ k0_[i]) ^ (k1_[i] + hi));
        d[i] = !all_ && h >= thr_ ? T(1) : T(0);
      }
    }
  }
  index_t n_, rows_, w_;
  T* buf_;
  std::uint32_t *k0_, *k1_;
  bool all_;
  std::uint32_t thr_;
  bool whole_;
  index_t cur_ = -1;
};

// A row of x and the same row of the mask.
template <class T>
struct MaskedRow {
  const T* v;
  const T* k;
};

// x's rows with their mask, for for_bins: every row at once only when both are.
template <class T, class R>
struct MaskedRows {
  R& x;
  KeepRows<T>& keep;
  bool random_access() const { return x.random_access() && keep.whole(); }
  MaskedRow<T> get(index_t r) { return {x.get(r), keep.get(r)}; }
};

// max_chunk over the taps with dropped ones read as 0; ka: the winner's mask flag.
template <int U, bool kIdx, class T>
inline void drop_max_chunk(const MaskedRow<T>* rp, const index_t* rows, index_t nr, index_t off, index_t koff,
                           index_t count, index_t step, index_t kstep, bool first, index_t w0, index_t wstep, T* va,
                           T* ra, T* ca, T* ka) {
  using V = Vec<T>;
  const V zero = V::zero();
  V best[U], rk[U], cj[U], kb[U];
  for (int u = 0; u < U; ++u) {
    if (first) {
      kb[u] = V::load(rp[0].k + koff + u * V::N);
      best[u] = V::select(V::eq(kb[u], zero), zero, V::load(rp[0].v + off + u * V::N));
      rk[u] = V::set1(T(rows[0]));
      cj[u] = V::set1(T(w0));
    } else {
      best[u] = V::load(va + u * V::N);
      kb[u] = V::load(ka + u * V::N);
      if (kIdx) {
        rk[u] = V::load(ra + u * V::N);
        cj[u] = V::load(ca + u * V::N);
      }
    }
  }
  for (index_t k = 0; k < nr; ++k) {
    const T* p = rp[k].v + off;
    const T* pk = rp[k].k + koff;
    const V kv = V::set1(T(rows[k]));
    for (index_t j = first && k == 0 ? 1 : 0; j < count; ++j) {
      const V jv = V::set1(T(w0 + j * wstep));
      for (int u = 0; u < U; ++u) {
        const V f = V::load(pk + j * kstep + u * V::N);
        const V v = V::select(V::eq(f, zero), zero, V::load(p + j * step + u * V::N));
        const auto m = V::gt_or_nan(v, best[u]);
        best[u] = V::select(m, v, best[u]);
        kb[u] = V::select(m, f, kb[u]);
        if (kIdx) {
          rk[u] = V::select(m, kv, rk[u]);
          cj[u] = V::select(m, jv, cj[u]);
        }
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    V::store(va + u * V::N, best[u]);
    V::store(ka + u * V::N, kb[u]);
    if (kIdx) {
      V::store(ra + u * V::N, rk[u]);
      V::store(ca + u * V::N, cj[u]);
    }
  }
}

// Maximum of each bin of output row (od, oh) over the kept taps (dropped ones read as
// 0), with the winner's row and column (when kIdx) and mask flag: max_bins' scan rule.
template <bool kIdx, class T, class R>
void drop_max_bins(MaskedRows<T, R>& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb,
                   MaskedRow<T>* rp, T* val, T* rk, T* cj, T* kept) {
  using V = Vec<T>;
  const index_t ps = src.x.ps(), kps = src.keep.ps();
  for_bins(src, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, const MaskedRow<T>* p, const index_t* r,
                                          index_t n, bool first) {
    const index_t at = (ow * nb + b) * V::N;
    drop_max_chunk<decltype(U)::value, kIdx>(p, r, n, aw.first[ow] * ps + b * V::N, aw.first[ow] * kps + b * V::N,
                                             aw.count[ow], aw.step * ps, aw.step * kps, first, aw.first[ow], aw.step,
                                             val + at, rk + at, cj + at, kept + at);
  });
}

// The taps of every bin of an output row, copied bin-major: tap t of bin ow, block b
// at buf + (ow * max_taps + t) * nb*N + b*N, in row-major tap order. to_taps = false
// adds them back instead (the backward's per-tap gradients into grad rows).
template <class T, class R>
void tap_copy(R& rows_src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, index_t max_taps, T* buf) {
  using V = Vec<T>;
  const index_t ps = rows_src.ps();
  for (index_t k = 0; k < nr; ++k) {
    auto* row = rows_src.get(rows[k]);
    for (index_t ow = 0; ow < aw.out; ++ow)
      for (index_t j = 0; j < aw.count[ow]; ++j) {
        auto* p = row + (aw.first[ow] + j * aw.step) * ps;
        T* t = buf + (ow * max_taps + k * aw.count[ow] + j) * nb * V::N;
        for (index_t b = 0; b < nb; ++b) {
          if constexpr (std::is_const_v<std::remove_pointer_t<decltype(row)>>)
            V::store(t + b * V::N, V::load(p + b * V::N));
          else
            V::store(p + b * V::N, V::add(V::load(p + b * V::N), V::load(t + b * V::N)));
        }
      }
  }
}

// The inference form's weight of tap i of n (taps `stride` apart): p q^c, c the taps
// ranked above it (ascending value, NaN above every number, the earlier of equal
// values above), as c multiplications by q: the same bits on every path.
template <class T>
inline Vec<T> rank_weight(const T* taps, index_t n, index_t stride, index_t i, Vec<T> p, Vec<T> q) {
  using V = Vec<T>;
  const V a = V::load(taps + i * stride);
  const auto a_nan = V::is_nan(a);
  V w = p;
  for (index_t j = 0; j < i; ++j) {  // earlier: above unless smaller
    const V b = V::load(taps + j * stride);
    const auto below = V::m_or(V::lt(b, a), V::m_and(a_nan, V::m_not(V::is_nan(b))));
    w = V::select(below, w, V::mul(w, q));
  }
  for (index_t j = i + 1; j < n; ++j) {  // later: above only if larger
    const V b = V::load(taps + j * stride);
    const auto above = V::m_or(V::gt(b, a), V::m_and(V::is_nan(b), V::m_not(a_nan)));
    w = V::select(above, V::mul(w, q), w);
  }
  return w;
}

// A term p q^c a that vanishes with its weight (an infinite or NaN tap of weight 0).
template <class V>
inline V weighted(V w, V a) {
  return V::select(V::eq(w, V::zero()), V::zero(), V::mul(w, a));
}
