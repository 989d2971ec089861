// Max over the adaptive bins of small 2-D planes: adaptive max pooling and the max
// spatial pyramid and strip pooling of CNN feature maps (7 x 7, 13 x 13), forward and
// the backward that recomputes the argmax. The general bin kernels pay per unit and
// per bin for what these shapes do not need (row copies, argmax staging across levels,
// a zero fill then compare-routing over every tap), and that overhead dominated here.
//
// A work item is a run of vectors of lanes (channels_last channel blocks of one sample,
// channels_first groups of N planes, copied pixel-major through block transposes),
// taken kChunk blocks at a time: the chunk's blocks share every bin's geometry, so
// their scans run as independent dependency chains, and a channels_last chunk's four
// vectors of a pixel are one 256-byte run of x, scanned in place (a pixel-major copy
// was a phase waiting on memory: 17-27% slower end to end). A level's
// bins are scanned from the taps, or a pyramid's coarse level merges a finer level's
// maxima (with positions, by the scan rule over them; values alone, exact in any order
// but for a zero or NaN maximum, which is taken from the taps again). The backward
// then writes every element of the gradient once, as the sum over the bins covering its pixel of
// the bin's gradient where the pixel is its argmax (a compare per covering bin: a
// scalar scatter of each lane's gradient cost more than the rest of the backward).
//
// The scan rule is the general kernels' (`v > best || isnan(v)`, row-major over a
// bin): the same values and indices. A pixel's gradient adds its bins' shares in one
// fixed order (levels as given, then bins row-major) on every path and layout, and
// reports one canonical NaN (as the general kernels' sums).
// Included inside an ISA namespace after bins-inl.hpp.

namespace binmax {

using bins::canonical_nan;
using bins::LaneOffsets;
using bins::LevelIO;
using bins::merge_wins;
using bins::PyramidPlan;
using bins::Unit;

constexpr int kChunk = 4;                                // vectors of lanes scanned together
constexpr int kMaxItem = 128;                            // vectors of lanes per work item
constexpr std::size_t kCopyBytes = std::size_t(128) << 10;  // an item's copy of x, in L2
constexpr std::size_t kSampleBytes = std::size_t(512) << 10;  // a channels_last item holding a whole sample
constexpr index_t kMaxPlane = 1024;                      // larger planes take the general kernels

// Whether every level is a grid of adaptive (monotone) bins over a 2-D or 1-D plane
// small enough for the per-item copies; the backward also needs no given indices.
// The backward runs here for both layouts, so a pixel's gradient sums in one order.
template <class T>
bool applies(const BinProblem& pb, BinReduce op, const BinLevel<T>* lv, int nl, bool backward) {
  if (op != BinReduce::max || nl < 1 || pb.in[0] != 1 || pb.plane() > kMaxPlane) return false;
  for (int l = 0; l < nl; ++l) {
    if (backward && lv[l].given_indices) return false;
    if (lv[l].axis[0].out != 1) return false;
    for (int i = 1; i < 3; ++i) {
      const BinAxis& a = lv[l].axis[i];
      if (a.step != 1 && a.in > 1) return false;
      for (index_t o = 0; o < a.out; ++o) {
        if (a.count[o] < 1) return false;
        if (o > 0 && (a.first[o] < a.first[o - 1] || a.first[o] + a.count[o] < a.first[o - 1] + a.count[o - 1]))
          return false;
      }
    }
  }
  return true;
}

// Per-call geometry shared by the threads: each level's first bin in the run of all
// levels' bins, the bins covering each pixel, and how many blocks an item holds.
// A chunk's values (and positions) of bin b, block j are at (b*kChunk + j)*N: the
// blocks scanned together are adjacent, so one pointer reaches them all.
template <class T>
struct Plan {
  static constexpr index_t kBinStride = kChunk * Vec<T>::N;  // elements per bin of a chunk
  index_t P, units, item_blocks, items, total_bins = 0;
  index_t* boff;
  // pixel q's covering bins (levels as given, then bins row-major), as offsets
  // bin * kBinStride: cover[cover_start[q] .. cover_start[q + 1])
  index_t *cover_start, *cover;
  PyramidPlan<T> pyr;  // coarse levels that are unions of a finer level's bins

