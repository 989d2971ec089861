// Running maxima along lines (the rows or columns of 2-D planes): CornerNet's
// directional pools and CenterNet's whole-line maxima, forward and backward,
// written once over a vector type.
//
// A work unit is a set of lanes that scan the same positions. Lanes adjacent in
// memory (a channels_first plane scanned along H: the columns of a row; a
// channels_last plane: the W*C elements of a row, or the C of a pixel) are scanned
// in place. The rows of a channels_first plane scanned along W go, N rows at a
// time, through a position-major copy made by N x N block transposes, and are
// then scanned by the same loop.
//
// The backward keeps no index per output: along a line scanned from its far edge,
// position r supplies the maximum of every position from r back to the previous
// "record" (an element strictly greater than everything farther out). So one pass
// from the far edge marks the records, and one pass back from the near edge sums
// the gradient since the last record into each record: every element of grad_x
// is written once, in order.
// Included inside an ISA namespace after common-inl.hpp and bins-inl.hpp.

namespace lines {

// Flags of a backward unit (one per position and lane) fit this.
constexpr std::size_t kFlagBytes = std::size_t(256) << 10;
// Lanes of a forward unit scanned in place: the running maxima stay in L1.
constexpr index_t kForwardLanes = 2048;

template <class T>
inline Vec<T> load_lanes(const T* p, index_t n) {
  return n == Vec<T>::N ? Vec<T>::load(p) : Vec<T>::load_n(p, n);
}
template <class T>
inline void store_lanes(T* p, Vec<T> v, index_t n) {
  if (n == Vec<T>::N) Vec<T>::store(p, v); else Vec<T>::store_n(p, v, n);
}

// How a problem splits into units: groups of lanes that share an element layout,
// cut into units of at most `unit_lanes` lanes.
struct Plan {
  index_t L = 1;             // positions along a line
  index_t step = 1;          // element distance between consecutive positions
  index_t lane_stride = 1;   // 1: lanes adjacent (in place); W: rows of a plane
  index_t groups = 1, group_lanes = 1, group_stride = 0;
  index_t unit_lanes = 1, per_group = 1;

