// Reductions over explicit bins: global, adaptive, spatial pyramid and strip
// pooling (max, avg) and the power means (LP, GeM), forward and backward, written
// once over a vector type.
//
// A work unit is a set of lanes: channels_last units are blocks of channels of one
// sample, read in place; channels_first units are N consecutive (n, c) planes, read
// through a pixel-major copy made by block transposes, so both layouts run the same
// loops. Every reduction visits a bin's taps in row-major order (accumulators in
// registers), so every path combines them in the same order: results are bitwise
// identical across SIMD paths, thread counts and layouts.
// Included inside an ISA namespace after common-inl.hpp.

namespace bins {

// A channels_first plane group whose pixel-major copy fits this is copied whole
// once; larger planes are copied one row at a time.
constexpr std::size_t kPlaneCopyBytes = std::size_t(256) << 10;

// Bytes of accumulators per output row a channels_last unit may use: more channel
// blocks per unit read longer runs of x, fewer keep the accumulators in cache.
constexpr index_t kAccBytes = 32768;

// The lanes of one work unit and where they live in x (and in grad_x, same layout):
// `blocks` vectors of `lanes` lanes; element (block b, lane l, pixel q) is at
// base + (b*N + l)*lane_stride + q*pixel_stride. channels_last units hold several
// blocks of whole vectors (or one partial block); channels_first units one block.
template <class T>
struct Unit {
  using V = Vec<T>;
  index_t plane0;  // (n*C + c) of block 0, lane 0; block b lane l is plane0 + b*N + l
  index_t lanes, blocks;
  index_t base, lane_stride, pixel_stride;

  // Channel blocks per channels_last unit, for outputs rows of out_w bins.
  static index_t cl_blocks(const BinProblem& pb, index_t out_w) {
    const index_t full = pb.channels / V::N;
    const index_t fit = kAccBytes / (imax(out_w, 1) * V::N * index_t(sizeof(T)));
    return imax(1, imin(full, fit));
  }
  static index_t count(const BinProblem& pb, index_t nb) {
    if (!pb.channels_last) return (pb.batch * pb.channels + V::N - 1) / V::N;
    const index_t full = pb.channels / V::N;
    return pb.batch * ((full + nb - 1) / nb + (pb.channels % V::N ? 1 : 0));
  }
  static Unit make(const BinProblem& pb, index_t nb, index_t u) {
    Unit t;
    const index_t P = pb.plane(), C = pb.channels;
    if (pb.channels_last) {
      const index_t full = C / V::N, chunks = (full + nb - 1) / nb;
      const index_t per_n = chunks + (C % V::N ? 1 : 0);
      const index_t n = u / per_n, k = u % per_n;
      const index_t c0 = k < chunks ? k * nb * V::N : full * V::N;
      t.blocks = k < chunks ? imin(nb, full - k * nb) : 1;
      t.lanes = k < chunks ? V::N : C - c0;
      t.plane0 = n * C + c0;
      t.base = n * P * C + c0;
      t.lane_stride = 1;
      t.pixel_stride = C;
    } else {
      t.plane0 = u * V::N;
      t.lanes = imin(V::N, pb.batch * pb.channels - t.plane0);
      t.blocks = 1;
      t.base = t.plane0 * P;
      t.lane_stride = P;
      t.pixel_stride = 1;
    }
    return t;
  }
  // In place: channels_last blocks of whole vectors.
  bool direct() const { return lane_stride == 1 && lanes == V::N; }

  // One-block units only (channels_first, or a partial channels_last block).
  V load_pixel(const T* a, index_t q) const {
    const T* p = a + base + q * pixel_stride;
    if (lane_stride == 1) return lanes == V::N ? V::load(p) : V::load_n(p, lanes);
    return load_plane_lanes(p, lane_stride, lanes, q + 1 == lane_stride);
  }
  void store_pixel(T* a, index_t q, V v) const {
    T* p = a + base + q * pixel_stride;
    if (lane_stride == 1) {
      if (lanes == V::N) V::store(p, v); else V::store_n(p, v, lanes);
      return;
    }
    alignas(64) T t[V::N];
    V::store(t, v);
    for (index_t l = 0; l < lanes; ++l) p[l * lane_stride] = t[l];
  }
  // Pixels [q0, q0 + n) into / out of a pixel-major buffer (N lanes per pixel):
  // channels_first groups of whole vectors go through N x N block transposes.
  void load_pixels(const T* a, index_t q0, index_t n, T* dst) const {
    index_t i = 0;
    if (lane_stride != 1 && lanes == V::N)
      for (; i + V::N <= n; i += V::N) V::transpose_block(a + base + q0 + i, lane_stride, dst + i * V::N, V::N);
    for (; i < n; ++i) V::store(dst + i * V::N, load_pixel(a, q0 + i));
  }
  void store_pixels(T* a, index_t q0, index_t n, const T* src) const {
    index_t i = 0;
    if (lane_stride != 1 && lanes == V::N)
      for (; i + V::N <= n; i += V::N) V::transpose_block(src + i * V::N, V::N, a + base + q0 + i, lane_stride);
    for (; i < n; ++i) store_pixel(a, q0 + i, V::load(src + i * V::N));
  }
  // Zeroes this unit's elements of a grad_x.
  void zero(T* a, index_t P) const {
    if (lane_stride != 1) {
      std::memset(a + base, 0, sizeof(T) * std::size_t(lanes * P));
      return;
    }
    const std::size_t n = sizeof(T) * std::size_t(direct() ? blocks * V::N : lanes);
    for (index_t q = 0; q < P; ++q) std::memset(a + base + q * pixel_stride, 0, n);
  }
  // Element of x / grad_x of (block b, lane l) at plane position q.
  index_t at(index_t b, index_t l, index_t q) const { return base + (b * V::N + l) * lane_stride + q * pixel_stride; }
};

// Pixel-major rows of one unit: row r's pixel w, block b at get(r) + w*ps() + b*N.
// Reads x in place (channels_last whole vectors), from a copy of the whole plane
// group, or from a one-row copy refreshed on demand.
template <class T>
class Rows {
 public:
  using V = Vec<T>;
  Rows(const T* x, const Unit<T>& u, index_t rows, index_t width, T* copy, bool whole)
      : x_(x), u_(u), rows_(rows), w_(width), copy_(copy), whole_(whole) {
    if (u.direct() || !x) return;
    if (whole_) u.load_pixels(x, 0, rows_ * w_, copy_);
  }
  index_t ps() const { return u_.direct() ? u_.pixel_stride : V::N; }
  // Every row's pointer stays valid at once (not the one-row copy).
  bool random_access() const { return u_.direct() || whole_; }
  const T* get(index_t r) {
    if (u_.direct()) return x_ + u_.base + r * w_ * u_.pixel_stride;
    if (whole_) return copy_ + r * w_ * V::N;
    if (r != cur_) {
      fill(r, copy_);
      cur_ = r;
    }
    return copy_;
  }

 private:
  void fill(index_t r, T* dst) const { u_.load_pixels(x_, r * w_, w_, dst); }
  const T* x_;
  const Unit<T>& u_;
  index_t rows_, w_;
  T* copy_;
  bool whole_;
  index_t cur_ = -1;
};

// Read-modify-write pixel-major gradient rows of one unit, over a grad_x the unit
// has zeroed: in place, a whole-plane copy written back by flush(), or one row at a
// time written back when another row is asked for.
template <class T>
class GradRows {
 public:
  using V = Vec<T>;
  GradRows(T* gx, const Unit<T>& u, index_t rows, index_t width, T* copy, bool whole)
      : gx_(gx), u_(u), rows_(rows), w_(width), copy_(copy), whole_(whole) {
    if (u.direct()) return;
    if (whole_) std::memset(copy_, 0, sizeof(T) * std::size_t(rows_ * w_ * V::N));
  }
  index_t ps() const { return u_.direct() ? u_.pixel_stride : V::N; }
  bool random_access() const { return u_.direct() || whole_; }
  T* get(index_t r) {
    if (u_.direct()) return gx_ + u_.base + r * w_ * u_.pixel_stride;
    if (whole_) return copy_ + r * w_ * V::N;
    if (r != cur_) {
      write_back();
      u_.load_pixels(gx_, r * w_, w_, copy_);
      cur_ = r;
    }
    return copy_;
  }
  void flush() {
    if (u_.direct()) return;
    if (!whole_) {
      write_back();
      return;
    }
    u_.store_pixels(gx_, 0, rows_ * w_, copy_);
  }

 private:
  void write_back() {
    if (cur_ < 0) return;
    u_.store_pixels(gx_, cur_ * w_, w_, copy_);
  }
  T* gx_;
  const Unit<T>& u_;
  index_t rows_, w_;
  T* copy_;
  bool whole_;
  index_t cur_ = -1;
};

// Input rows (flattened d*H + h) of output row (od, oh), in row-major order.
inline index_t bin_rows(const BinAxis* ax, index_t H, index_t od, index_t oh, index_t* rows) {
  index_t n = 0;
  for (index_t a = 0; a < ax[0].count[od]; ++a) {
    const index_t d = ax[0].first[od] + a * ax[0].step;
    for (index_t b = 0; b < ax[1].count[oh]; ++b) rows[n++] = d * H + ax[1].first[oh] + b * ax[1].step;
  }
  return n;
}

// Output offsets of block 0's lanes (block b adds b*N*stride_c): element
// (od, oh, ow) of lane l is at off[l] + bin offset.
template <class T>
struct LaneOffsets {
  index_t off[16] = {};  // zeroed: a compiler cannot see that lanes >= 1
  index_t block_step;
  bool contiguous;  // lanes adjacent in the output: one vector store