  // Entries of the cover list: a level's bins cover sum(count_h) x sum(count_w) pixels.
  static index_t cover_entries(const BinLevel<T>* lv, int nl) {
    index_t n = 0;
    for (int l = 0; l < nl; ++l) {
      index_t t[2] = {0, 0};
      for (int i = 0; i < 2; ++i)
        for (index_t o = 0; o < lv[l].axis[i + 1].out; ++o) t[i] += lv[l].axis[i + 1].count[o];
      n += t[0] * t[1];
    }
    return n;
  }
  static std::size_t bytes(const BinLevel<T>* lv, int nl) {
    const index_t H = lv[0].axis[1].in, W = lv[0].axis[2].in;
    return Scratch::bytes<index_t>(nl) + Scratch::bytes<index_t>(H * W + 1) +
           Scratch::bytes<index_t>(cover_entries(lv, nl)) + (Scratch::bytes<index_t>(H) + Scratch::bytes<index_t>(W)) * 2 * nl +
           Scratch::bytes<index_t*>(nl * 4) +
           PyramidPlan<T>::bytes(lv, nl);
  }
  Plan(Scratch& mem, const BinProblem& pb, const BinLevel<T>* lv, int nl, int threads)
      : P(pb.plane()), units(Unit<T>::count(pb, 1)) {
    pyr.build(mem, lv, nl);
    boff = mem.take<index_t>(nl);
    for (int l = 0; l < nl; ++l) {
      boff[l] = total_bins;
      total_bins += lv[l].bins();
    }
    const index_t H = lv[0].axis[1].in, W = lv[0].axis[2].in;
    cover_start = mem.take<index_t>(P + 1);
    cover = mem.take<index_t>(cover_entries(lv, nl));
    index_t** range = mem.take<index_t*>(nl * 4);  // [level][lo_h, hi_h, lo_w, hi_w]
    for (int l = 0; l < nl; ++l) {
      index_t** r = range + l * 4;
      for (int i = 0; i < 4; ++i) r[i] = mem.take<index_t>(i < 2 ? H : W);
      bins::covering_bins(lv[l].axis[1], r[0], r[1]);
      bins::covering_bins(lv[l].axis[2], r[2], r[3]);
    }
    index_t n = 0;
    for (index_t q = 0; q < P; ++q) {
      const index_t h = q / W, w = q % W;
      cover_start[q] = n;
      for (int l = 0; l < nl; ++l) {
        index_t* const* r = range + l * 4;
        for (index_t bh = r[0][h]; bh < r[1][h]; ++bh)
          for (index_t bw = r[2][w]; bw < r[3][w]; ++bw) cover[n++] = (boff[l] + bh * lv[l].axis[2].out + bw) * kBinStride;
      }
    }
    cover_start[P] = n;
    // blocks whose copy fits kCopyBytes, or a channels_last sample's blocks up to
    // kSampleBytes (its pixels are then read as whole runs of memory, which the
    // hardware prefetcher follows), fewer when that leaves a thread without items (the
    // grouping never changes a result)
    const std::size_t plane_bytes = std::size_t(P) * Vec<T>::N * sizeof(T);
    index_t m = index_t(kCopyBytes / plane_bytes);
    const index_t per_sample = (pb.channels + Vec<T>::N - 1) / Vec<T>::N;
    if (pb.channels_last && m < per_sample && std::size_t(per_sample) * plane_bytes <= kSampleBytes)
      m = (per_sample + kChunk - 1) / kChunk * kChunk;
    if (threads > 1) m = imin(m, units / (4 * index_t(threads)));
    item_blocks = imax(kChunk, imin(kMaxItem, m)) / kChunk * kChunk;
    items = (units + item_blocks - 1) / item_blocks;
  }
};

// Maximum (and, when kIdx, its flat plane position) of the bin of rows [h0, h0 + nh),
// columns [w0, w0 + nw), for U blocks of lanes: pixel q of block k at src[k] + q*ps.
template <int U, bool kIdx, class T>
inline void scan(const T* const* src, index_t ps, index_t W, index_t h0, index_t nh, index_t w0, index_t nw,
                 Vec<T>* best, Vec<T>* pos) {
  using V = Vec<T>;
  const index_t q0 = h0 * W + w0;
  for (int k = 0; k < U; ++k) {
    best[k] = V::load(src[k] + q0 * ps);
    if (kIdx) pos[k] = V::set1(T(q0));
  }
  for (index_t i = 0; i < nh; ++i)
    for (index_t j = i == 0 ? 1 : 0; j < nw; ++j) {
      const index_t q = q0 + i * W + j;
      const V qv = V::set1(T(q));
      for (int k = 0; k < U; ++k) {
        const V v = V::load(src[k] + q * ps);
        const typename V::M m = V::gt_or_nan(v, best[k]);
        best[k] = V::select(m, v, best[k]);
        if (kIdx) pos[k] = V::select(m, qv, pos[k]);
      }
    }
}

// Every bin of every level for U blocks: value (and position) of block k, bin b
// (numbered across levels) at val + b*kBinStride + k*N (pos likewise). With positions,
// a level that is a union of a finer level's bins merges their maxima by the scan rule
// over positions (the larger value, the earlier position among equal values, the
// later among NaNs) instead of scanning its taps again.
template <int U, bool kIdx, class T>
void scan_levels(const Plan<T>& pl, const BinLevel<T>* lv, int nl, const T* const* src, index_t ps, T* val, T* pos) {
  using V = Vec<T>;
  constexpr index_t S = Plan<T>::kBinStride;
  const index_t W = lv[0].axis[2].in;
  for (int oi = 0; oi < nl; ++oi) {
    const int l = pl.pyr.order[oi], f = pl.pyr.source[l];
    const BinAxis &ah = lv[l].axis[1], &aw = lv[l].axis[2];
    for (index_t oh = 0; oh < ah.out; ++oh)
      for (index_t ow = 0; ow < aw.out; ++ow) {
        V best[U], at[U];
        if (f < 0) {
          scan<U, kIdx>(src, ps, W, ah.first[oh], ah.count[oh], aw.first[ow], aw.count[ow], best, at);
        } else {
          const index_t* const* rg = pl.pyr.range + l * 6;
          const index_t FW = lv[f].axis[2].out;
          const index_t f0 = (pl.boff[f] + rg[2][oh] * FW + rg[4][ow]) * S;
          for (int k = 0; k < U; ++k) {  // from the first fine bin (merging it again changes nothing)
            best[k] = V::load(val + f0 + k * V::N);
            if (kIdx) at[k] = V::load(pos + f0 + k * V::N);
          }
          for (index_t fh = rg[2][oh]; fh < rg[3][oh]; ++fh)
            for (index_t fw = rg[4][ow]; fw < rg[5][ow]; ++fw) {
              const index_t fb = (pl.boff[f] + fh * FW + fw) * S;
              for (int k = 0; k < U; ++k) {
                const V v2 = V::load(val + fb + k * V::N);
                if (!kIdx) {
                  best[k] = V::max_nan(best[k], v2);
                  continue;
                }
                const V q2 = V::load(pos + fb + k * V::N);
                const typename V::M win = merge_wins(best[k], v2, V::lt(q2, at[k]));
                best[k] = V::select(win, v2, best[k]);
                at[k] = V::select(win, q2, at[k]);
              }
            }
          if (!kIdx) {
            // values alone: exact in any order, but for a maximum that is a zero or a NaN,
            // where the scan rule picks one of equal values by position: from the taps
            typename V::M inexact = V::is_nan(V::zero());
            for (int k = 0; k < U; ++k) inexact = V::m_or(inexact, V::m_or(V::is_nan(best[k]), V::eq(best[k], V::zero())));
            if (V::any(inexact)) scan<U, false>(src, ps, W, ah.first[oh], ah.count[oh], aw.first[ow], aw.count[ow], best, at);
          }
        }
        const index_t b = (pl.boff[l] + oh * aw.out + ow) * S;
        for (int k = 0; k < U; ++k) {
          V::store(val + b + k * V::N, best[k]);
          if (kIdx) V::store(pos + b + k * V::N, at[k]);
        }
      }
  }
}

// The gradient of pixel q for U blocks: the sum of the gradients of the bins whose
// argmax it is, levels as given, then bins row-major (so one order on every path and
// layout), with one canonical NaN (which of two NaNs a sum returns depends on the
// operand order the compiler picks). Adding a 0 where a bin's argmax is elsewhere
// changes no bit: the sum starts at +0 and so is never -0. The first `streamed`
// blocks go to dst by non-temporal stores.
template <int U, class T>
inline void gather_pixel(const Plan<T>& pl, index_t q, const T* g, const T* pos, T* const* dst, int streamed) {
  using V = Vec<T>;
  const V qv = V::set1(T(q)), zero = V::zero();
  V acc[U];
  for (int k = 0; k < U; ++k) acc[k] = zero;
  for (index_t j = pl.cover_start[q]; j < pl.cover_start[q + 1]; ++j) {
    const T *gb = g + pl.cover[j], *pb = pos + pl.cover[j];
    for (int k = 0; k < U; ++k)
      acc[k] = V::add(acc[k], V::select(V::eq(V::load(pb + k * V::N), qv), V::load(gb + k * V::N), zero));
  }
  for (int k = 0; k < U; ++k) {
    if (k < streamed)
      V::stream(dst[k], canonical_nan(acc[k]));
    else
      V::store(dst[k], canonical_nan(acc[k]));
  }
}

// The channels_last blocks of the next work item, prefetched a pixel and a chunk at a
// time while this one computes: a pixel's blocks are short runs of memory C apart,
// which the hardware prefetcher does not follow, and loading them in a phase of their
// own waits on memory at a third of its bandwidth.
template <class T>
struct Ahead {
  const char* block[kMaxItem];  // pixel 0 of each block
  index_t n = 0, pixel_bytes = 0;