  Plan(const LineProblem& lp, index_t N, index_t lanes_in_place) {
    const index_t H = lp.height, W = lp.width, C = lp.channels, planes = lp.batch * C;
    L = lp.length();
    if (!lp.channels_last) {
      groups = planes;
      group_stride = H * W;
      if (lp.axis == 0) {  // columns of a plane: the lanes are a row's W elements
        step = W;
        group_lanes = W;
      } else {  // rows of a plane: N rows at a time, transposed
        step = 1;
        lane_stride = W;
        group_lanes = H;
      }
    } else if (lp.axis == 0) {  // columns: a row's W*C elements are the lanes
      groups = lp.batch;
      group_stride = H * W * C;
      step = W * C;
      group_lanes = W * C;
    } else {  // rows: a pixel's C elements are the lanes
      groups = lp.batch * H;
      group_stride = W * C;
      step = C;
      group_lanes = C;
    }
    unit_lanes = lane_stride == 1 ? imin(group_lanes, imax(N, lanes_in_place / N * N)) : N;
    per_group = (group_lanes + unit_lanes - 1) / unit_lanes;
  }
  index_t units() const { return groups * per_group; }
  bool in_place() const { return lane_stride == 1; }
  // First element and lane count of unit u.
  void unit(index_t u, index_t& base, index_t& lanes) const {
    const index_t g = u / per_group, l0 = (u % per_group) * unit_lanes;
    base = g * group_stride + l0 * lane_stride;
    lanes = imin(unit_lanes, group_lanes - l0);
  }
};

// Rows [0, lanes) of a plane (row r, column q at src + r*ls + q) into a
// position-major buffer (position q, lane r at dst + q*N + r), L positions;
// lanes past `lanes` are zero.
template <class T>
void stage_in(const T* src, index_t ls, index_t lanes, index_t L, T* dst) {
  using V = Vec<T>;
  index_t q = 0;
  if (lanes == V::N)
    for (; q + V::N <= L; q += V::N) V::transpose_block(src + q, ls, dst + q * V::N, V::N);
  for (; q < L; ++q)
    for (index_t r = 0; r < V::N; ++r) dst[q * V::N + r] = r < lanes ? src[r * ls + q] : T(0);
}

// The inverse of stage_in for the first `lanes` lanes.
template <class T>
void stage_out(const T* src, index_t lanes, index_t L, T* dst, index_t ls) {
  using V = Vec<T>;
  index_t q = 0;
  if (lanes == V::N)
    for (; q + V::N <= L; q += V::N) V::transpose_block(src + q * V::N, V::N, dst + q, ls);
  for (; q < L; ++q)
    for (index_t r = 0; r < lanes; ++r) dst[r * ls + q] = src[q * V::N + r];
}

// Position of the k-th element in scan order: from the far edge of the maxima
// (a whole line is scanned from its end).
inline index_t scan_pos(LineScan s, index_t L, index_t k) { return s == LineScan::from_start ? k : L - 1 - k; }

// The hardware prefetcher does not follow a line walked towards lower addresses
// (3-4x slower than the other way on Zen 3), nor short runs of lanes far apart:
// then fetch the lanes of the position kAhead steps further along the walk.
constexpr index_t kAhead = 8;
struct Walk {
  bool prefetch;  // whether to
  bool down;      // towards lower addresses
  index_t L;
  Walk(bool down_, index_t L_, index_t step, index_t lanes) : prefetch(down_ || step > lanes), down(down_), L(L_) {}
  index_t ahead(index_t pos) const { return down ? imax(pos - kAhead, 0) : imin(pos + kAhead, L - 1); }
};

// (Clamped to the line rather than skipped at its end: GCC 12 drops the prefetch
// loop altogether when this function returns early.)
template <class T>
inline void prefetch_lanes(const T* base, index_t pos, index_t step, index_t lanes, bool write) {
  const char* p = reinterpret_cast<const char*>(base + pos * step);
  const index_t bytes = lanes * index_t(sizeof(T));
  if (write)
    for (index_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 1, 1);
  else
    for (index_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 1);
}

template <class T>
inline Vec<T> plus(Vec<T> v, const T* add, index_t n) {
  return add ? bins::canonical_nan(Vec<T>::add(v, load_lanes(add, n))) : v;
}

// y = maxima of x + add over `lanes` adjacent lanes, positions `step` apart.
// run: scratch of lanes (rounded up to N) elements.
template <class T>
void forward_lanes(const T* x, const T* add, T* y, index_t L, index_t step, index_t lanes, LineScan s, T* run) {
  using V = Vec<T>;
  const bool whole = s == LineScan::whole;
  const Walk walk(s != LineScan::from_start, L, step, lanes);
  for (index_t k = 0; k < L; ++k) {
    const index_t pos = scan_pos(s, L, k), off = pos * step;
    if (walk.prefetch) {
      const index_t next = walk.ahead(pos);
      prefetch_lanes(x, next, step, lanes, false);
      if (add) prefetch_lanes(add, next, step, lanes, false);
      if (!whole) prefetch_lanes(y, next, step, lanes, true);
    }
    for (index_t i = 0; i < lanes; i += V::N) {
      const index_t n = imin(V::N, lanes - i);
      V v = load_lanes(x + off + i, n);
      if (k) v = V::max_nan(V::load(run + i), v);
      V::store(run + i, v);
      if (!whole) store_lanes(y + off + i, plus(v, add ? add + off + i : nullptr, n), n);
    }
  }
  if (whole)
    for (index_t q = 0; q < L; ++q)
      for (index_t i = 0; i < lanes; i += V::N) {
        const index_t n = imin(V::N, lanes - i);
        store_lanes(y + q * step + i, plus(V::load(run + i), add ? add + q * step + i : nullptr, n), n);
      }
}

// grad_x of forward_lanes. Scratch: run and acc of lanes (rounded up to N)
// elements, flag of L times that.
template <class T>
void backward_lanes(const T* gy, const T* x, const T* add, T* gx, index_t L, index_t step, index_t lanes,
                    LineScan s, T* run, T* acc, T* flag) {
  using V = Vec<T>;
  const bool whole = s == LineScan::whole;
  const index_t lp = (lanes + V::N - 1) / V::N * V::N;
  const V one = V::set1(T(1)), zero = V::zero();
  // From the far edge: which positions are records (NaN beats every number; the
  // first NaN found stays the maximum). A whole line also sums its gradient.
  const Walk out(s != LineScan::from_start, L, step, lanes), back(!out.down, L, step, lanes);
  for (index_t k = 0; k < L; ++k) {
    const index_t pos = scan_pos(s, L, k), off = pos * step;
    if (out.prefetch) {
      prefetch_lanes(x, out.ahead(pos), step, lanes, false);
      if (whole) prefetch_lanes(gy, out.ahead(pos), step, lanes, false);
    }
    for (index_t i = 0; i < lanes; i += V::N) {
      const index_t n = imin(V::N, lanes - i);
      const V v = load_lanes(x + off + i, n);
      V rec = one;
      if (k) {
        const V r = V::load(run + i);
        const typename V::M m = V::m_or(V::gt(v, r), V::m_and(V::is_nan(v), V::m_not(V::is_nan(r))));
        V::store(run + i, V::select(m, v, r));
        rec = V::select(m, one, zero);
      } else {
        V::store(run + i, v);
      }
      V::store(flag + k * lp + i, rec);
      if (whole) {
        const V g = load_lanes(gy + off + i, n);
        V::store(acc + i, k ? V::add(V::load(acc + i), g) : g);
      }
    }
  }
  if (whole)  // the first record from the start takes the whole sum (run: taken yet)
    for (index_t i = 0; i < lp; i += V::N) V::store(run + i, zero);
  else
    for (index_t i = 0; i < lp; i += V::N) V::store(acc + i, zero);
  // Back from the near edge: a record takes the gradient summed since the last one.
  for (index_t k = L - 1; k >= 0; --k) {
    const index_t pos = scan_pos(s, L, k), off = pos * step;
    if (back.prefetch) {
      const index_t next = back.ahead(pos);
      if (!whole) prefetch_lanes(gy, next, step, lanes, false);
      if (add) prefetch_lanes(add, next, step, lanes, false);
      prefetch_lanes(gx, next, step, lanes, true);
    }
    for (index_t i = 0; i < lanes; i += V::N) {
      const index_t n = imin(V::N, lanes - i);
      const typename V::M rec = V::eq(V::load(flag + k * lp + i), one);
      V out;
      if (whole) {
        const V taken = V::load(run + i);
        const typename V::M hit = V::m_and(rec, V::m_not(V::eq(taken, one)));
        out = V::select(hit, V::load(acc + i), zero);
        V::store(run + i, V::select(hit, one, taken));
      } else {
        const V a = V::add(V::load(acc + i), load_lanes(gy + off + i, n));
        out = V::select(rec, a, zero);
        V::store(acc + i, V::select(rec, zero, a));
      }
      out = bins::canonical_nan(out);
      store_lanes(gx + off + i, plus(out, add ? add + off + i : nullptr, n), n);
    }
  }
}

template <class T>
void forward(const T* x, const T* add, T* y, const LineProblem& lp, int threads) {
  using V = Vec<T>;
  const Plan pl(lp, V::N, kForwardLanes);
  const index_t L = pl.L;
  int ok = 1;
  parallel_for(pl.units(), threads, lp.size(), [&](index_t u0, index_t u1) {
    const index_t staged = pl.in_place() ? 0 : L * V::N;
    Scratch mem(Scratch::bytes<T>(pl.unit_lanes + V::N) + 3 * Scratch::bytes<T>(staged));
    if (!mem.ok()) return report_failure(ok);
    T* run = mem.take<T>(pl.unit_lanes + V::N);
    T* bx = mem.take<T>(staged);
    T* ba = mem.take<T>(staged);
    T* by = mem.take<T>(staged);
    for (index_t u = u0; u < u1; ++u) {
      index_t base, lanes;
      pl.unit(u, base, lanes);
      if (pl.in_place()) {
        forward_lanes(x + base, add ? add + base : nullptr, y + base, L, pl.step, lanes, lp.scan, run);
        continue;
      }
      stage_in(x + base, pl.lane_stride, lanes, L, bx);
      if (add) stage_in(add + base, pl.lane_stride, lanes, L, ba);
      forward_lanes(bx, add ? ba : nullptr, by, L, index_t(V::N), index_t(V::N), lp.scan, run);
      stage_out(by, lanes, L, y + base, pl.lane_stride);
    }
  });
  if (!ok) throw std::bad_alloc();
}

template <class T>
void backward(const T* gy, const T* x, const T* add, T* gx, const LineProblem& lp, int threads) {
  using V = Vec<T>;
  const Plan pl(lp, V::N, index_t(kFlagBytes / sizeof(T)) / imax(lp.length(), 1));
  const index_t L = pl.L, lanes_p = (pl.unit_lanes + V::N - 1) / V::N * V::N;
  int ok = 1;
  parallel_for(pl.units(), threads, 2 * lp.size(), [&](index_t u0, index_t u1) {
    const index_t staged = pl.in_place() ? 0 : L * V::N;
    Scratch mem(2 * Scratch::bytes<T>(lanes_p) + Scratch::bytes<T>(L * lanes_p) + 4 * Scratch::bytes<T>(staged));
    if (!mem.ok()) return report_failure(ok);
    T* run = mem.take<T>(lanes_p);
    T* acc = mem.take<T>(lanes_p);
    T* flag = mem.take<T>(L * lanes_p);
    T* bx = mem.take<T>(staged);
    T* bg = mem.take<T>(staged);
    T* ba = mem.take<T>(staged);
    T* bo = mem.take<T>(staged);
    for (index_t u = u0; u < u1; ++u) {
      index_t base, lanes;
      pl.unit(u, base, lanes);
      if (pl.in_place()) {
        backward_lanes(gy + base, x + base, add ? add + base : nullptr, gx + base, L, pl.step, lanes, lp.scan, run,
                       acc, flag);
        continue;
      }
      stage_in(x + base, pl.lane_stride, lanes, L, bx);
      stage_in(gy + base, pl.lane_stride, lanes, L, bg);
      if (add) stage_in(add + base, pl.lane_stride, lanes, L, ba);
      backward_lanes(bg, bx, add ? ba : nullptr, bo, L, index_t(V::N), index_t(V::N), lp.scan, run, acc, flag);
      stage_out(bo, lanes, L, gx + base, pl.lane_stride);
    }
  });
  if (!ok) throw std::bad_alloc();
}

// Center pooling's forward, y = (column maxima of x) + (row maxima of x2), in one
// read of the inputs and one write of y: the maxima go to small buffers first,
// instead of two full passes of whole-line maxima (each writing a plane).

// The channel block of a channels_last sample keeps its maxima within this.
constexpr std::size_t kCenterBytes = std::size_t(256) << 10;

// Among equal maxima the last one wins (as the backward routes a whole line's
// gradient to its last maximum), which only shows in the sign of a zero; NaN wins.
template <class T>
inline T later_max(T m, T v) { return m > v || m != m ? m : v; }
template <class T>
inline Vec<T> later_max(Vec<T> m, Vec<T> v) { return Vec<T>::max_nan(v, m); }

// One channels_first plane (H x W, rows contiguous). col: W elements (rounded up to
// N), row: H. Full vectors only, the last one overlapping: a maximum does not mind
// seeing an element twice.
template <class T>
void center_plane(const T* x, const T* x2, T* y, index_t H, index_t W, T* col, T* row) {
  using V = Vec<T>;
  using S = Scalar<T>;
  const bool vec = W >= V::N;
  for (index_t i = 0; i < H; ++i) {
    const T* xr = x + i * W;
    const T* x2r = x2 + i * W;
    if (!vec) {
      T m = x2r[0];
      for (index_t j = 0; j < W; ++j) {
        col[j] = i ? later_max(col[j], xr[j]) : xr[j];
        m = later_max(m, x2r[j]);
      }
      row[i] = m;
      continue;
    }
    V acc = V::load(x2r);
    for (index_t j = 0;; j += V::N) {
      j = imin(j, W - V::N);
      const V v = V::load(xr + j);
      V::store(col + j, i ? later_max(V::load(col + j), v) : v);
      acc = V::max_nan(acc, x2 == x ? v : V::load(x2r + j));
      if (j == W - V::N) break;
    }
    alignas(64) T lanes[V::N];
    V::store(lanes, acc);
    T m = lanes[0];
    for (index_t k = 1; k < V::N; ++k) m = later_max(m, lanes[k]);
    if (m == T(0))  // the lanes do not know which zero came last
      for (index_t j = W - 1;; --j)
        if (x2r[j] == T(0)) {
          m = x2r[j];
          break;
        }
    row[i] = m;
  }
  for (index_t i = 0; i < H; ++i) {
    T* yr = y + i * W;
    if (!vec) {
      for (index_t j = 0; j < W; ++j) S::store(yr + j, bins::canonical_nan(S::add(S::set1(col[j]), S::set1(row[i]))));
      continue;
    }
    const V r = V::set1(row[i]);
    for (index_t j = 0;; j += V::N) {
      j = imin(j, W - V::N);
      V::store(yr + j, bins::canonical_nan(V::add(V::load(col + j), r)));
      if (j == W - V::N) break;
    }
  }
}

// Channels [0, lanes) of one channels_last sample (H x W pixels, C apart). col: W
// times lp elements, row: H times lp, lp = lanes rounded up to N.
template <class T>
void center_pixels(const T* x, const T* x2, T* y, index_t H, index_t W, index_t C, index_t lanes, T* col, T* row) {
  using V = Vec<T>;
  const index_t lp = (lanes + V::N - 1) / V::N * V::N;
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < W; ++j) {
      const index_t off = (i * W + j) * C;
      T* cj = col + j * lp;
      T* ri = row + i * lp;
      for (index_t c = 0; c < lanes; c += V::N) {
        const index_t n = imin(V::N, lanes - c);
        const V v = load_lanes(x + off + c, n);
        V::store(cj + c, i ? later_max(V::load(cj + c), v) : v);
        const V w = x2 == x ? v : load_lanes(x2 + off + c, n);
        V::store(ri + c, j ? later_max(V::load(ri + c), w) : w);
      }
    }
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < W; ++j) {
      const index_t off = (i * W + j) * C;
      for (index_t c = 0; c < lanes; c += V::N)
        store_lanes(y + off + c, bins::canonical_nan(V::add(V::load(col + j * lp + c), V::load(row + i * lp + c))),
                    imin(V::N, lanes - c));
    }
}