  LaneOffsets(const BinProblem& pb, const Unit<T>& u, const BinLevel<T>& lv) {
    index_t n = u.plane0 / pb.channels, c = u.plane0 % pb.channels;  // one division per unit
    for (index_t l = 0; l < u.lanes; ++l) {
      off[l] = n * lv.stride_n + c * lv.stride_c;
      if (++c == pb.channels) c = 0, ++n;
    }
    block_step = Vec<T>::N * lv.stride_c;
    contiguous = lv.stride_c == 1 && (u.lanes == 1 || off[u.lanes - 1] == off[0] + u.lanes - 1);
  }
};

template <class T>
inline void put(T* y, const LaneOffsets<T>& lo, const Unit<T>& u, index_t at, Vec<T> v) {
  using V = Vec<T>;
  if (lo.contiguous) {
    if (u.lanes == V::N) V::store(y + lo.off[0] + at, v); else V::store_n(y + lo.off[0] + at, v, u.lanes);
    return;
  }
  alignas(64) T t[V::N];
  V::store(t, v);
  for (index_t l = 0; l < u.lanes; ++l) y[lo.off[l] + at] = t[l];
}

template <class T>
inline Vec<T> fetch(const T* y, const LaneOffsets<T>& lo, const Unit<T>& u, index_t at) {
  using V = Vec<T>;
  if (lo.contiguous) return u.lanes == V::N ? V::load(y + lo.off[0] + at) : V::load_n(y + lo.off[0] + at, u.lanes);
  alignas(64) T t[V::N] = {};
  for (index_t l = 0; l < u.lanes; ++l) t[l] = y[lo.off[l] + at];
  return V::load(t);
}

// Which NaN a sum of two NaNs returns depends on the operand order the compiler
// picks; sums report one NaN, so every path gives the same bits.
template <class V>
inline V canonical_nan(V v) {
  return V::select(V::is_nan(v), V::set1(typename V::value_type(__builtin_nan(""))), v);
}

inline index_t level_offset(const index_t* stride, index_t od, index_t oh, index_t ow) {
  return od * stride[0] + oh * stride[1] + ow * stride[2];
}

// r < N rows of N lanes (ss apart) as N rows of r (ds apart), and the way back: one
// N x N transpose of a zero-padded block, masked loads or stores on the narrow side,
// so a level of fewer bins than lanes (a pyramid's 2 x 2) moves without a branch per
// element and nothing past the narrow rows is touched.
template <class T>
inline void transpose_narrow(const T* src, index_t ss, index_t r, T* dst, index_t ds) {
  using V = Vec<T>;
  alignas(64) T a[V::N * V::N] = {};
  alignas(64) T t[V::N * V::N];
  for (index_t j = 0; j < r; ++j) V::store(a + j * V::N, V::load(src + j * ss));
  V::transpose_block(a, V::N, t, V::N);
  for (index_t i = 0; i < V::N; ++i) V::store_n(dst + i * ds, V::load(t + i * V::N), r);
}

template <class T>
inline void transpose_wide(const T* src, index_t ss, index_t r, T* dst, index_t ds) {
  using V = Vec<T>;
  alignas(64) T a[V::N * V::N];
  alignas(64) T t[V::N * V::N];
  for (index_t i = 0; i < V::N; ++i) V::store(a + i * V::N, V::load_n(src + i * ss, r));
  V::transpose_block(a, V::N, t, V::N);
  for (index_t j = 0; j < r; ++j) V::store(dst + j * ds, V::load(t + j * V::N));
}

// One level's values for one unit by (bin, block): the forward output or the
// backward grad_y. In place when the unit's lanes are adjacent in memory (vector
// loads and stores); otherwise staged in a bin-major tile that moves with N x N
// block transposes where bins and lanes are evenly spaced, lane by lane elsewhere.
constexpr std::size_t kTileBytes = std::size_t(1) << 20;

template <class T>
class LevelIO {
 public:
  using V = Vec<T>;
  LevelIO(const BinProblem& pb, const Unit<T>& u, const BinLevel<T>& lv, T* tile, index_t tile_elems)
      : lo_(pb, u, lv), u_(u), lv_(lv), oh_(lv.axis[1].out), ow_(lv.axis[2].out), nbn_(u.blocks * V::N) {
    staged_ = !lo_.contiguous && lv.bins() * nbn_ <= tile_elems;
    tile_ = tile;
    // bins in row-major order, one apart (a size-1 axis has stride 0: never indexed)
    blocks_ = u.lanes == V::N && (ow_ == 1 || lv.stride[2] == 1) && (oh_ == 1 || lv.stride[1] == ow_) &&
              (lv.axis[0].out == 1 || lv.stride[0] == oh_ * ow_);
    for (index_t l = 1; blocks_ && l < u.lanes; ++l) blocks_ = lo_.off[l] == lo_.off[0] + l * lv.stride_c;
  }
  const LaneOffsets<T>& offsets() const { return lo_; }
  // Whether values go through the tile, laid out (bin, block, lane).
  bool staged() const { return staged_; }
  index_t at(index_t od, index_t oh, index_t ow, index_t b) const {
    return level_offset(lv_.stride, od, oh, ow) + b * lo_.block_step;
  }
  void put(T* y, index_t od, index_t oh, index_t ow, index_t b, V v) const {
    if (staged_)
      V::store(tile_ + flat(od, oh, ow) * nbn_ + b * V::N, v);
    else
      bins::put(y, lo_, u_, at(od, oh, ow, b), v);
  }
  V get(const T* g, index_t od, index_t oh, index_t ow, index_t b) const {
    if (staged_) return V::load(tile_ + flat(od, oh, ow) * nbn_ + b * V::N);
    return fetch(g, lo_, u_, at(od, oh, ow, b));
  }
  // After the forward wrote every bin: the tile to y.
  void store_all(T* y) const {
    if (staged_) move(y, true);
  }
  // Before the backward reads: g into the tile.
  void load_all(const T* g) const {
    if (staged_) move(const_cast<T*>(g), false);
  }

