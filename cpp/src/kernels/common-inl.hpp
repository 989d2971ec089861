// Helpers shared by every kernel: integer min/max, per-thread scratch, the parallel
// driver, and the steady (padding-free) output range of an axis.
// Included inside an ISA namespace: everything here is compiled per ISA, so no
// std:: templates (the linker could merge an AVX-512 instance into the baseline).

template <int K>
struct Int {
  static constexpr int value = K;
};

inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }
inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }

// Below this many elements touched a call runs on one thread: waking a team costs
// more than the work.
constexpr index_t kMinParallelWork = index_t(1) << 15;

// malloc'ed per-thread scratch; a failed allocation is reported after the region.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes) : p_(static_cast<char*>(std::malloc(bytes ? bytes : 1))) {}
  ~Scratch() { std::free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  bool ok() const { return p_ != nullptr; }
  // Carves the next n elements of type U (64-byte aligned offsets).
  template <class U>
  U* take(index_t n) {
    U* r = reinterpret_cast<U*>(p_ + used_);
    used_ += (std::size_t(n) * sizeof(U) + 63) & ~std::size_t(63);
    return r;
  }
  template <class U>
  static std::size_t bytes(index_t n) { return (std::size_t(n) * sizeof(U) + 63) & ~std::size_t(63); }

 private:
  char* p_;
  std::size_t used_ = 0;
};

// Marks a shared flag from inside a parallel region.
inline void report_failure(int& flag) {
#ifdef FASTPOOL_HAVE_OPENMP
#pragma omp atomic write
#endif
  flag = 0;
}

// Folds a thread's first out-of-range index position into the shared one (the
// smallest position wins, whatever the thread count).
inline void report_bad_index(index_t& bad, index_t mine) {
  if (mine < 0) return;
#ifdef FASTPOOL_HAVE_OPENMP
#pragma omp critical(fastpool_bad_index)
#endif
  if (bad < 0 || mine < bad) bad = mine;
}

// Runs f(begin, end) over contiguous, statically split item ranges, one per thread.
// The split never changes what is computed for an item, so results do not depend
// on the thread count.
template <class F>
void parallel_for(index_t n_items, int threads, index_t work, F&& f) {
  index_t nt = threads < 1 ? 1 : threads;
  if (work < kMinParallelWork) nt = 1;
  if (nt > n_items) nt = n_items;
#ifdef FASTPOOL_HAVE_OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(int(nt))
    {
      const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
      f(n_items * t / T, n_items * (t + 1) / T);
    }
    return;
  }
#endif
  if (n_items > 0) f(0, n_items);
}

// Outputs [lo, hi) whose taps all lie in [0, in - overread): no bounds checks there.
inline void steady_range(const AxisGeometry& a, index_t overread, index_t& lo, index_t& hi) {
  lo = imin((a.pad_before + a.stride - 1) / a.stride, a.out);
  const index_t last = a.in - 1 - overread - (a.kernel - 1) * a.dilation + a.pad_before;
  hi = last < 0 ? 0 : imin(last / a.stride + 1, a.out);
  if (hi < lo) hi = lo;
}

// Prefetches elements [from, min(to, size)) of a, a cache line at a time (no pointer
// is formed past the array).
template <class T>
inline void prefetch_elements(const T* a, index_t from, index_t to, index_t size) {
  const char* p = reinterpret_cast<const char*>(a);
  const index_t end = imin(to, size) * index_t(sizeof(T));
  for (index_t b = from * index_t(sizeof(T)); b < end; b += 64) __builtin_prefetch(p + b, 0, 3);
}

// A stride-2 vector load reads one element past its last lane.
inline index_t strided_overread(index_t stride) { return stride == 2 ? 1 : 0; }

// Lanes [0, n) at p, p + s, ... of planes of s elements (p in the plane's last
// pixel when last_pixel): there the stride-2 overread would leave the last plane, so
// those lanes go through a buffer.
template <class T>
inline Vec<T> load_plane_lanes(const T* p, index_t s, index_t n, bool last_pixel) {
  if (last_pixel && s == 2 && n >= Vec<T>::N) {
    alignas(64) T t[Vec<T>::N];
    for (index_t l = 0; l < Vec<T>::N; ++l) t[l] = p[2 * l];
    return Vec<T>::load(t);
  }
  return Vec<T>::load_strided_n(p, s, n);
}