  Ahead(const BinProblem& pb, const Plan<T>& pl, index_t it, const T* x) {
    if (!pb.channels_last || it >= pl.items) return;
    const index_t u0 = it * pl.item_blocks;
    n = imin(pl.item_blocks, pl.units - u0);
    pixel_bytes = pb.channels * index_t(sizeof(T));
    for (index_t k = 0; k < n; ++k) block[k] = reinterpret_cast<const char*>(x + Unit<T>::make(pb, 1, u0 + k).base);
  }
  void fetch(index_t q, index_t k0, index_t count) const {
    for (index_t k = k0; k < imin(k0 + count, n); ++k) __builtin_prefetch(block[k] + q * pixel_bytes, 0, 2);
  }
};

// f(Int<U>()) for the U = min(left, kChunk) blocks of a chunk.
template <class F>
inline void with_chunk(int left, F&& f) {
  switch (left) {
    case 1: f(Int<1>()); break;
    case 2: f(Int<2>()); break;
    case 3: f(Int<3>()); break;
    default: f(Int<kChunk>());
  }
}

// The item's blocks, copied pixel-major (block k's pixel q at copy[k] + q*N), with
// their bins' values (or gradients) and positions per chunk of kChunk blocks (block
// k's bin b at val[k / kChunk] + b*kBinStride + (k % kChunk)*N).
template <class T>
struct Item {
  using V = Vec<T>;
  static constexpr index_t S = Plan<T>::kBinStride;
  Unit<T> unit[kMaxItem];
  T *copy[kMaxItem], *val[kMaxItem / kChunk], *pos[kMaxItem / kChunk];
  const T* src[kMaxItem];  // what the scans read: block k's pixel q at src[k] + q*ps(k)
  T *tile, *ptile;         // one block's bins as a level's staging tile: (bin, lane)
  int n = 0, direct = 0;   // blocks; the leading ones are whole vectors of channels_last
  int placed = 0;          // blocks [0, placed) are scanned in place (whole chunks)
  index_t C = 1;