 private:
  index_t flat(index_t od, index_t oh, index_t ow) const { return (od * oh_ + oh) * ow_ + ow; }
  void move(T* y, bool out) const {
    const index_t bins = lv_.bins();
    for (index_t b = 0; b < u_.blocks; ++b) {
      index_t q = 0;
      if (blocks_) {
        for (; q + V::N <= bins; q += V::N) {
          T* ys = y + lo_.off[0] + b * lo_.block_step + q;
          T* ts = tile_ + q * nbn_ + b * V::N;
          if (out)
            V::transpose_block(ts, nbn_, ys, lv_.stride_c);
          else
            V::transpose_block(ys, lv_.stride_c, ts, nbn_);
        }
        if (q < bins) move_tail(y, b, q, bins - q, out);
        continue;
      }
      for (; q < bins; ++q) {
        const index_t a = level_offset(lv_.stride, q / (oh_ * ow_), (q / ow_) % oh_, q % ow_) + b * lo_.block_step;
        T* t = tile_ + q * nbn_ + b * V::N;
        for (index_t i = 0; i < V::N; ++i) {
          if (out && i < u_.lanes) y[lo_.off[i] + a] = t[i];
          if (!out) t[i] = i < u_.lanes ? y[lo_.off[i] + a] : T(0);
        }
      }
    }
  }
  // Bins [q0, q0 + r), r < N, of block b (evenly spaced lanes).
  void move_tail(T* y, index_t b, index_t q0, index_t r, bool out) const {
    T* ys = y + lo_.off[0] + b * lo_.block_step + q0;
    T* ts = tile_ + q0 * nbn_ + b * V::N;
    if (out)
      transpose_narrow(ts, nbn_, r, ys, lv_.stride_c);
    else
      transpose_wide(ys, lv_.stride_c, r, ts, nbn_);
  }
  LaneOffsets<T> lo_;
  const Unit<T>& u_;
  const BinLevel<T>& lv_;
  index_t oh_, ow_, nbn_;
  bool staged_, blocks_;
  T* tile_;
};

// ------------------------------------------------------------------ reductions
// Every reduction visits the taps of a bin in row-major order (rows of the bin, then
// columns), with the channel blocks innermost so channels_last memory streams.
// Accumulators: one vector per (ow, block), slot ow*nb + b.

// The taps of one bin for U channel blocks, accumulators in registers: rows rp[0..nr)
// (row k is input row rows[k]), taps off + j*step of each. `first`: the bin starts
// here (accumulators start from its first tap); otherwise they continue from memory.
// Drivers pass a whole bin at once when rows are random access, one row otherwise.
template <int U, bool kIdx, class T>
inline void max_chunk(const T* const* rp, const index_t* rows, index_t nr, index_t off, index_t count, index_t step,
                      bool first, index_t w0, index_t wstep, T* va, T* ra, T* ca) {
  using V = Vec<T>;
  V best[U], rk[U], cj[U];
  for (int u = 0; u < U; ++u) {
    if (first) {
      best[u] = V::load(rp[0] + off + u * V::N);
      rk[u] = V::set1(T(rows[0]));
      cj[u] = V::set1(T(w0));
    } else {
      best[u] = V::load(va + u * V::N);
      if (kIdx) {
        rk[u] = V::load(ra + u * V::N);
        cj[u] = V::load(ca + u * V::N);
      }
    }
  }
  for (index_t k = 0; k < nr; ++k) {
    const T* p = rp[k] + off;
    const V kv = V::set1(T(rows[k]));
    for (index_t j = first && k == 0 ? 1 : 0; j < count; ++j) {
      const T* q = p + j * step;
      const V jv = V::set1(T(w0 + j * wstep));
      for (int u = 0; u < U; ++u) {
        const V v = V::load(q + u * V::N);
        if (kIdx) {
          const auto m = V::gt_or_nan(v, best[u]);
          best[u] = V::select(m, v, best[u]);
          rk[u] = V::select(m, kv, rk[u]);
          cj[u] = V::select(m, jv, cj[u]);
        } else {
          best[u] = V::max_nan(best[u], v);
        }
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    V::store(va + u * V::N, best[u]);
    if (kIdx) {
      V::store(ra + u * V::N, rk[u]);
      V::store(ca + u * V::N, cj[u]);
    }
  }
}

// Runs chunk<U>(b0) over the nb blocks: chunks of 4, then single blocks.
template <class F>
inline void for_block_chunks(index_t nb, F&& chunk) {
  index_t b = 0;
  for (; b + 4 <= nb; b += 4) chunk(Int<4>(), b);
  for (; b < nb; ++b) chunk(Int<1>(), b);
}

// Visits the bins of output row (od, oh) (input rows `rows`, nr of them) as
// f(U, ow, b, row pointers, their rows, count, first): a bin at a time when every
// row is addressable at once (its accumulators never leave registers), else a row
// at a time (a one-row copy is refreshed per row). rp: nr pointers of scratch.
template <class R, class P, class F>
inline void for_bins(R& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, P* rp, F&& f) {
  if (src.random_access()) {
    for (index_t k = 0; k < nr; ++k) rp[k] = src.get(rows[k]);
    for (index_t ow = 0; ow < aw.out; ++ow)
      for_block_chunks(nb, [&](auto U, index_t b) { f(U, ow, b, rp, rows, nr, true); });
    return;
  }
  for (index_t k = 0; k < nr; ++k) {
    rp[0] = src.get(rows[k]);
    for (index_t ow = 0; ow < aw.out; ++ow)
      for_block_chunks(nb, [&](auto U, index_t b) { f(U, ow, b, rp, rows + k, index_t(1), k == 0); });
  }
}

// Maximum of each bin of output row (od, oh), with (when kIdx) the input row (d*H + h)
// and column where it is; the scan rule of max pooling (first maximum, last NaN).
template <class T, bool kIdx>
void max_bins(Rows<T>& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, const T** rp, T* val,
              T* rk, T* cj) {
  using V = Vec<T>;
  const index_t ps = src.ps(), step = aw.step * ps;
  for_bins(src, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, const T* const* p, const index_t* r,
                                          index_t n, bool first) {
    const index_t at = (ow * nb + b) * V::N;
    max_chunk<decltype(U)::value, kIdx>(p, r, n, aw.first[ow] * ps + b * V::N, aw.count[ow], step, first,
                                        aw.first[ow], aw.step, val + at, rk + at, cj + at);
  });
}

// Stochastic pooling's draw: the first tap at which the running sum c of the bin
// exceeds its threshold t = u S (S the bin's sum, u uniform in [0, 1)), so tap i is
// drawn with probability x_i / S; where rounding leaves t = S, the last tap at which c
// reaches S (the last nonzero one). Equal sums in every path: c adds the taps in the
// order the sum S did. A bin of zeros keeps its first tap. State across calls: c.
template <int U, class T>
inline void sample_chunk(const T* const* rp, const index_t* rows, index_t nr, index_t off, index_t count,
                         index_t step, bool first, index_t w0, index_t wstep, const T* sa, const T* ta, T* csum, T* va,
                         T* ra, T* ca) {
  using V = Vec<T>;
  const V zero = V::zero();
  V s[U], t[U], c[U], best[U], rk[U], cj[U];
  for (int u = 0; u < U; ++u) {
    s[u] = V::load(sa + u * V::N);
    t[u] = V::load(ta + u * V::N);
    if (first) {
      c[u] = zero;
      best[u] = V::load(rp[0] + off + u * V::N);
      rk[u] = V::set1(T(rows[0]));
      cj[u] = V::set1(T(w0));
    } else {
      c[u] = V::load(csum + u * V::N);
      best[u] = V::load(va + u * V::N);
      rk[u] = V::load(ra + u * V::N);
      cj[u] = V::load(ca + u * V::N);
    }
  }
  for (index_t k = 0; k < nr; ++k) {
    const T* p = rp[k] + off;
    const V kv = V::set1(T(rows[k]));
    for (index_t j = 0; j < count; ++j) {
      const V jv = V::set1(T(w0 + j * wstep));
      for (int u = 0; u < U; ++u) {
        const V v = V::load(p + j * step + u * V::N);
        const typename V::M before = V::gt(c[u], t[u]);
        c[u] = V::add(c[u], v);
        const auto m = V::m_and(V::m_not(before),
                                V::m_or(V::gt(c[u], t[u]), V::m_and(V::eq(c[u], s[u]), V::gt(v, zero))));
        best[u] = V::select(m, v, best[u]);
        rk[u] = V::select(m, kv, rk[u]);
        cj[u] = V::select(m, jv, cj[u]);
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    V::store(csum + u * V::N, c[u]);
    V::store(va + u * V::N, best[u]);
    V::store(ra + u * V::N, rk[u]);
    V::store(ca + u * V::N, cj[u]);
  }
}

template <class T>
void sample_bins(Rows<T>& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, const T** rp,
                 const T* sum, const T* thr, T* csum, T* val, T* rk, T* cj) {
  using V = Vec<T>;
  const index_t ps = src.ps(), step = aw.step * ps;
  for_bins(src, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, const T* const* p, const index_t* r,
                                          index_t n, bool first) {
    const index_t at = (ow * nb + b) * V::N;
    sample_chunk<decltype(U)::value>(p, r, n, aw.first[ow] * ps + b * V::N, aw.count[ow], step, first, aw.first[ow],
                                     aw.step, sum + at, thr + at, csum + at, val + at, rk + at, cj + at);
  });
}

// splitmix64's output function: a bijection of 64-bit words that mixes every bit.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The uniform number in [0, 1) of bin `bin` of plane `plane` (n*C + c): a counter-based
// hash, so a draw does not depend on which thread or path computes it.
// Python's reference: fastpool.stochastic_pool's docstring spells out the same steps.
template <class T>
inline T bin_uniform(std::uint64_t seed, index_t plane, index_t bin) {
  const std::uint64_t z =
      mix64(mix64(seed ^ (std::uint64_t(plane) * 0x9e3779b97f4a7c15ULL)) + std::uint64_t(bin) * 0xd1b54a32d192ed03ULL);
  return sizeof(T) == 4 ? T(z >> 40) * T(1.0 / 16777216.0) : T(z >> 11) * T(1.0 / 9007199254740992.0);
}

// Whether each lane holds a probability weight: 0 <= v < inf (false for NaN).
template <class V>
inline typename V::M is_weight(V v) {
  return V::m_and(V::le(V::zero(), v), V::lt(v, V::set1(typename V::value_type(__builtin_inf()))));
}

// Two sums at once: f returns a Pair, whose second member goes to acc2 (when kTwo).
template <class V>
struct Pair {
  V a, b;
};

template <int U, bool kTwo, class T, class F>
inline void sum_chunk(const T* const* rp, index_t nr, index_t off, index_t count, index_t step, bool first, T* acc,
                      T* acc2, index_t slot, F& f) {
  using V = Vec<T>;
  V s[U], s2[U];
  for (int u = 0; u < U; ++u) {
    if (first) {
      const Pair<V> q = f(V::load(rp[0] + off + u * V::N), slot + u);
      s[u] = q.a;
      s2[u] = q.b;
    } else {
      s[u] = V::load(acc + u * V::N);
      if (kTwo) s2[u] = V::load(acc2 + u * V::N);
    }
  }
  for (index_t k = 0; k < nr; ++k)
    for (index_t j = first && k == 0 ? 1 : 0; j < count; ++j)
      for (int u = 0; u < U; ++u) {
        const Pair<V> q = f(V::load(rp[k] + off + j * step + u * V::N), slot + u);
        s[u] = V::add(s[u], q.a);
        if (kTwo) s2[u] = V::add(s2[u], q.b);
      }
  for (int u = 0; u < U; ++u) {
    V::store(acc + u * V::N, s[u]);
    if (kTwo) V::store(acc2 + u * V::N, s2[u]);
  }
}

// Sum over each bin of f(x, slot).a into acc (and, when kTwo, of .b into acc2).
template <bool kTwo, class T, class F>
void sum_bins(Rows<T>& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, const T** rp, T* acc,
              T* acc2, F&& f) {
  using V = Vec<T>;
  const index_t ps = src.ps(), step = aw.step * ps;
  for_bins(src, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, const T* const* p, const index_t*,
                                          index_t n, bool first) {
    const index_t at = (ow * nb + b) * V::N;
    sum_chunk<decltype(U)::value, kTwo>(p, n, aw.first[ow] * ps + b * V::N, aw.count[ow], step, first, acc + at,
                                        acc2 + at, ow * nb + b, f);
  });
}

template <int U, class T, class F>
inline void max_of_chunk(const T* const* rp, index_t nr, index_t off, index_t count, index_t step, bool first, T* acc,
                         F& f) {
  using V = Vec<T>;
  V m[U];
  for (int u = 0; u < U; ++u) m[u] = first ? f(V::load(rp[0] + off + u * V::N)) : V::load(acc + u * V::N);
  for (index_t k = 0; k < nr; ++k)
    for (index_t j = first && k == 0 ? 1 : 0; j < count; ++j)
      for (int u = 0; u < U; ++u) m[u] = V::max_nan(m[u], f(V::load(rp[k] + off + j * step + u * V::N)));
  for (int u = 0; u < U; ++u) V::store(acc + u * V::N, m[u]);
}

// Maximum over each bin of f(x) (NaN propagates), into acc.
template <class T, class F>
void max_of_bins(Rows<T>& src, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, const T** rp, T* acc,
                 F&& f) {
  using V = Vec<T>;
  const index_t ps = src.ps(), step = aw.step * ps;
  for_bins(src, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, const T* const* p, const index_t*,
                                          index_t n, bool first) {
    max_of_chunk<decltype(U)::value>(p, n, aw.first[ow] * ps + b * V::N, aw.count[ow], step, first,
                                     acc + (ow * nb + b) * V::N, f);
  });
}

// Adds each bin's g to every one of its taps.
template <class T>
void add_to_taps(GradRows<T>& dst, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, const T* g) {
  using V = Vec<T>;
  const index_t ps = dst.ps();
  for (index_t kk = 0; kk < nr; ++kk) {
    T* grow = dst.get(rows[kk]);
    for (index_t ow = 0; ow < aw.out; ++ow)
      for (index_t j = 0; j < aw.count[ow]; ++j)
        for (index_t b = 0; b < nb; ++b) {
          T* q = grow + (aw.first[ow] + j * aw.step) * ps + b * V::N;
          V::store(q, V::add(V::load(q), V::load(g + (ow * nb + b) * V::N)));
        }
  }
}

// Adds f(x, at) to every tap of each bin (at = (ow * nb + b) * N: where its accumulators are).
template <class T, class F>
void add_to_taps_of(Rows<T>& src, GradRows<T>& dst, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb,
                    F&& f) {
  using V = Vec<T>;
  const index_t ps = src.ps(), gps = dst.ps();
  for (index_t kk = 0; kk < nr; ++kk) {
    const T* row = src.get(rows[kk]);
    T* grow = dst.get(rows[kk]);
    for (index_t ow = 0; ow < aw.out; ++ow)
      for (index_t j = 0; j < aw.count[ow]; ++j)
        for (index_t b = 0; b < nb; ++b) {
          const index_t at = aw.first[ow] + j * aw.step;
          T* q = grow + at * gps + b * V::N;
          V::store(q, V::add(V::load(q), f(V::load(row + at * ps + b * V::N), (ow * nb + b) * V::N)));
        }
  }
}

// Adds each lane's gradient g at its bin's argmax (input row rk, column cj): a compare
// per tap, in the rows holding some lane's maximum only.
template <int U, class T>
inline void route_chunk(T* const* rp, const index_t* rows, index_t nr, index_t off, index_t count, index_t step,
                        index_t w0, index_t wstep, const T* ra, const T* ca, const T* ga) {
  using V = Vec<T>;
  V rk[U], cj[U], g[U];
  for (int u = 0; u < U; ++u) {
    rk[u] = V::load(ra + u * V::N);
    cj[u] = V::load(ca + u * V::N);
    g[u] = V::load(ga + u * V::N);
  }
  for (index_t k = 0; k < nr; ++k) {
    const V kv = V::set1(T(rows[k]));
    typename V::M in_row[U];
    bool any = false;
    for (int u = 0; u < U; ++u) {
      in_row[u] = V::eq(rk[u], kv);
      any = any || V::any(in_row[u]);
    }
    if (!any) continue;  // no lane's maximum is in this row
    for (index_t j = 0; j < count; ++j) {
      const V jv = V::set1(T(w0 + j * wstep));
      for (int u = 0; u < U; ++u) {  // branch-free: which lanes hit a tap is data-dependent
        const auto m = V::m_and(in_row[u], V::eq(cj[u], jv));
        T* t = rp[k] + off + j * step + u * V::N;
        V::store(t, V::add(V::load(t), V::select(m, g[u], V::zero())));
      }
    }
  }
}

template <class T>
void route_bins(GradRows<T>& dst, const BinAxis& aw, const index_t* rows, index_t nr, index_t nb, T** rp,
                const T* rk, const T* cj, const T* g) {
  using V = Vec<T>;
  const index_t ps = dst.ps(), step = aw.step * ps;
  for_bins(dst, aw, rows, nr, nb, rp, [&](auto U, index_t ow, index_t b, T* const* p, const index_t* r, index_t n,
                                          bool) {
    const index_t at = (ow * nb + b) * V::N;
    route_chunk<decltype(U)::value>(p, r, n, aw.first[ow] * ps + b * V::N, aw.count[ow], step, aw.first[ow], aw.step,
                                    rk + at, cj + at, g + at);
  });
}

// Flat plane position of an argmax from its input row (d*H + h) and column.
inline index_t argmax_position(double r, double w, index_t W) { return index_t(r) * W + index_t(w); }

// ------------------------------------------------------------------ power means

// x^p for x >= 0: multiplications for p = 1..4, exp/log otherwise; and x^(p-1),
// the derivative's factor.
enum class PowKind : int { one = 1, two = 2, three = 3, four = 4, general = 0 };

inline PowKind pow_kind_of(double p, bool per_channel) {
  if (per_channel) return PowKind::general;
  if (p == 1) return PowKind::one;
  if (p == 2) return PowKind::two;
  if (p == 3) return PowKind::three;
  if (p == 4) return PowKind::four;
  return PowKind::general;
}

template <class V, int K>
inline V pow_p(V r, V p) {
  if (K == 1) return r;
  if (K == 2) return V::mul(r, r);
  if (K == 3) return V::mul(V::mul(r, r), r);
  if (K == 4) {
    const V r2 = V::mul(r, r);
    return V::mul(r2, r2);
  }
  return vpow(r, p);
}

template <class V, int K>
inline V pow_p_minus_1(V r, V pm1) {
  if (K == 1) return V::set1(typename V::value_type(1));
  if (K == 2) return r;
  if (K == 3) return V::mul(r, r);
  if (K == 4) return V::mul(V::mul(r, r), r);
  return vexp(V::mul(pm1, vlog(r)));
}

template <class F>
inline void with_pow_kind(PowKind k, F&& f) {
  switch (k) {
    case PowKind::one: f(Int<1>()); break;
    case PowKind::two: f(Int<2>()); break;
    case PowKind::three: f(Int<3>()); break;
    case PowKind::four: f(Int<4>()); break;
    default: f(Int<0>()); break;
  }
}

// The clamped or absolute value a power mean raises to p.
template <class T>
struct Magnitude {
  using V = Vec<T>;
  bool gem;
  V eps;
  V operator()(V x) const {
    if (gem) return V::select(V::lt(x, eps), eps, x);  // max(x, eps), NaN kept
    return V::abs(x);
  }
};

// y = m * (S / D)^(1/p) with the guards of the scaled form: m = 0 gives 0 (all taps
// zero), m = inf gives inf.
template <class T>
inline Vec<T> power_result(Vec<T> m, Vec<T> s_over_d, Vec<T> inv_p, bool scaled) {
  using V = Vec<T>;
  if (!scaled) return vpow(s_over_d, inv_p);
  const V y = V::mul(m, vpow(s_over_d, inv_p));
  const V inf = V::set1(T(__builtin_inf()));
  return V::select(V::eq(m, V::zero()), V::zero(), V::select(V::eq(m, inf), inf, y));
}

// SoftPool relative to the bin maximum m: e = exp(x - m) <= 1 never overflows and the
// maximum's own weight is 1, so S0 = sum e >= 1; S1 = sum e (x - m) <= 0 stays within
// the range where sum e x would not (near the largest finite values). Returns
// (e, e (x - m)), 0 where e underflows to 0 (x = -inf included).
template <class T>
inline Pair<Vec<T>> soft_terms(Vec<T> x, Vec<T> m) {
  using V = Vec<T>;
  const V d = V::sub(x, m), e = vexp(d);
  return Pair<V>{e, V::select(V::eq(e, V::zero()), V::zero(), V::mul(e, d))};
}

// y - m = S1 / S0.
template <class T>
inline Vec<T> soft_offset(Vec<T> s0, Vec<T> s1) {
  return Vec<T>::div(s1, s0);
}

// y = m + S1 / S0; a bin whose maximum is infinite gives that infinity (its weights
// are NaN: inf - inf), a NaN maximum gives NaN.
template <class T>
inline Vec<T> soft_result(Vec<T> m, Vec<T> s0, Vec<T> s1) {
  using V = Vec<T>;
  const V inf = V::set1(T(__builtin_inf()));
  return V::select(V::eq(V::abs(m), inf), m, V::add(m, soft_offset(s0, s1)));
}

// Mixed pooling, alpha max + (1 - alpha) avg, as written (the peers' composition).
template <class V>
inline V mixed_result(V alpha, V m, V avg) {
  return V::add(V::mul(alpha, m), V::mul(V::sub(V::set1(typename V::value_type(1)), alpha), avg));
}

// ------------------------------------------------------------------ pyramids
// A level whose every bin is the union of consecutive bins of a finer level (adaptive
// bins when one bin count divides the other: a spatial pyramid's coarse levels) takes
// its argmax from that level's results instead of from the taps.

// Bins [lo[o], hi[o]) of `fine` whose union is bin o of `coarse`, if every bin is one.
inline bool compose_axis(const BinAxis& coarse, const BinAxis& fine, index_t* lo, index_t* hi) {
  if (coarse.step != 1 || fine.step != 1) return false;
  index_t i = 0;
  for (index_t o = 0; o < coarse.out; ++o) {
    const index_t start = coarse.first[o], end = start + coarse.count[o];
    while (i < fine.out && fine.first[i] < start) ++i;
    if (i == fine.out || fine.first[i] != start) return false;
    index_t j = i, covered = start;
    while (j < fine.out && fine.first[j] <= covered && fine.first[j] + fine.count[j] <= end) {
      covered = imax(covered, fine.first[j] + fine.count[j]);
      ++j;
      if (covered == end) break;
    }
    if (covered != end) return false;
    lo[o] = i;
    hi[o] = j;
  }
  return true;
}

template <class T>
struct PyramidPlan {
  int* order;      // levels finest first; a level's source comes before it
  int* source;     // finer level it is composed from, or -1
  bool* keep;      // results kept for a coarser level
  index_t** range;  // [level][axis][lo, hi] arrays: its bins in the source level
  index_t** root_range;  // the same in its root level (the finest of its chain)
  int* root;        // level at the end of its source chain (itself if none)
  index_t* offset;  // [level] start of its kept results, in vectors per block

