// The channels-first driver: pooling = a horizontal pass over each input row of
// the window (along W, vectorized across output columns) and a vertical fold of
// those rows (along D and H). Horizontal results are cached per input row, so an
// input row shared by two output rows is reduced once. Op supplies both passes:
//   op.hpass(row, c0, c1, val, tap, pad)  reduce row for output columns [c0, c1)
//   op.fold(acc_val, acc_tap, acc_row, val, tap, r, n)   fold row number r in
// Every pass stores whole vectors at the same offsets (c0 + multiples of the
// width), so each reload is forwarded from one store.
// Included inside an ISA namespace.

// Elements of a padded copy of the input positions one chunk of windows reads, or
// 0 where strides or dilations make it too long to be worth it.
inline index_t padded_row_capacity(const AxisGeometry& a, index_t chunk) {
  const index_t n = (chunk + kRowSlack) * a.stride + (a.kernel - 1) * a.dilation + 2;
  return n <= (index_t(1) << 20) ? n : 0;
}

// buf[i] = row[lo + i] for i < n, the identity where lo + i is outside [0, w):
// the value-only passes then need no border cases at all.
template <class T>
inline void pad_row(const T* row, index_t w, index_t lo, index_t n, T identity, T* buf) {
  const index_t a = imin(imax(-lo, 0), n), b = imin(imax(w - lo, a), n);
  for (index_t i = 0; i < a; ++i) buf[i] = identity;
  if (b > a) std::memcpy(buf + a, row + lo + a, sizeof(T) * (b - a));
  for (index_t i = b; i < n; ++i) buf[i] = identity;
}

// Input positions [lo, hi) read by whole-vector blocks of windows c0 .. c1-1.
inline void padded_span(const AxisGeometry& a, index_t c0, index_t c1, index_t lanes, index_t& lo, index_t& hi) {
  const index_t end = c0 + (c1 - c0 + lanes - 1) / lanes * lanes;
  lo = a.start(c0);
  hi = a.start(end - 1) + (a.kernel - 1) * a.dilation + 1 + strided_overread(a.stride);
}

template <class T>
struct RowPlan {
  index_t chunk = 0, n_chunks = 0, max_rows = 0, padded = 0;
  bool cached = false;
  RowCache<T> cache;

  explicit RowPlan(const PoolGeometry& g) {
    const AxisGeometry& aw = g.axis[2];
    chunk = imin(aw.out, kChunk);
    n_chunks = (aw.out + chunk - 1) / chunk;
    max_rows = g.axis[0].kernel * g.axis[1].kernel;
    cached = n_chunks == 1 && max_rows > 1;
    padded = padded_row_capacity(aw, chunk);
    if (cached) {
      const AxisGeometry& ah = g.axis[1];
      const index_t want = imin(g.axis[0].kernel * ((ah.kernel - 1) * ah.dilation + 1), 64);
      cache.slots = 1;
      while (cache.slots < want) cache.slots *= 2;  // a power of two: slot = row & (slots - 1)
      cache.width = chunk + kRowSlack;
    }
  }

  // Row buffers hold a vector of slack past the chunk, so the passes may store whole
  // vectors at the end of a row (a masked store would stall the reload that follows).
  index_t row_capacity() const { return chunk + kRowSlack; }

  std::size_t scratch_bytes(bool with_taps) const {
    const index_t taps = with_taps ? 1 : 0;
    std::size_t b = Scratch::bytes<index_t>(max_rows) + 5 * Scratch::bytes<T>(row_capacity()) +
                    Scratch::bytes<T>(padded);
    if (cached)
      b += Scratch::bytes<T>(cache.slots * row_capacity()) * (1 + taps) + Scratch::bytes<index_t>(cache.slots);
    return b;
  }
};

// Per-thread working memory of the driver.
template <class T>
struct RowScratch {
  index_t* rows;
  T* acc_val;
  T* tmp_val;
  T* tmp_tap;
  T* acc_tap;
  T* acc_row;
  T* padded;  // null when the geometry does not allow it
  RowCache<T> cache;

  RowScratch(Scratch& s, const RowPlan<T>& plan, bool with_taps) {
    rows = s.take<index_t>(plan.max_rows);
    const index_t cap = plan.row_capacity();
    acc_val = s.take<T>(cap);
    tmp_val = s.take<T>(cap);
    tmp_tap = s.take<T>(cap);
    acc_tap = s.take<T>(cap);
    acc_row = s.take<T>(cap);
    padded = plan.padded ? s.take<T>(plan.padded) : nullptr;
    cache = plan.cache;
    if (plan.cached) {
      cache.val = s.take<T>(cache.slots * cache.width);
      cache.tap = with_taps ? s.take<T>(cache.slots * cache.width) : nullptr;
      cache.tag = s.take<index_t>(cache.slots);
      cache.reset();
    }
  }
};

// Software prefetch of the row a few rows below: rows are short, so the hardware
// prefetcher sees too little of each to run ahead.
template <class T>
inline void prefetch_ahead(const T* row, index_t width) {
  constexpr index_t kRowsAhead = 6;
  const char* p = reinterpret_cast<const char*>(row + kRowsAhead * width);
  const index_t bytes = width * index_t(sizeof(T));
  for (index_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 1);
}

// Reduces the window rows rows[0..n) of one plane for output columns [c0, c1) into
// s.acc_val (and, when the op tracks taps, s.acc_tap / s.acc_row).
template <class T, class Op>
void reduce_rows(const Op& op, const T* plane, index_t width, const index_t* rows, index_t n,
                 index_t c0, index_t c1, RowScratch<T>& s, bool cached) {
  const index_t len = c1 - c0;
  T* acc_val = s.acc_val;
  for (index_t r = 0; r < n; ++r) {
    const T* row = plane + rows[r] * width;
    const T* hv;
    const T* ht;
    if (cached) {
      const index_t slot = rows[r] & (s.cache.slots - 1);
      T* cv = s.cache.val + slot * s.cache.width;
      T* ct = s.cache.tap ? s.cache.tap + slot * s.cache.width : nullptr;
      if (s.cache.tag[slot] != rows[r]) {
        prefetch_ahead(row, width);
        op.hpass(row, c0, c1, cv, ct, s.padded);
        s.cache.tag[slot] = rows[r];
      }
      hv = cv;
      ht = ct;
    } else if (r == 0) {
      op.hpass(row, c0, c1, acc_val, s.acc_tap, s.padded);
      op.start(s.acc_row, len);
      continue;
    } else {
      op.hpass(row, c0, c1, s.tmp_val, s.tmp_tap, s.padded);
      hv = s.tmp_val;
      ht = s.tmp_tap;
    }
    if (r == 0) {
      copy_row(acc_val, hv, len);
      if (ht) copy_row(s.acc_tap, ht, len);
      op.start(s.acc_row, len);
    } else {
      op.fold(acc_val, s.acc_tap, s.acc_row, hv, ht, r, len);
    }
  }
}