// lp.axis and lp.scan are not used.
template <class T>
void center_forward(const T* x, const T* x2, T* y, const LineProblem& lp, int threads) {
  using V = Vec<T>;
  const index_t H = lp.height, W = lp.width, C = lp.channels;
  // channels_last: samples cut into channel blocks, enough for every thread, each
  // small enough that its maxima stay in L2.
  index_t block = C;
  if (lp.channels_last) {
    const index_t want = imax(1, (2 * index_t(threads) + lp.batch - 1) / lp.batch);
    const index_t cap = imax(V::N, index_t(kCenterBytes / sizeof(T)) / (H + W) / V::N * V::N);
    block = imin(C, imax(V::N, ((C + want - 1) / want + V::N - 1) / V::N * V::N));
    block = imin(block, cap);
  }
  const index_t per = (C + block - 1) / block;
  const index_t units = lp.channels_last ? lp.batch * per : lp.batch * C;
  const index_t bp = (block + V::N - 1) / V::N * V::N;
  const index_t col_n = lp.channels_last ? W * bp : W + V::N, row_n = lp.channels_last ? H * bp : H;
  int ok = 1;
  parallel_for(units, threads, lp.size(), [&](index_t u0, index_t u1) {
    Scratch mem(Scratch::bytes<T>(col_n) + Scratch::bytes<T>(row_n));
    if (!mem.ok()) return report_failure(ok);
    T* col = mem.take<T>(col_n);
    T* row = mem.take<T>(row_n);
    for (index_t u = u0; u < u1; ++u) {
      if (!lp.channels_last) {
        const index_t base = u * H * W;
        center_plane(x + base, x2 + base, y + base, H, W, col, row);
        continue;
      }
      const index_t c0 = (u % per) * block, base = (u / per) * H * W * C + c0;
      center_pixels(x + base, x2 + base, y + base, H, W, C, imin(block, C - c0), col, row);
    }
  });
  if (!ok) throw std::bad_alloc();
}

}  // namespace lines