  static std::size_t bytes(const BinLevel<T>* lv, int nl) {
    std::size_t b = Scratch::bytes<int>(nl) * 3 + Scratch::bytes<bool>(nl) + Scratch::bytes<index_t*>(nl * 6) * 2 +
                    Scratch::bytes<index_t>(nl);
    for (int l = 0; l < nl; ++l)
      for (int i = 0; i < 3; ++i) b += Scratch::bytes<index_t>(lv[l].axis[i].out) * 4;
    return b;
  }
  void build(Scratch& mem, const BinLevel<T>* lv, int nl) {
    order = mem.take<int>(nl);
    source = mem.take<int>(nl);
    keep = mem.take<bool>(nl);
    range = mem.take<index_t*>(nl * 6);
    root_range = mem.take<index_t*>(nl * 6);
    root = mem.take<int>(nl);
    offset = mem.take<index_t>(nl);
    for (int l = 0; l < nl; ++l) {
      order[l] = l;
      source[l] = -1;
      keep[l] = false;
      root[l] = l;
      for (int i = 0; i < 6; ++i) range[l * 6 + i] = mem.take<index_t>(lv[l].axis[i / 2].out);
      for (int i = 0; i < 6; ++i) root_range[l * 6 + i] = mem.take<index_t>(lv[l].axis[i / 2].out);
    }
    for (int a = 1; a < nl; ++a)  // finest (most bins) first, stable
      for (int b = a; b > 0 && lv[order[b]].bins() > lv[order[b - 1]].bins(); --b) {
        const int t = order[b];
        order[b] = order[b - 1];
        order[b - 1] = t;
      }
    for (int a = 0; a < nl; ++a) {
      const int c = order[a];
      for (int b = a - 1; b >= 0 && source[c] < 0; --b) {  // the coarsest finer level that composes it
        const int f = order[b];
        if (lv[f].bins() <= lv[c].bins()) continue;
        bool ok = true;
        for (int i = 0; ok && i < 3; ++i)
          ok = compose_axis(lv[c].axis[i], lv[f].axis[i], range[c * 6 + i * 2], range[c * 6 + i * 2 + 1]);
        if (ok) {
          source[c] = f;
          keep[f] = true;
        }
      }
    }
    for (int a = 0; a < nl; ++a) {  // sources come first in `order`
      const int c = order[a], f = source[c];
      for (int i = 0; i < 3; ++i) {
        index_t *lo = root_range[c * 6 + i * 2], *hi = root_range[c * 6 + i * 2 + 1];
        for (index_t o = 0; o < lv[c].axis[i].out; ++o) {
          if (f < 0) {
            lo[o] = o;
            hi[o] = o + 1;
          } else {
            lo[o] = root_range[f * 6 + i * 2][range[c * 6 + i * 2][o]];
            hi[o] = root_range[f * 6 + i * 2 + 1][range[c * 6 + i * 2 + 1][o] - 1];
          }
        }
      }
      root[c] = f < 0 ? c : root[f];
    }
    index_t total = 0;
    for (int l = 0; l < nl; ++l) {
      offset[l] = total;
      if (keep[l]) total += lv[l].bins();
    }
  }
  index_t kept_bins(const BinLevel<T>* lv, int nl) const {
    index_t total = 0;
    for (int l = 0; l < nl; ++l)
      if (keep[l]) total += lv[l].bins();
    return total;
  }
};

// (v, r, w) merged with another bin's maximum (v2, r2, w2) by the scan rule over
// positions: the larger value, the earlier position among equal values, the later
// position among NaNs. s follows the winner (the root bin it came from).
// Whether (v2 at a position `before` v's or not) wins that merge.
template <class V>
inline typename V::M merge_wins(V v, V v2, typename V::M before) {
  const auto nan1 = V::is_nan(v), nan2 = V::is_nan(v2);
  const auto bigger = V::m_or(V::gt(v2, v), V::m_and(V::eq(v2, v), before));
  return V::m_or(V::m_and(bigger, V::m_not(V::m_or(nan1, nan2))),
                 V::m_and(nan2, V::m_or(V::m_not(nan1), V::m_not(before))));
}

template <class V>
inline void merge_max(V& v, V& r, V& w, V& s, V v2, V r2, V w2, V s2) {
  const auto win = merge_wins(v, v2, V::m_or(V::lt(r2, r), V::m_and(V::eq(r2, r), V::lt(w2, w))));
  v = V::select(win, v2, v);
  r = V::select(win, r2, r);
  w = V::select(win, w2, w);
  s = V::select(win, s2, s);
}

// Per-lane exponent vectors of a unit, one per block.
template <class T>
struct Exponents {
  using V = Vec<T>;
  T *p, *inv_p, *pm1;
  void fill(const BinProblem& pb, const Unit<T>& u, const BinParams<T>& pp) {
    for (index_t b = 0; b < u.blocks; ++b) {
      alignas(64) T t[V::N];
      for (index_t l = 0; l < V::N; ++l)
        t[l] = pp.p_channel ? pp.p_channel[(u.plane0 + b * V::N + imin(l, u.lanes - 1)) % pb.channels] : pp.p;
      const V pv = V::load(t);
      V::store(p + b * V::N, pv);
      V::store(inv_p + b * V::N, V::div(V::set1(T(1)), pv));
      V::store(pm1 + b * V::N, V::sub(pv, V::set1(T(1))));
    }
  }
};

#include "kernels/dropout-inl.hpp"

// Per-call sizes shared by the forward and backward drivers.
template <class T>
struct Setup {
  index_t H, W, rows, P, nb, tile;
  index_t max_out_w = 1, max_rows = 1, max_taps = 1;
  bool whole;