// Input rows (id*H + ih, flattened over depth and height) of output row (od, oh),
// in window order; returns how many.
inline index_t window_rows(const PoolGeometry& g, index_t od, index_t oh, index_t* rows) {
  const AxisGeometry& ad = g.axis[0];
  const AxisGeometry& ah = g.axis[1];
  index_t fd, ld, fh, lh;
  ad.valid_taps(od, fd, ld);
  ah.valid_taps(oh, fh, lh);
  index_t n = 0;
  for (index_t a = fd; a < ld; ++a) {
    const index_t id = ad.start(od) + a * ad.dilation;
    for (index_t b = fh; b < lh; ++b) rows[n++] = id * ah.in + ah.start(oh) + b * ah.dilation;
  }
  return n;
}

// Zeroes rows (done, upto] of a row-major block of `width` elements per row; the
// backward kernels zero each gradient row just before its first use, while it is
// about to be in cache anyway.
template <class T>
inline void zero_rows(T* base, index_t width, index_t stride, index_t done, index_t upto) {
  for (index_t r = done + 1; r <= upto; ++r) std::memset(base + r * stride, 0, sizeof(T) * width);
}

// Output columns of the channels-first row passes are processed in chunks, so the
// scratch stays in cache however wide the input is.
constexpr index_t kChunk = 2048;
// Elements of slack after each scratch row: one vector of the widest type.
constexpr index_t kRowSlack = 16;

// Scratch-to-scratch copy in whole vectors of the same width the passes store with
// (a narrower reload of a wider store would miss store forwarding).
template <class T>
inline void copy_row(T* dst, const T* src, index_t n) {
  using V = Vec<T>;
  for (index_t i = 0; i < n; i += V::N) V::store(dst + i, V::load(src + i));
}

// dst[0..n) = src[0..n); src may be read past n (scratch with slack), dst is not
// written past n.
template <class T>
inline void store_row(T* dst, const T* src, index_t n) {
  using V = Vec<T>;
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(dst + i, V::load(src + i));
  if (i < n) V::store_n(dst + i, V::load(src + i), n - i);
}

// Outputs at least this large are written with non-temporal stores: a line that is
// wholly overwritten is not read first, and the output does not evict the input.
constexpr std::size_t kStreamBytes = std::size_t(4) << 20;

// dst[0..n) = src[0..n) (src may be read past n, as store_row); with `nt`, the
// whole cache lines of dst by non-temporal stores (the caller fences once). A line
// is written by one kind of store only: a plain store into a line that is being
// streamed flushes the write-combining buffer (3x slower on Zen 3).
template <class T>
inline void emit_row(T* dst, const T* src, index_t n, bool nt) {
  using V = Vec<T>;
  if (!nt) return store_row(dst, src, n);
  constexpr index_t kLine = 64, per_line = kLine / index_t(sizeof(T));
  index_t i = 0;
  for (; i < n && reinterpret_cast<std::uintptr_t>(dst + i) % kLine; ++i) dst[i] = src[i];
  for (const index_t body = i + (n - i) / per_line * per_line; i < body; i += V::N) V::stream(dst + i, V::load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// A direct-mapped cache of horizontal-pass results keyed by input row: consecutive
// output rows share input rows when the kernel is taller than the stride.
template <class T>
struct RowCache {
  index_t slots = 0, width = 0;
  T* val = nullptr;
  T* tap = nullptr;
  index_t* tag = nullptr;

  void reset() {
    for (index_t s = 0; s < slots; ++s) tag[s] = -1;
  }
};

// Average pooling divisors: per-axis tap counts computed once per call, shared by
// every driver so the divisor rule is written once.
struct Divisors {
  index_t* count[3];
  index_t override_value;

  index_t at(index_t od, index_t oh, index_t ow) const {
    return override_value > 0 ? override_value : count[0][od] * count[1][oh] * count[2][ow];
  }
};

inline Divisors make_divisors(Scratch& mem, const PoolGeometry& g, const AvgOptions& opt) {
  Divisors d;
  d.override_value = opt.divisor_override;
  for (int i = 0; i < 3; ++i) {
    d.count[i] = mem.take<index_t>(g.axis[i].out);
    for (index_t o = 0; o < g.axis[i].out; ++o) d.count[i][o] = avg_axis_count(g.axis[i], o, opt.count_include_pad);
  }
  return d;
}

inline std::size_t divisor_bytes(const PoolGeometry& g) {
  return Scratch::bytes<index_t>(g.axis[0].out) + Scratch::bytes<index_t>(g.axis[1].out) +
         Scratch::bytes<index_t>(g.axis[2].out);
}