  static std::size_t bytes(const Plan<T>& pl) {
    return Scratch::bytes<T>(pl.P * V::N) * std::size_t(pl.item_blocks) +
           Scratch::bytes<T>(pl.total_bins * S) * 2 * std::size_t(pl.item_blocks / kChunk) +
           Scratch::bytes<T>(pl.total_bins * V::N) * 2;
  }
  Item(Scratch& mem, const Plan<T>& pl) {
    for (index_t k = 0; k < pl.item_blocks; ++k) copy[k] = mem.take<T>(pl.P * V::N);
    for (index_t c = 0; c < pl.item_blocks / kChunk; ++c) {
      val[c] = mem.take<T>(pl.total_bins * S);
      pos[c] = mem.take<T>(pl.total_bins * S);
    }
    tile = mem.take<T>(pl.total_bins * V::N);
    ptile = mem.take<T>(pl.total_bins * V::N);
  }
  // Chunks of whole channels_last vectors are scanned where they are (measured faster
  // than a pixel-major copy, C apart or not: the chunk's four runs of a pixel are one
  // 256-byte run, and the next item is prefetched); the rest is copied pixel-major.
  void load(const BinProblem& pb, const Plan<T>& pl, index_t it, const T* x) {
    const index_t u0 = it * pl.item_blocks;
    n = int(imin(pl.item_blocks, pl.units - u0));
    direct = 0;
    C = pb.channels;
    for (int k = 0; k < n; ++k) {
      unit[k] = Unit<T>::make(pb, 1, u0 + k);
      if (unit[k].direct() && direct == k) ++direct;
    }
    placed = direct == n ? n : direct / kChunk * kChunk;
    for (int k = 0; k < n; ++k) src[k] = k < placed ? x + unit[k].base : copy[k];
    for (index_t q = 0; q < pl.P; ++q)
      for (int k = placed; k < direct; ++k)
        V::store(copy[k] + q * V::N, V::load(x + unit[k].base + q * unit[k].pixel_stride));
    for (int k = direct; k < n; ++k) unit[k].load_pixels(x, 0, pl.P, copy[k]);
  }
  index_t ps(int k) const { return k < placed ? C : V::N; }
  // Block k's bins from its chunk's array into a (bin, lane) tile.
  void to_tile(const Plan<T>& pl, T* const* a, int k, T* t) const {
    const T* src = a[k / kChunk] + (k % kChunk) * V::N;
    for (index_t b = 0; b < pl.total_bins; ++b) V::store(t + b * V::N, V::load(src + b * S));
  }
  template <bool kIdx>
  void scan_all(const Plan<T>& pl, const BinLevel<T>* lv, int nl, const Ahead<T>& ahead) {
    for (int k = 0; k < n; k += kChunk)
      with_chunk(n - k, [&](auto U) {
        for (index_t q = 0; q < pl.P; ++q) ahead.fetch(q, k, decltype(U)::value);
        scan_levels<decltype(U)::value, kIdx>(pl, lv, nl, src + k, ps(k), val[k / kChunk], pos[k / kChunk]);
      });
  }
  // The forward's values (and indices) of every block into y.
  void emit(const BinProblem& pb, const Plan<T>& pl, const BinLevel<T>* lv, int nl, bool idx) const {
    for (int k = 0; k < n; ++k) {
      if (!idx && emit_rows(pb, pl, lv, nl, k)) continue;
      to_tile(pl, val, k, tile);
      if (idx) to_tile(pl, pos, k, ptile);
      for (int l = 0; l < nl; ++l) {
        const index_t OH = lv[l].axis[1].out, OW = lv[l].axis[2].out;
        T* v = tile + pl.boff[l] * V::N;
        const LevelIO<T> io(pb, unit[k], lv[l], v, OH * OW * V::N);
        if (io.staged())
          io.store_all(lv[l].y);
        else
          for (index_t oh = 0; oh < OH; ++oh)
            for (index_t ow = 0; ow < OW; ++ow) io.put(lv[l].y, 0, oh, ow, 0, V::load(v + (oh * OW + ow) * V::N));
        if (!lv[l].indices) continue;
        const LaneOffsets<T>& lo = io.offsets();
        const T* p = ptile + pl.boff[l] * V::N;
        for (index_t oh = 0; oh < OH; ++oh)
          for (index_t ow = 0; ow < OW; ++ow) {
            const index_t at = io.at(0, oh, ow, 0), b = (oh * OW + ow) * V::N;
            for (index_t i = 0; i < unit[k].lanes; ++i) lv[l].indices[lo.off[i] + at] = std::int64_t(p[b + i]);
          }
      }
    }
  }
  // Where block k's lanes are N adjacent channels of one sample: level l's values of
  // lane i at rows + i*stride_c + bin, when the level's bins are contiguous (a
  // pyramid's C x bins rows); else null.
  const T* level_rows(const BinProblem& pb, const BinLevel<T>& L, const T* a, int k) const {
    const Unit<T>& un = unit[k];
    const index_t n0 = un.plane0 / pb.channels, c0 = un.plane0 % pb.channels;
    const index_t OH = L.axis[1].out, OW = L.axis[2].out;
    if (un.lanes != V::N || c0 + V::N > pb.channels || (OW > 1 && L.stride[2] != 1) || (OH > 1 && L.stride[1] != OW))
      return nullptr;
    return a + n0 * L.stride_n + c0 * L.stride_c;
  }
  // The forward's values of block k straight from the chunk's layout into y by N x N
  // transposes, when level_rows allows; false (nothing written) otherwise.
  bool emit_rows(const BinProblem& pb, const Plan<T>& pl, const BinLevel<T>* lv, int nl, int k) const {
    for (int l = 0; l < nl; ++l)
      if (!level_rows(pb, lv[l], lv[l].y, k)) return false;
    const T* src = val[k / kChunk] + (k % kChunk) * V::N;
    for (int l = 0; l < nl; ++l) {
      const BinLevel<T>& L = lv[l];
      const index_t bins = L.bins(), sc = L.stride_c;
      T* y = const_cast<T*>(level_rows(pb, L, L.y, k));
      const T* d = src + pl.boff[l] * S;
      index_t b = 0;
      for (; b + V::N <= bins; b += V::N) V::transpose_block(d + b * S, S, y + b, sc);
      const index_t r = bins - b;
      if (r == 0) continue;
      if (r == 1 && sc == 1) {  // one bin, lanes adjacent in y
        V::store(y + b, V::load(d + b * S));
        continue;
      }
      bins::transpose_narrow(d + b * S, S, r, y + b, sc);
    }
    return true;
  }
  // The bins' gradients of block k in place of its values. Where its lanes are N
  // adjacent channels of one sample and a level's bins are contiguous (a pyramid's
  // C x bins rows), they move by N x N transposes and strided loads, straight into
  // the chunk's layout; elsewhere through the level's staging tile.
  void load_grad(const BinProblem& pb, const Plan<T>& pl, const BinLevel<T>* lv, int nl, int k) {
    T* dst = val[k / kChunk] + (k % kChunk) * V::N;
    for (int l = 0; l < nl; ++l) {
      const BinLevel<T>& L = lv[l];
      const index_t OH = L.axis[1].out, OW = L.axis[2].out, bins = OH * OW;
      T* d = dst + pl.boff[l] * S;
      if (const T* g = level_rows(pb, L, L.grad_y, k)) {
        index_t b = 0;
        for (; b + V::N <= bins; b += V::N) V::transpose_block(g + b, L.stride_c, d + b * S, S);
        const index_t r = bins - b, sc = L.stride_c;
        if (r == 1 && sc == 1) {  // one bin, lanes adjacent in grad_y
          V::store(d + b * S, V::load(g + b));
        } else if (r > 0) {
          bins::transpose_wide(g + b, sc, r, d + b * S, S);
        }
        continue;
      }
      const LevelIO<T> io(pb, unit[k], L, tile, bins * V::N);
      io.load_all(L.grad_y);
      for (index_t oh = 0; oh < OH; ++oh)
        for (index_t ow = 0; ow < OW; ++ow) {
          const index_t b = oh * OW + ow;
          V::store(d + b * S, io.staged() ? V::load(tile + b * V::N) : io.get(L.grad_y, 0, oh, ow, 0));
        }
    }
  }
  // The gradient, a chunk of blocks at a time (its positions and bin gradients stay in
  // L1), each element written once: straight into channels_last blocks (streamed out
  // when `nt`: whole cache lines; the caller fences), through the copies elsewhere.
  void backward(const BinProblem& pb, const Plan<T>& pl, const BinLevel<T>* lv, int nl, T* gx, const Ahead<T>& ahead,
                bool nt) {
    for (int k0 = 0; k0 < n; k0 += kChunk)
      with_chunk(n - k0, [&](auto U) {
        constexpr int u = decltype(U)::value;
        T *v = val[k0 / kChunk], *p = pos[k0 / kChunk];
        scan_levels<u, true>(pl, lv, nl, src + k0, ps(k0), v, p);
        for (int k = k0; k < k0 + u; ++k) load_grad(pb, pl, lv, nl, k);
        T* dst[u];
        for (index_t q = 0; q < pl.P; ++q) {
          ahead.fetch(q, k0, u);
          for (int k = 0; k < u; ++k)
            dst[k] = k0 + k < direct ? gx + unit[k0 + k].base + q * unit[k0 + k].pixel_stride : copy[k0 + k] + q * V::N;
          gather_pixel<u>(pl, q, v, p, dst, nt ? direct - k0 : 0);
        }
      });
    for (int k = direct; k < n; ++k) unit[k].store_pixels(gx, 0, pl.P, copy[k]);
  }
};

template <class T>
void forward(const T* x, const BinProblem& pb, const BinLevel<T>* lv, int nl, int threads) {
  Scratch plan_mem(Plan<T>::bytes(lv, nl));
  if (!plan_mem.ok()) throw std::bad_alloc();
  const Plan<T> pl(plan_mem, pb, lv, nl, threads);
  bool idx = false;
  for (int l = 0; l < nl; ++l) idx = idx || lv[l].indices;
  int ok = 1;
  parallel_for(pl.items, threads, pb.size(), [&](index_t i0, index_t i1) {
    Scratch mem(Item<T>::bytes(pl));
    if (!mem.ok()) return report_failure(ok);
    Item<T> item(mem, pl);
    for (index_t it = i0; it < i1; ++it) {
      item.load(pb, pl, it, x);
      const Ahead<T> ahead(pb, pl, it + 1 < i1 ? it + 1 : pl.items, x);
      if (idx)
        item.template scan_all<true>(pl, lv, nl, ahead);
      else
        item.template scan_all<false>(pl, lv, nl, ahead);
      item.emit(pb, pl, lv, nl, idx);
    }
  });
  if (!ok) throw std::bad_alloc();
}

template <class T>
index_t backward(const T* x, const BinProblem& pb, const BinLevel<T>* lv, int nl, T* gx, int threads) {
  using V = Vec<T>;
  Scratch plan_mem(Plan<T>::bytes(lv, nl));
  if (!plan_mem.ok()) throw std::bad_alloc();
  const Plan<T> pl(plan_mem, pb, lv, nl, threads);
  // channels_last gradients of whole cache lines are streamed out: nothing reads them
  // back, and a plain store would first read each line from memory
  const bool nt = pb.channels_last && std::size_t(pb.size()) * sizeof(T) >= kStreamBytes &&
                  pb.channels * sizeof(T) % 64 == 0 && reinterpret_cast<std::uintptr_t>(gx) % 64 == 0;
  int ok = 1;
  parallel_for(pl.items, threads, 2 * pb.size(), [&](index_t i0, index_t i1) {
    Scratch mem(Item<T>::bytes(pl));
    if (!mem.ok()) return report_failure(ok);
    Item<T> item(mem, pl);
    for (index_t it = i0; it < i1; ++it) {
      item.load(pb, pl, it, x);
      item.backward(pb, pl, lv, nl, gx, Ahead<T>(pb, pl, it + 1 < i1 ? it + 1 : pl.items, x), nt);
    }
    if (nt) V::fence();
  });
  if (!ok) throw std::bad_alloc();
  return -1;
}

}  // namespace binmax