  Setup(const BinProblem& pb, const BinLevel<T>* lv, int nl, int threads) {
    H = pb.in[1];
    W = pb.in[2];
    rows = pb.in[0] * pb.in[1];
    P = pb.plane();
    for (int l = 0; l < nl; ++l) {
      max_out_w = imax(max_out_w, lv[l].axis[2].out);
      index_t cd = 0, ch = 0;
      for (index_t o = 0; o < lv[l].axis[0].out; ++o) cd = imax(cd, lv[l].axis[0].count[o]);
      for (index_t o = 0; o < lv[l].axis[1].out; ++o) ch = imax(ch, lv[l].axis[1].count[o]);
      index_t cw = 0;
      for (index_t o = 0; o < lv[l].axis[2].out; ++o) cw = imax(cw, lv[l].axis[2].count[o]);
      max_rows = imax(max_rows, cd * ch);
      max_taps = imax(max_taps, cd * ch * cw);
    }
    nb = pb.channels_last ? Unit<T>::cl_blocks(pb, max_out_w) : 1;
    // at least a few units per thread, even at batch 1 (the split never changes a result)
    const index_t blocks = pb.batch * (pb.channels / Vec<T>::N);
    if (threads > 1) nb = imax(1, imin(nb, blocks / (4 * index_t(threads))));
    index_t most_bins = 1;
    for (int l = 0; l < nl; ++l) most_bins = imax(most_bins, lv[l].bins());
    tile = imin(most_bins * nb * Vec<T>::N, index_t(kTileBytes / sizeof(T)));
    whole = std::size_t(P) * Vec<T>::N * sizeof(T) <= kPlaneCopyBytes;
  }
  index_t copy_elems() const { return (whole ? P : W) * Vec<T>::N; }
  index_t acc_elems() const { return max_out_w * nb * Vec<T>::N; }
  std::size_t scratch_bytes(int accs) const {
    return Scratch::bytes<T>(copy_elems()) * 2 + Scratch::bytes<index_t>(max_rows) * 3 +
           Scratch::bytes<T>(acc_elems()) * std::size_t(accs) + Scratch::bytes<T>(nb * Vec<T>::N) * 4 +
           Scratch::bytes<T>(tile) + 64;
  }
  // Max-pooling dropout's: the mask rows (training) or two bin-major tap copies of
  // an output row (inference: the taps, and the backward's per-tap gradients).
  bool keep_whole() const { return KeepRows<T>::whole_fits(nb, rows, W); }
  std::size_t dropout_bytes(BinReduce op) const {
    if (op == BinReduce::dropout)
      return Scratch::bytes<T>(KeepRows<T>::buffer_elems(nb, rows, W)) +
             Scratch::bytes<std::uint32_t>(KeepRows<T>::key_elems(nb)) + Scratch::bytes<MaskedRow<T>>(max_rows);
    return op == BinReduce::dropout_mean ? Scratch::bytes<T>(acc_elems() * max_taps) * 2 : 0;
  }
  struct DropoutScratch {
    T* keep;
    std::uint32_t* keys;
    MaskedRow<T>* rp;
    T* taps;
    T* terms;
  };
  DropoutScratch take_dropout(Scratch& mem, BinReduce op) const {
    DropoutScratch d{};
    if (op == BinReduce::dropout) {
      d.keep = mem.take<T>(KeepRows<T>::buffer_elems(nb, rows, W));
      d.keys = mem.take<std::uint32_t>(KeepRows<T>::key_elems(nb));
      d.rp = mem.take<MaskedRow<T>>(max_rows);
    } else if (op == BinReduce::dropout_mean) {
      d.taps = mem.take<T>(acc_elems() * max_taps);
      d.terms = mem.take<T>(acc_elems() * max_taps);
    }
    return d;
  }
};

template <class T>
index_t forward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp, const BinLevel<T>* levels,
                int n_levels, int threads) {
  using V = Vec<T>;
  const Setup<T> su(pb, levels, n_levels, threads);
  const index_t n_units = Unit<T>::count(pb, su.nb);
  const PowKind kind = pow_kind_of(double(pp.p), pp.p_channel != nullptr);
  // Value-only pyramids: coarse levels merged from a finer level's maxima (max is
  // exact in any order, so only bins whose maximum is a zero or a NaN, where the scan
  // rule picks among equal values by position, are taken from the taps again).
  bool merge = op == BinReduce::max && n_levels > 1;
  for (int l = 0; l < n_levels; ++l) merge = merge && !levels[l].indices;
  Scratch plan_mem(merge ? PyramidPlan<T>::bytes(levels, n_levels) : 0);
  if (!plan_mem.ok()) throw std::bad_alloc();
  PyramidPlan<T> plan{};
  if (merge) plan.build(plan_mem, levels, n_levels);
  const index_t kept_elems = merge ? plan.kept_bins(levels, n_levels) * su.nb * V::N : 0;
  int ok = 1;
  index_t invalid = -1;
  const bool sample = op == BinReduce::stochastic, drop = op == BinReduce::dropout;
  parallel_for(n_units, threads, pb.size(), [&](index_t u0, index_t u1) {
    Scratch mem(su.scratch_bytes(sample || drop ? 6 : 3) + Scratch::bytes<T>(kept_elems) + su.dropout_bytes(op));
    if (!mem.ok()) return report_failure(ok);
    const typename Setup<T>::DropoutScratch ds = su.take_dropout(mem, op);
    T* kept = mem.take<T>(kept_elems);
    T* copy = mem.take<T>(su.copy_elems());
    index_t* rows = mem.take<index_t>(su.max_rows);
    const T** rp = mem.take<const T*>(su.max_rows);
    T* a0 = mem.take<T>(su.acc_elems());
    T* a1 = mem.take<T>(su.acc_elems());
    T* a2 = mem.take<T>(su.acc_elems());
    T* a3 = sample || drop ? mem.take<T>(su.acc_elems()) : nullptr;
    T* a4 = sample ? mem.take<T>(su.acc_elems()) : nullptr;
    T* a5 = sample ? mem.take<T>(su.acc_elems()) : nullptr;
    typename V::M bad = V::lt(V::zero(), V::zero());  // a lane met a value that is no weight
    Exponents<T> ex{mem.take<T>(su.nb * V::N), mem.take<T>(su.nb * V::N), mem.take<T>(su.nb * V::N)};
    T* tile = mem.take<T>(su.tile);
    for (index_t ui = u0; ui < u1; ++ui) {
      const Unit<T> u = Unit<T>::make(pb, su.nb, ui);
      const index_t nb = u.blocks;
      Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
      KeepRows<T> keep(pp, u, su.rows, su.W, ds.keep, ds.keys, su.keep_whole(), drop);
      MaskedRows<T, Rows<T>> masked{src, keep};
      if (op == BinReduce::lp || op == BinReduce::gem || op == BinReduce::mixed) ex.fill(pb, u, pp);
      for (int oi = 0; oi < n_levels; ++oi) {
        const int l = merge ? plan.order[oi] : oi;
        const BinLevel<T>& lv = levels[l];
        const BinAxis& aw = lv.axis[2];
        const LevelIO<T> io(pb, u, lv, tile, su.tile);
        const LaneOffsets<T>& lo = io.offsets();
        const index_t OH = lv.axis[1].out, OW = aw.out;
        auto kept_at = [&](int k, index_t bin, index_t b) { return kept + ((plan.offset[k] + bin) * nb + b) * V::N; };
        for (index_t od = 0; od < lv.axis[0].out; ++od)
          for (index_t oh = 0; oh < OH; ++oh) {
            const index_t nr = bin_rows(lv.axis, su.H, od, oh, rows);
            const index_t dd = lv.axis[0].divisor[od] * lv.axis[1].divisor[oh];
            auto emit = [&](const T* acc, auto&& value) {
              for (index_t ow = 0; ow < aw.out; ++ow)
                for (index_t b = 0; b < nb; ++b) {
                  const V y = value(V::load(acc + (ow * nb + b) * V::N), ow, b);
                  io.put(lv.y, od, oh, ow, b, op == BinReduce::max || drop ? y : canonical_nan(y));
                }
            };
            if (op == BinReduce::max) {
              if (lv.indices) {
                max_bins<T, true>(src, aw, rows, nr, nb, rp, a0, a1, a2);
                for (index_t ow = 0; ow < aw.out; ++ow)
                  for (index_t b = 0; b < nb; ++b) {
                    const index_t s = (ow * nb + b) * V::N, at = io.at(od, oh, ow, b);
                    for (index_t i = 0; i < u.lanes; ++i)
                      lv.indices[lo.off[i] + at] = argmax_position(double(a1[s + i]), double(a2[s + i]), su.W);
                  }
              } else if (merge && plan.source[l] >= 0) {
                const int f = plan.source[l];
                const index_t FH = levels[f].axis[1].out, FW = levels[f].axis[2].out;
                index_t* const* rg = plan.range + l * 6;
                typename V::M inexact = V::is_nan(V::zero());
                for (index_t ow = 0; ow < OW; ++ow)
                  for (index_t b = 0; b < nb; ++b) {
                    V m = V::load(kept_at(f, (rg[0][od] * FH + rg[2][oh]) * FW + rg[4][ow], b));
                    for (index_t fd = rg[0][od]; fd < rg[1][od]; ++fd)
                      for (index_t fh = rg[2][oh]; fh < rg[3][oh]; ++fh)
                        for (index_t fw = rg[4][ow]; fw < rg[5][ow]; ++fw)
                          m = V::max_nan(m, V::load(kept_at(f, (fd * FH + fh) * FW + fw, b)));
                    inexact = V::m_or(inexact, V::m_or(V::is_nan(m), V::eq(m, V::zero())));
                    V::store(a0 + (ow * nb + b) * V::N, m);
                  }
                if (V::any(inexact)) max_bins<T, false>(src, aw, rows, nr, nb, rp, a0, a1, a2);
              } else {
                max_bins<T, false>(src, aw, rows, nr, nb, rp, a0, a1, a2);
              }
              if (merge && plan.keep[l])
                for (index_t ow = 0; ow < OW; ++ow)
                  for (index_t b = 0; b < nb; ++b)
                    V::store(kept_at(l, (od * OH + oh) * OW + ow, b), V::load(a0 + (ow * nb + b) * V::N));
              emit(a0, [](V v, index_t, index_t) { return v; });
            } else if (drop) {  // the winner's position, or -1 where it is a dropped tap's 0
              if (lv.indices) {
                drop_max_bins<true>(masked, aw, rows, nr, nb, ds.rp, a0, a1, a2, a3);
                for (index_t ow = 0; ow < aw.out; ++ow)
                  for (index_t b = 0; b < nb; ++b) {
                    const index_t s = (ow * nb + b) * V::N, at = io.at(od, oh, ow, b);
                    for (index_t i = 0; i < u.lanes; ++i)
                      lv.indices[lo.off[i] + at] =
                          a3[s + i] != T(0) ? argmax_position(double(a1[s + i]), double(a2[s + i]), su.W) : -1;
                  }
              } else {
                drop_max_bins<false>(masked, aw, rows, nr, nb, ds.rp, a0, a1, a2, a3);
              }
              emit(a0, [](V v, index_t, index_t) { return v; });
            } else if (op == BinReduce::dropout_mean) {  // sum p q^c_i x_i, taps in row-major order
              tap_copy(src, aw, rows, nr, nb, su.max_taps, ds.taps);
              const V pv = V::set1(pp.keep), qv = V::set1(pp.p);
              for (index_t ow = 0; ow < OW; ++ow) {
                const index_t n = nr * aw.count[ow];
                for (index_t b = 0; b < nb; ++b) {
                  const T* t = ds.taps + ow * su.max_taps * nb * V::N + b * V::N;
                  V y = V::zero();
                  for (index_t i = 0; i < n; ++i)
                    y = V::add(y, weighted(rank_weight(t, n, nb * V::N, i, pv, qv), V::load(t + i * nb * V::N)));
                  V::store(a0 + (ow * nb + b) * V::N, y);
                }
              }
              emit(a0, [](V v, index_t, index_t) { return v; });
            } else if (op == BinReduce::avg) {
              sum_bins<false>(src, aw, rows, nr, nb, rp, a0, a1, [](V v, index_t) { return Pair<V>{v, v}; });
              emit(a0, [&](V v, index_t ow, index_t) { return V::div(v, V::set1(T(dd * aw.divisor[ow]))); });
            } else if (op == BinReduce::stochastic || op == BinReduce::stochastic_mean) {
              auto weight = [&](V v) {
                bad = V::m_or(bad, V::m_not(is_weight(v)));
                return v;
              };
              if (!sample) {  // sum x^2 / sum x
                sum_bins<true>(src, aw, rows, nr, nb, rp, a0, a2, [&](V v, index_t) {
                  weight(v);
                  return Pair<V>{v, V::mul(v, v)};
                });
                emit(a2, [&](V s2, index_t ow, index_t b) {
                  const V s = V::load(a0 + (ow * nb + b) * V::N);
                  return V::select(V::eq(s, V::zero()), V::zero(), V::div(s2, s));
                });
              } else {
                sum_bins<false>(src, aw, rows, nr, nb, rp, a0, a0, [&](V v, index_t) { return Pair<V>{weight(v), v}; });
                for (index_t ow = 0; ow < OW; ++ow) {  // thresholds t = u S
                  const index_t bin = (od * OH + oh) * OW + ow;
                  for (index_t b = 0; b < nb; ++b) {
                    alignas(64) T uv[V::N];
                    for (index_t i = 0; i < V::N; ++i)
                      uv[i] = bin_uniform<T>(pp.seed, u.plane0 + b * V::N + imin(i, u.lanes - 1), bin);
                    const index_t slot = (ow * nb + b) * V::N;
                    V::store(a1 + slot, V::mul(V::load(uv), V::load(a0 + slot)));
                  }
                }
                sample_bins(src, aw, rows, nr, nb, rp, a0, a1, a2, a3, a4, a5);
                if (lv.indices)
                  for (index_t ow = 0; ow < OW; ++ow)
                    for (index_t b = 0; b < nb; ++b) {
                      const index_t s = (ow * nb + b) * V::N, at = io.at(od, oh, ow, b);
                      for (index_t i = 0; i < u.lanes; ++i)
                        lv.indices[lo.off[i] + at] = argmax_position(double(a4[s + i]), double(a5[s + i]), su.W);
                    }
                emit(a3, [](V v, index_t, index_t) { return v; });
              }
            } else if (op == BinReduce::mixed) {
              max_of_bins(src, aw, rows, nr, nb, rp, a1, [](V v) { return v; });
              sum_bins<false>(src, aw, rows, nr, nb, rp, a0, a2, [](V v, index_t) { return Pair<V>{v, v}; });
              emit(a0, [&](V s, index_t ow, index_t b) {
                const V avg = V::div(s, V::set1(T(dd * aw.divisor[ow])));
                return mixed_result(V::load(ex.p + b * V::N), V::load(a1 + (ow * nb + b) * V::N), avg);
              });
            } else if (op == BinReduce::soft) {
              max_of_bins(src, aw, rows, nr, nb, rp, a1, [](V v) { return v; });
              sum_bins<true>(src, aw, rows, nr, nb, rp, a0, a2,
                             [&](V v, index_t slot) { return soft_terms(v, V::load(a1 + slot * V::N)); });
              emit(a2, [&](V s1, index_t ow, index_t b) {
                const index_t slot = (ow * nb + b) * V::N;
                return soft_result(V::load(a1 + slot), V::load(a0 + slot), s1);
              });
            } else {
              const bool gem = op == BinReduce::gem;
              const Magnitude<T> mag{gem, V::set1(pp.eps)};
              with_pow_kind(kind, [&](auto K) {
                constexpr int k = decltype(K)::value;
                const bool scaled = k != 1;
                if (scaled) max_of_bins(src, aw, rows, nr, nb, rp, a1, mag);
                sum_bins<false>(src, aw, rows, nr, nb, rp, a0, a2, [&](V v, index_t slot) {
                  const V t = mag(v);
                  const V q = pow_p<V, k>(scaled ? V::div(t, V::load(a1 + slot * V::N)) : t,
                                          V::load(ex.p + (slot % nb) * V::N));
                  return Pair<V>{q, q};
                });
                emit(a0, [&](V s, index_t ow, index_t b) {
                  if (gem) s = V::div(s, V::set1(T(dd * aw.divisor[ow])));
                  if (k == 1) return s;
                  return power_result(V::load(a1 + (ow * nb + b) * V::N), s, V::load(ex.inv_p + b * V::N), scaled);
                });
              });
            }
          }
        io.store_all(lv.y);
      }
      if (V::any(bad)) {  // lanes past u.lanes hold no plane of the input
        alignas(64) T f[V::N];
        V::store(f, V::select(bad, V::set1(T(1)), V::zero()));
        for (index_t i = 0; i < u.lanes; ++i)
          if (f[i] != T(0)) report_bad_index(invalid, 0);
        bad = V::lt(V::zero(), V::zero());
      }
    }
  });
  if (!ok) throw std::bad_alloc();
  return invalid;
}

// Bins of an axis that contain each input position, as a range [lo, hi)
// (adaptive bins: starts and ends are non-decreasing).
inline void covering_bins(const BinAxis& a, index_t* lo, index_t* hi) {
  index_t b = 0, e = 0;
  for (index_t x = 0; x < a.in; ++x) {
    while (b < a.out && a.first[b] + a.count[b] <= x) ++b;
    if (e < b) e = b;
    while (e < a.out && a.first[e] <= x) ++e;
    lo[x] = b;
    hi[x] = e;
  }
}

// avg backward in gather form: each element of grad_x written once, the sum of
// grad_y / divisor over the bins covering it (levels, then bins, in order). The
// covering bins of a pixel are listed once, then summed for every channel block.
template <class T>
void avg_backward_unit(const BinProblem& pb, const BinLevel<T>* levels, int n_levels, index_t* const* range,
                       const Setup<T>& su, const Unit<T>& u, T** coef, T* tile, T* row_buf, const T** cover, T* gx) {
  using V = Vec<T>;
  const index_t nb = u.blocks;
  for (int l = 0; l < n_levels; ++l) {
    const BinLevel<T>& lv = levels[l];
    const LevelIO<T> io(pb, u, lv, tile, su.tile);
    io.load_all(lv.grad_y);
    index_t s = 0;
    for (index_t od = 0; od < lv.axis[0].out; ++od)
      for (index_t oh = 0; oh < lv.axis[1].out; ++oh)
        for (index_t ow = 0; ow < lv.axis[2].out; ++ow)
          for (index_t b = 0; b < nb; ++b, ++s) {
            const T d = T(lv.axis[0].divisor[od] * lv.axis[1].divisor[oh] * lv.axis[2].divisor[ow]);
            V::store(coef[l] + s * V::N, V::div(io.get(lv.grad_y, od, oh, ow, b), V::set1(d)));
          }
  }
  for (index_t r = 0; r < su.rows; ++r) {
    const index_t d = r / su.H, h = r % su.H;
    for (index_t w = 0; w < su.W; ++w) {
      index_t k = 0;
      for (int l = 0; l < n_levels; ++l) {
        const BinLevel<T>& lv = levels[l];
        const index_t OH = lv.axis[1].out, OW = lv.axis[2].out;
        index_t* const* rg = range + l * 6;
        for (index_t od = rg[0][d]; od < rg[1][d]; ++od)
          for (index_t oh = rg[2][h]; oh < rg[3][h]; ++oh)
            for (index_t ow = rg[4][w]; ow < rg[5][w]; ++ow) cover[k++] = coef[l] + ((od * OH + oh) * OW + ow) * nb * V::N;
      }
      // pixel-major: the whole plane group when it fits (long runs for the transposes)
      T* dst = u.direct() ? gx + u.at(0, 0, r * su.W + w) : row_buf + ((su.whole ? r * su.W : 0) + w) * V::N;
      for (index_t b = 0; b < nb; ++b) {  // (a position no window covers gets 0)
        V acc = k ? V::load(cover[0] + b * V::N) : V::zero();
        for (index_t j = 1; j < k; ++j) acc = V::add(acc, V::load(cover[j] + b * V::N));
        V::store(dst + b * V::N, canonical_nan(acc));
      }
    }
    if (!u.direct() && !su.whole) u.store_pixels(gx, r * su.W, su.W, row_buf);
  }
  if (!u.direct() && su.whole) u.store_pixels(gx, 0, su.P, row_buf);
}

// Visits every output row (od, oh) of every level, its grad_y staged in io and the
// input rows of its bins in rows[0, nr): f(level, io, od, oh, nr, the D * H divisor).
template <class T, class F>
void each_grad_row(const BinProblem& pb, const Unit<T>& u, const BinLevel<T>* levels, int n_levels,
                   const Setup<T>& su, T* tile, index_t* rows, F&& f) {
  for (int l = 0; l < n_levels; ++l) {
    const BinLevel<T>& lv = levels[l];
    const LevelIO<T> io(pb, u, lv, tile, su.tile);
    io.load_all(lv.grad_y);
    for (index_t od = 0; od < lv.axis[0].out; ++od)
      for (index_t oh = 0; oh < lv.axis[1].out; ++oh)
        f(lv, io, od, oh, bin_rows(lv.axis, su.H, od, oh, rows), lv.axis[0].divisor[od] * lv.axis[1].divisor[oh]);
  }
}

template <class T>
index_t backward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp, const BinLevel<T>* levels,
                 int n_levels, T* gx, T* gp, int threads) {
  using V = Vec<T>;
  const Setup<T> su(pb, levels, n_levels, threads);
  const index_t n_units = Unit<T>::count(pb, su.nb);
  const PowKind kind = pow_kind_of(double(pp.p), pp.p_channel != nullptr);
  int ok = 1;
  index_t bad = -1;
  // avg: the gather form needs, per level and axis, the bins covering each position.
  // Dilated windows are not runs of positions: their avg backward scatters instead.
  bool runs = true;
  for (int l = 0; l < n_levels; ++l)
    for (int i = 0; i < 3; ++i) runs = runs && levels[l].axis[i].step == 1;
  const bool avg = op == BinReduce::avg && runs;
  std::size_t cover_bytes = Scratch::bytes<index_t*>(index_t(n_levels) * 6);
  for (int i = 0; i < 3; ++i) cover_bytes += std::size_t(n_levels) * 2 * Scratch::bytes<index_t>(pb.in[i]);
  Scratch cover(avg ? cover_bytes : 0);
  if (!cover.ok()) throw std::bad_alloc();
  index_t** range = avg ? cover.take<index_t*>(index_t(n_levels) * 6) : nullptr;  // [level][axis][lo, hi]
  std::size_t coef_bytes = Scratch::bytes<T*>(n_levels);
  index_t most_cover = 0;  // bins covering one pixel, at most
  if (avg) {
    for (int l = 0; l < n_levels; ++l) {
      coef_bytes += Scratch::bytes<T>(levels[l].bins() * su.nb * V::N);
      index_t c = 1;
      for (int i = 0; i < 3; ++i) {
        index_t** r = range + (l * 3 + i) * 2;
        r[0] = cover.take<index_t>(pb.in[i]);
        r[1] = cover.take<index_t>(pb.in[i]);
        covering_bins(levels[l].axis[i], r[0], r[1]);
        index_t m = 0;
        for (index_t x = 0; x < pb.in[i]; ++x) m = imax(m, r[1][x] - r[0][x]);
        c *= m;
      }
      most_cover += c;
    }
    coef_bytes += Scratch::bytes<const T*>(most_cover);
  }
  Scratch plan_mem(op == BinReduce::max ? PyramidPlan<T>::bytes(levels, n_levels) : 0);
  if (!plan_mem.ok()) throw std::bad_alloc();
  PyramidPlan<T> plan{};
  index_t kept_elems = 0;
  if (op == BinReduce::max) {  // both max paths visit the levels in the plan's order: the same sums
    plan.build(plan_mem, levels, n_levels);
    if (!levels[0].given_indices) kept_elems = plan.kept_bins(levels, n_levels) * 5 * su.nb * V::N;
  }
  parallel_for(n_units, threads, pb.size(), [&](index_t u0, index_t u1) {
    Scratch mem(su.scratch_bytes(5) + (avg ? coef_bytes : 0) + Scratch::bytes<T>(su.nb * V::N) +
                Scratch::bytes<T>(kept_elems) + su.dropout_bytes(op) + 128);
    if (!mem.ok()) return report_failure(ok);
    const typename Setup<T>::DropoutScratch ds = su.take_dropout(mem, op);
    T* copy = mem.take<T>(su.copy_elems());
    T* gcopy = mem.take<T>(su.copy_elems());
    index_t* rows = mem.take<index_t>(su.max_rows);
    const T** rp = mem.take<const T*>(su.max_rows);
    T** grp = mem.take<T*>(su.max_rows);
    T* a[5];
    for (T*& p : a) p = mem.take<T>(su.acc_elems());
    Exponents<T> ex{mem.take<T>(su.nb * V::N), mem.take<T>(su.nb * V::N), mem.take<T>(su.nb * V::N)};
    T* gp_acc = mem.take<T>(su.nb * V::N);
    T* tile = mem.take<T>(su.tile);
    T* kept = mem.take<T>(kept_elems / 5 * 4);
    T* gsum = mem.take<T>(kept_elems / 5);
    T** coef = avg ? mem.take<T*>(n_levels) : nullptr;
    const T** cover_at = avg ? mem.take<const T*>(most_cover) : nullptr;
    if (avg)
      for (int l = 0; l < n_levels; ++l) coef[l] = mem.take<T>(levels[l].bins() * su.nb * V::N);
    index_t my_bad = -1;
    for (index_t ui = u0; ui < u1; ++ui) {
      const Unit<T> u = Unit<T>::make(pb, su.nb, ui);
      const index_t nb = u.blocks;
      if (avg) {
        avg_backward_unit(pb, levels, n_levels, range, su, u, coef, tile, copy, cover_at, gx);
        continue;
      }
      // Gradients accumulate in rows the unit has zeroed (a whole-plane copy is
      // zeroed by GradRows itself and written back once).
      if (u.direct() || !su.whole || (op == BinReduce::max && levels[0].given_indices)) u.zero(gx, su.P);
      if (op == BinReduce::avg) {  // scatter form: each bin's grad / divisor added to its taps
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t dd) {
          const BinAxis& aw = lv.axis[2];
          for (index_t ow = 0; ow < aw.out; ++ow)
            for (index_t b = 0; b < nb; ++b)
              V::store(a[0] + (ow * nb + b) * V::N,
                       V::div(io.get(lv.grad_y, od, oh, ow, b), V::set1(T(dd * aw.divisor[ow]))));
          add_to_taps(dst, aw, rows, nr, nb, a[0]);
        });
        dst.flush();
        continue;
      }
      if (op == BinReduce::dropout) {  // max's routing, nothing where the winner was dropped
        Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
        KeepRows<T> keep(pp, u, su.rows, su.W, ds.keep, ds.keys, su.keep_whole(), true);
        MaskedRows<T, Rows<T>> masked{src, keep};
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t) {
          const BinAxis& aw = lv.axis[2];
          drop_max_bins<true>(masked, aw, rows, nr, nb, ds.rp, a[0], a[1], a[2], a[3]);
          for (index_t ow = 0; ow < aw.out; ++ow)
            for (index_t b = 0; b < nb; ++b) {
              const index_t slot = (ow * nb + b) * V::N;
              V::store(a[4] + slot, V::select(V::eq(V::load(a[3] + slot), V::zero()), V::zero(),
                                              io.get(lv.grad_y, od, oh, ow, b)));
            }
          route_bins(dst, aw, rows, nr, nb, grp, a[1], a[2], a[4]);
        });
        dst.flush();
        continue;
      }
      if (op == BinReduce::dropout_mean) {  // g p q^c_i to every tap
        Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        const V pv = V::set1(pp.keep), qv = V::set1(pp.p);
        const index_t nbn = nb * V::N;
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t) {
          const BinAxis& aw = lv.axis[2];
          tap_copy(src, aw, rows, nr, nb, su.max_taps, ds.taps);
          for (index_t ow = 0; ow < aw.out; ++ow) {
            const index_t n = nr * aw.count[ow];
            for (index_t b = 0; b < nb; ++b) {
              const index_t at = ow * su.max_taps * nbn + b * V::N;
              const V g = io.get(lv.grad_y, od, oh, ow, b);
              for (index_t i = 0; i < n; ++i)
                V::store(ds.terms + at + i * nbn, weighted(rank_weight(ds.taps + at, n, nbn, i, pv, qv), g));
            }
          }
          tap_copy(dst, aw, rows, nr, nb, su.max_taps, ds.terms);
        });
        dst.flush();
        continue;
      }
      if (op == BinReduce::max && levels[0].given_indices) {
        // given indices: each lane's gradient goes where its index says
        for (int oi = 0; oi < n_levels; ++oi) {
          const int l = plan.order[oi];
          const BinLevel<T>& lv = levels[l];
          const LevelIO<T> io(pb, u, lv, tile, su.tile);
          const LaneOffsets<T>& lo = io.offsets();
          io.load_all(lv.grad_y);
          // positions are reported from level 0's indices (the levels of a pyramid share one array)
          const index_t shift = index_t(reinterpret_cast<std::uintptr_t>(lv.given_indices) -
                                        reinterpret_cast<std::uintptr_t>(levels[0].given_indices)) /
                                index_t(sizeof(std::int64_t));
          for (index_t od = 0; od < lv.axis[0].out; ++od)
            for (index_t oh = 0; oh < lv.axis[1].out; ++oh)
              for (index_t ow = 0; ow < lv.axis[2].out; ++ow)
                for (index_t b = 0; b < nb; ++b) {
                  const index_t at = io.at(od, oh, ow, b);
                  alignas(64) T g[V::N];
                  V::store(g, io.get(lv.grad_y, od, oh, ow, b));
                  for (index_t i = 0; i < u.lanes; ++i) {
                    const index_t pos = lv.given_indices[lo.off[i] + at];
                    if (pos < 0 || pos >= su.P) {
                      const index_t where = shift + lo.off[i] + at;
                      if (my_bad < 0 || where < my_bad) my_bad = where;
                      continue;
                    }
                    gx[u.at(b, i, pos)] += g[i];
                  }
                }
        }
        continue;
      }
      if (op == BinReduce::max) {
        // Recomputed argmax: root levels from the taps, coarser pyramid levels merged
        // from finer ones, each merged gradient pushed down to the root bin that won;
        // then every gradient is routed to its argmax by compare over the taps.
        Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        const index_t vb = nb * V::N;  // kept per (bin, block): v, r, w, root bin; gsum: the routed gradient
        auto kept_at = [&](int l, index_t bin, index_t b) { return kept + (plan.offset[l] * 4 * nb + (bin * nb + b) * 4) * V::N; };
        auto gsum_at = [&](int l, index_t bin, index_t b) { return gsum + (plan.offset[l] + bin) * vb + b * V::N; };
        for (int oi = 0; oi < n_levels; ++oi) {
          const int l = plan.order[oi];
          const BinLevel<T>& lv = levels[l];
          const BinAxis& aw = lv.axis[2];
          const LevelIO<T> io(pb, u, lv, tile, su.tile);
          io.load_all(lv.grad_y);
          const index_t OH = lv.axis[1].out, OW = aw.out;
          if (plan.source[l] < 0) {
            for (index_t od = 0; od < lv.axis[0].out; ++od)
              for (index_t oh = 0; oh < OH; ++oh) {
                const index_t nr = bin_rows(lv.axis, su.H, od, oh, rows);
                max_bins<T, true>(src, aw, rows, nr, nb, rp, a[0], a[1], a[2]);
                for (index_t ow = 0; ow < OW; ++ow)
                  for (index_t b = 0; b < nb; ++b) {
                    const index_t at = (ow * nb + b) * V::N, bin = (od * OH + oh) * OW + ow;
                    const V g = io.get(lv.grad_y, od, oh, ow, b);
                    if (!plan.keep[l]) {
                      V::store(a[3] + at, g);
                      continue;
                    }
                    T* k4 = kept_at(l, bin, b);
                    V::store(k4, V::load(a[0] + at));
                    V::store(k4 + V::N, V::load(a[1] + at));
                    V::store(k4 + 2 * V::N, V::load(a[2] + at));
                    V::store(k4 + 3 * V::N, V::set1(T(bin)));
                    V::store(gsum_at(l, bin, b), g);
                  }
                if (!plan.keep[l]) route_bins(dst, aw, rows, nr, nb, grp, a[1], a[2], a[3]);
              }
            continue;
          }
          const int f = plan.source[l], root = plan.root[l];
          const index_t FH = levels[f].axis[1].out, FW = levels[f].axis[2].out;
          const index_t RH = levels[root].axis[1].out, RW = levels[root].axis[2].out;
          index_t* const* rg = plan.range + l * 6;
          index_t* const* rr = plan.root_range + l * 6;
          for (index_t od = 0; od < lv.axis[0].out; ++od)
            for (index_t oh = 0; oh < OH; ++oh)
              for (index_t ow = 0; ow < OW; ++ow)
                for (index_t b = 0; b < nb; ++b) {
                  V v = V::zero(), r = V::zero(), w = V::zero(), s = V::zero();
                  bool first = true;
                  for (index_t fd = rg[0][od]; fd < rg[1][od]; ++fd)
                    for (index_t fh = rg[2][oh]; fh < rg[3][oh]; ++fh)
                      for (index_t fw = rg[4][ow]; fw < rg[5][ow]; ++fw) {
                        const T* k4 = kept_at(f, (fd * FH + fh) * FW + fw, b);
                        const V v2 = V::load(k4), r2 = V::load(k4 + V::N), w2 = V::load(k4 + 2 * V::N);
                        const V s2 = V::load(k4 + 3 * V::N);
                        if (first) {
                          v = v2;
                          r = r2;
                          w = w2;
                          s = s2;
                          first = false;
                        } else {
                          merge_max(v, r, w, s, v2, r2, w2, s2);
                        }
                      }
                  if (plan.keep[l]) {
                    T* k4 = kept_at(l, (od * OH + oh) * OW + ow, b);
                    V::store(k4, v);
                    V::store(k4 + V::N, r);
                    V::store(k4 + 2 * V::N, w);
                    V::store(k4 + 3 * V::N, s);
                  }
                  // push the gradient down to the root bin holding the argmax
                  const V g = io.get(lv.grad_y, od, oh, ow, b);
                  for (index_t rd = rr[0][od]; rd < rr[1][od]; ++rd)
                    for (index_t rh = rr[2][oh]; rh < rr[3][oh]; ++rh)
                      for (index_t rw = rr[4][ow]; rw < rr[5][ow]; ++rw) {
                        const index_t bin = (rd * RH + rh) * RW + rw;
                        T* gs = gsum_at(root, bin, b);
                        V::store(gs, V::add(V::load(gs), V::select(V::eq(s, V::set1(T(bin))), g, V::zero())));
                      }
                }
        }
        for (int l = 0; l < n_levels; ++l) {  // route the root levels' summed gradients
          if (plan.source[l] >= 0 || !plan.keep[l]) continue;
          const BinLevel<T>& lv = levels[l];
          const BinAxis& aw = lv.axis[2];
          const index_t OH = lv.axis[1].out, OW = aw.out;
          for (index_t od = 0; od < lv.axis[0].out; ++od)
            for (index_t oh = 0; oh < OH; ++oh) {
              const index_t nr = bin_rows(lv.axis, su.H, od, oh, rows);
              for (index_t ow = 0; ow < OW; ++ow)
                for (index_t b = 0; b < nb; ++b) {
                  const index_t at = (ow * nb + b) * V::N, bin = (od * OH + oh) * OW + ow;
                  const T* k4 = kept_at(l, bin, b);
                  V::store(a[1] + at, V::load(k4 + V::N));
                  V::store(a[2] + at, V::load(k4 + 2 * V::N));
                  V::store(a[3] + at, V::load(gsum_at(l, bin, b)));
                }
              route_bins(dst, aw, rows, nr, nb, grp, a[1], a[2], a[3]);
            }
        }
        dst.flush();
        continue;
      }
      if (op == BinReduce::mixed) {
        // alpha g to each bin's argmax (max pooling's rule), (1 - alpha) g / divisor to
        // each of its taps; dL/dalpha = g (max - avg)
        ex.fill(pb, u, pp);
        for (index_t b = 0; b < nb; ++b) V::store(gp_acc + b * V::N, V::zero());
        Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        const V one = V::set1(T(1));
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t dd) {
          const BinAxis& aw = lv.axis[2];
          max_bins<T, true>(src, aw, rows, nr, nb, rp, a[0], a[1], a[2]);
          sum_bins<false>(src, aw, rows, nr, nb, rp, a[3], a[4], [](V v, index_t) { return Pair<V>{v, v}; });
          for (index_t ow = 0; ow < aw.out; ++ow)
            for (index_t b = 0; b < nb; ++b) {
              const index_t slot = (ow * nb + b) * V::N;
              const V g = io.get(lv.grad_y, od, oh, ow, b), al = V::load(ex.p + b * V::N);
              const V dv = V::set1(T(dd * aw.divisor[ow]));
              const V avg = V::div(V::load(a[3] + slot), dv);
              V::store(gp_acc + b * V::N,
                       V::add(V::load(gp_acc + b * V::N), V::mul(g, V::sub(V::load(a[0] + slot), avg))));
              V::store(a[4] + slot, V::mul(al, g));
              V::store(a[3] + slot, V::div(V::mul(V::sub(one, al), g), dv));
            }
          route_bins(dst, aw, rows, nr, nb, grp, a[1], a[2], a[4]);
          add_to_taps(dst, aw, rows, nr, nb, a[3]);
        });
        dst.flush();
        if (gp)
          for (index_t b = 0; b < nb; ++b)
            for (index_t i = 0; i < u.lanes; ++i) gp[u.plane0 + b * V::N + i] = gp_acc[b * V::N + i];
        continue;
      }
      if (op == BinReduce::stochastic_mean) {
        // y = Q / S (Q = sum x^2, S = sum x): dy/dx = (2x - y) / S; a bin of zeros passes nothing
        Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
        GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
        typename V::M nonweight = V::lt(V::zero(), V::zero());
        const V zero = V::zero();
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t) {
          const BinAxis& aw = lv.axis[2];
          sum_bins<true>(src, aw, rows, nr, nb, rp, a[0], a[1], [&](V v, index_t) {
            nonweight = V::m_or(nonweight, V::m_not(is_weight(v)));
            return Pair<V>{v, V::mul(v, v)};
          });
          for (index_t ow = 0; ow < aw.out; ++ow)
            for (index_t b = 0; b < nb; ++b) {
              const index_t slot = (ow * nb + b) * V::N;
              const V s = V::load(a[0] + slot);
              const auto none = V::eq(s, zero);
              V::store(a[2] + slot, V::select(none, zero, V::div(V::load(a[1] + slot), s)));
              V::store(a[3] + slot, V::select(none, zero, V::div(io.get(lv.grad_y, od, oh, ow, b), s)));
            }
          add_to_taps_of(src, dst, aw, rows, nr, nb, [&](V v, index_t slot) {
            return V::mul(V::load(a[3] + slot), V::sub(V::add(v, v), V::load(a[2] + slot)));
          });
        });
        dst.flush();
        if (V::any(nonweight)) {
          alignas(64) T f[V::N];
          V::store(f, V::select(nonweight, V::set1(T(1)), zero));
          for (index_t i = 0; i < u.lanes; ++i)
            if (f[i] != T(0)) my_bad = 0;
        }
        continue;
      }
      // LP / GeM / SoftPool: per output row, passes over its bins for the maximum, the
      // sums and the gradients.
      const bool gem = op == BinReduce::gem, soft = op == BinReduce::soft;
      const Magnitude<T> mag{gem, V::set1(pp.eps)};
      ex.fill(pb, u, pp);
      for (index_t b = 0; b < nb; ++b) V::store(gp_acc + b * V::N, V::zero());
      Rows<T> src(x, u, su.rows, su.W, copy, su.whole);
      GradRows<T> dst(gx, u, su.rows, su.W, gcopy, su.whole);
      with_pow_kind(kind, [&](auto K) {
        constexpr int k = decltype(K)::value;
        const bool scaled = k != 1 || soft;
        const V zero = V::zero();
        T *m = a[0], *s = a[1], *sl = a[2], *yv = a[3], *cf = a[4];
        each_grad_row(pb, u, levels, n_levels, su, tile, rows,
                      [&](const BinLevel<T>& lv, const LevelIO<T>& io, index_t od, index_t oh, index_t nr, index_t dd) {
          const BinAxis& aw = lv.axis[2];
          if (soft) max_of_bins(src, aw, rows, nr, nb, rp, m, [](V v) { return v; });
          else if (scaled) max_of_bins(src, aw, rows, nr, nb, rp, m, mag);
          auto ratio = [&](V v, index_t slot) {
            const V t = mag(v);
            return scaled ? V::div(t, V::load(m + slot * V::N)) : t;
          };
          auto pw = [&](V r, index_t slot) { return pow_p<V, k>(r, V::load(ex.p + (slot % nb) * V::N)); };
          if (soft) {  // S0 = sum e, S1 = sum e x
            sum_bins<true>(src, aw, rows, nr, nb, rp, s, sl,
                           [&](V v, index_t slot) { return soft_terms(v, V::load(m + slot * V::N)); });
          } else if (gem && gp) {  // S and S_ln in one pass
            sum_bins<true>(src, aw, rows, nr, nb, rp, s, sl, [&](V v, index_t slot) {
              const V r = ratio(v, slot), q = pw(r, slot);
              return Pair<V>{q, V::mul(q, vlog(r))};
            });
          } else {
            sum_bins<false>(src, aw, rows, nr, nb, rp, s, sl, [&](V v, index_t slot) {
              const V q = pw(ratio(v, slot), slot);
              return Pair<V>{q, q};
            });
          }
          for (index_t ow = 0; ow < aw.out; ++ow)
            for (index_t b = 0; b < nb; ++b) {
              const index_t slot = (ow * nb + b) * V::N;
              const V g = io.get(lv.grad_y, od, oh, ow, b);
              if (soft) {  // dy/dx = e / S0 (1 + x - y); nothing flows through an infinite maximum
                const V mv = V::load(m + slot), s0 = V::load(s + slot);
                V::store(yv + slot, soft_offset(s0, V::load(sl + slot)));  // y - m
                V::store(cf + slot, V::select(V::eq(V::abs(mv), V::set1(T(__builtin_inf()))), zero, V::div(g, s0)));
                continue;
              }
              const V dv = V::set1(T(gem ? dd * aw.divisor[ow] : 1));
              const V sv = V::load(s + slot);
              const V mean = V::div(sv, dv);
              const V pv = V::load(ex.p + b * V::N);
              const V y = k == 1 ? mean : power_result(V::load(m + slot), mean, V::load(ex.inv_p + b * V::N), scaled);
              V::store(yv + slot, y);
              // gradient factor g/D, zero where y = 0 (LP: every tap was 0)
              V::store(cf + slot, V::select(V::eq(y, zero), zero, V::div(g, dv)));
              if (gem && gp) {
                // dy/dp = y (S_ln / (p S) - ln(S/D) / p^2), S and S_ln relative to the bin max
                const V t1 = V::div(V::load(sl + slot), V::mul(pv, sv));
                const V t2 = V::div(vlog(mean), V::mul(pv, pv));
                V::store(gp_acc + b * V::N,
                         V::add(V::load(gp_acc + b * V::N), V::mul(g, V::mul(y, V::sub(t1, t2)))));
              }
            }
          const index_t ps = src.ps(), gps = dst.ps();
          for (index_t kk = 0; kk < nr; ++kk) {
            const T* row = src.get(rows[kk]);
            T* grow = dst.get(rows[kk]);
            for (index_t ow = 0; ow < aw.out; ++ow) {
              const T* p = row + aw.first[ow] * ps;
              T* q = grow + aw.first[ow] * gps;
              for (index_t j = 0; j < aw.count[ow]; ++j)
                for (index_t b = 0; b < nb; ++b) {
                  const index_t slot = (ow * nb + b) * V::N;
                  const V v = V::load(p + j * aw.step * ps + b * V::N);
                  T* qj = q + j * aw.step * gps + b * V::N;
                  if (soft) {
                    const V mv = V::load(m + slot), xm = V::sub(v, mv), e = vexp(xm);
                    // 1 + x - y = 1 + (x - m) - (y - m): no overflow near the largest values
                    const V d = V::mul(V::mul(V::load(cf + slot), e), V::sub(V::add(V::set1(T(1)), xm), V::load(yv + slot)));
                    const typename V::M none = V::m_or(V::eq(e, zero), V::eq(V::abs(mv), V::set1(T(__builtin_inf()))));
                    V::store(qj, V::add(V::load(qj), V::select(none, zero, d)));
                    continue;
                  }
                  const V r = V::div(mag(v), V::load(yv + slot));
                  V f = V::mul(V::load(cf + slot), pow_p_minus_1<V, k>(r, V::load(ex.pm1 + b * V::N)));
                  if (gem)
                    f = V::select(V::gt(v, mag.eps), f, zero);
                  else
                    f = V::select(V::eq(v, zero), zero, V::select(V::lt(v, zero), V::sub(zero, f), f));
                  V::store(qj, V::add(V::load(qj), f));
                }
            }
          }
        });
      });
      dst.flush();
      if (gem && gp)
        for (index_t b = 0; b < nb; ++b)
          for (index_t i = 0; i < u.lanes; ++i) gp[u.plane0 + b * V::N + i] = gp_acc[b * V::N + i];
    }
    report_bad_index(bad, my_bad);
  });
  if (!ok) throw std::bad_alloc();
  return bad;
}

}  // namespace bins
