// Max over the adaptive bins of small 2-D planes: adaptive max pooling and the max
// spatial pyramid and strip pooling of CNN feature maps (7 x 7, 13 x 13), forward and
// the backward that recomputes the argmax. The general bin kernels pay per unit and
// per bin for what these shapes do not need (row copies, argmax staging across levels,
// a zero fill then compare-routing over every tap), and that overhead dominated here.
//
// A work item is a run of vectors of lanes (channels_last channel blocks of one sample,
// channels_first groups of N planes), copied pixel-major once: channels_last reads a
// pixel's blocks as one run of memory (scanning them in place, C apart, would map a
// plane's pixels to a few cache sets when C is a power of two). kChunk blocks share
// every bin's geometry, so their scans run as independent dependency chains. A level's
// bins are scanned from the taps, or, where positions are tracked (indices, backward),
// a pyramid's coarse level merges a finer level's maxima. The backward then adds each
// lane's bin gradients at its argmax in a zeroed copy of the plane and writes every
// element once.
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
constexpr int kMaxItem = 64;                             // vectors of lanes per work item
constexpr std::size_t kCopyBytes = std::size_t(128) << 10;  // an item's copy of x, in L2
constexpr index_t kMaxPlane = 1024;                      // larger planes take the general kernels

// Whether every level is a grid of adaptive (monotone) bins over a 2-D or 1-D plane
// small enough for the per-item copies; the backward also needs no given indices.
// The forward's values are exact whichever kernel runs; a channels_last pyramid
// without indices is faster in the general kernels, which merge coarse levels from a
// finer one's maxima. The backward runs here for both layouts, so a pixel's gradient
// sums in one order.
template <class T>
bool applies(const BinProblem& pb, BinReduce op, const BinLevel<T>* lv, int nl, bool backward) {
  if (op != BinReduce::max || nl < 1 || pb.in[0] != 1 || pb.plane() > kMaxPlane) return false;
  bool indices = false;
  for (int l = 0; l < nl; ++l) indices = indices || lv[l].indices;
  if (!backward && pb.channels_last && nl > 1 && !indices) return false;
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

// Per-call geometry shared by the threads: each level's first bin in a block's run of
// all levels' bins, and how many blocks an item holds.
template <class T>
struct Plan {
  index_t P, units, item_blocks, items, total_bins = 0;
  index_t* boff;
  PyramidPlan<T> pyr;  // coarse levels that are unions of a finer level's bins

  static std::size_t bytes(const BinLevel<T>* lv, int nl) {
    return Scratch::bytes<index_t>(nl) + PyramidPlan<T>::bytes(lv, nl);
  }
  Plan(Scratch& mem, const BinProblem& pb, const BinLevel<T>* lv, int nl, int threads)
      : P(pb.plane()), units(Unit<T>::count(pb, 1)) {
    pyr.build(mem, lv, nl);
    boff = mem.take<index_t>(nl);
    for (int l = 0; l < nl; ++l) {
      boff[l] = total_bins;
      total_bins += lv[l].bins();
    }
    // blocks whose copy fits kCopyBytes, fewer when that leaves a thread without items
    // (the grouping never changes a result)
    index_t m = index_t(kCopyBytes / (std::size_t(P) * Vec<T>::N * sizeof(T)));
    if (threads > 1) m = imin(m, units / (4 * index_t(threads)));
    item_blocks = imax(kChunk, imin(kMaxItem, m)) / kChunk * kChunk;
    items = (units + item_blocks - 1) / item_blocks;
  }
};

// Maximum (and, when kIdx, its flat plane position) of the bin of rows [h0, h0 + nh),
// columns [w0, w0 + nw), for U blocks of lanes: pixel q of block k at src[k] + q*N.
template <int U, bool kIdx, class T>
inline void scan(const T* const* src, index_t W, index_t h0, index_t nh, index_t w0, index_t nw, Vec<T>* best,
                 Vec<T>* pos) {
  using V = Vec<T>;
  const index_t q0 = h0 * W + w0;
  for (int k = 0; k < U; ++k) {
    best[k] = V::load(src[k] + q0 * V::N);
    if (kIdx) pos[k] = V::set1(T(q0));
  }
  for (index_t i = 0; i < nh; ++i)
    for (index_t j = i == 0 ? 1 : 0; j < nw; ++j) {
      const index_t q = q0 + i * W + j;
      const V qv = V::set1(T(q));
      for (int k = 0; k < U; ++k) {
        const V v = V::load(src[k] + q * V::N);
        const typename V::M m = V::gt_or_nan(v, best[k]);
        best[k] = V::select(m, v, best[k]);
        if (kIdx) pos[k] = V::select(m, qv, pos[k]);
      }
    }
}

// Every bin of every level for U blocks: value (and position) of block k, bin b
// (numbered across levels) at val[k] + b*N (pos[k] + b*N). With positions, a level
// that is a union of a finer level's bins merges their maxima by the scan rule over
// positions (the larger value, the earlier position among equal values, the later
// among NaNs) instead of scanning its taps again.
template <int U, bool kIdx, class T>
void scan_levels(const Plan<T>& pl, const BinLevel<T>* lv, int nl, const T* const* src, T* const* val, T* const* pos) {
  using V = Vec<T>;
  const index_t W = lv[0].axis[2].in;
  for (int oi = 0; oi < nl; ++oi) {
    const int l = pl.pyr.order[oi], f = kIdx ? pl.pyr.source[l] : -1;
    const BinAxis &ah = lv[l].axis[1], &aw = lv[l].axis[2];
    for (index_t oh = 0; oh < ah.out; ++oh)
      for (index_t ow = 0; ow < aw.out; ++ow) {
        V best[U], at[U];
        if (f < 0) {
          scan<U, kIdx>(src, W, ah.first[oh], ah.count[oh], aw.first[ow], aw.count[ow], best, at);
        } else {
          const index_t* const* rg = pl.pyr.range + l * 6;
          const index_t FW = lv[f].axis[2].out;
          const index_t f0 = (pl.boff[f] + rg[2][oh] * FW + rg[4][ow]) * V::N;
          for (int k = 0; k < U; ++k) {  // from the first fine bin (merging it again changes nothing)
            best[k] = V::load(val[k] + f0);
            at[k] = V::load(pos[k] + f0);
          }
          for (index_t fh = rg[2][oh]; fh < rg[3][oh]; ++fh)
            for (index_t fw = rg[4][ow]; fw < rg[5][ow]; ++fw) {
              const index_t fb = (pl.boff[f] + fh * FW + fw) * V::N;
              for (int k = 0; k < U; ++k) {
                const V v2 = V::load(val[k] + fb), q2 = V::load(pos[k] + fb);
                const typename V::M win = merge_wins(best[k], v2, V::lt(q2, at[k]));
                best[k] = V::select(win, v2, best[k]);
                at[k] = V::select(win, q2, at[k]);
              }
            }
        }
        const index_t b = (pl.boff[l] + oh * aw.out + ow) * V::N;
        for (int k = 0; k < U; ++k) {
          V::store(val[k] + b, best[k]);
          if (kIdx) V::store(pos[k] + b, at[k]);
        }
      }
  }
}

// The item's blocks, copied pixel-major (block k's pixel q at copy[k] + q*N), with
// their bins' values (or gradients) and positions, in kChunk scans.
template <class T>
struct Item {
  using V = Vec<T>;
  Unit<T> unit[kMaxItem];
  T *copy[kMaxItem], *val[kMaxItem], *pos[kMaxItem];
  int n = 0, direct = 0;  // blocks; the leading ones are whole vectors of channels_last

  static std::size_t bytes(const Plan<T>& pl) {
    return (Scratch::bytes<T>(pl.P * V::N) + Scratch::bytes<T>(pl.total_bins * V::N) * 2) *
           std::size_t(pl.item_blocks);
  }
  Item(Scratch& mem, const Plan<T>& pl) {
    for (index_t k = 0; k < pl.item_blocks; ++k) {
      copy[k] = mem.take<T>(pl.P * V::N);
      val[k] = mem.take<T>(pl.total_bins * V::N);
      pos[k] = mem.take<T>(pl.total_bins * V::N);
    }
  }
  void load(const BinProblem& pb, const Plan<T>& pl, index_t it, const T* x) {
    const index_t u0 = it * pl.item_blocks;
    n = int(imin(pl.item_blocks, pl.units - u0));
    direct = 0;
    for (int k = 0; k < n; ++k) {
      unit[k] = Unit<T>::make(pb, 1, u0 + k);
      if (unit[k].direct() && direct == k) ++direct;
    }
    for (index_t q = 0; q < pl.P; ++q)
      for (int k = 0; k < direct; ++k) V::store(copy[k] + q * V::N, V::load(x + unit[k].base + q * unit[k].pixel_stride));
    for (int k = direct; k < n; ++k) unit[k].load_pixels(x, 0, pl.P, copy[k]);
  }
  template <bool kIdx>
  void scan_all(const Plan<T>& pl, const BinLevel<T>* lv, int nl) {
    for (int k = 0; k < n; k += kChunk) {
      const T* const* s = copy + k;
      switch (n - k) {
        case 1: scan_levels<1, kIdx>(pl, lv, nl, s, val + k, pos + k); break;
        case 2: scan_levels<2, kIdx>(pl, lv, nl, s, val + k, pos + k); break;
        case 3: scan_levels<3, kIdx>(pl, lv, nl, s, val + k, pos + k); break;
        default: scan_levels<kChunk, kIdx>(pl, lv, nl, s, val + k, pos + k);
      }
    }
  }
  // The copies back into a gradient, every element once, with one canonical NaN (which
  // of two NaNs a sum returns depends on the operand order the compiler picks).
  void store(const Plan<T>& pl, T* gx) const {
    for (index_t q = 0; q < pl.P; ++q)
      for (int k = 0; k < direct; ++k)
        V::store(gx + unit[k].base + q * unit[k].pixel_stride, canonical_nan(V::load(copy[k] + q * V::N)));
    for (int k = direct; k < n; ++k) {
      for (index_t q = 0; q < pl.P; ++q) V::store(copy[k] + q * V::N, canonical_nan(V::load(copy[k] + q * V::N)));
      unit[k].store_pixels(gx, 0, pl.P, copy[k]);
    }
  }
};

template <class T>
void forward(const T* x, const BinProblem& pb, const BinLevel<T>* lv, int nl, int threads) {
  using V = Vec<T>;
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
      if (idx)
        item.template scan_all<true>(pl, lv, nl);
      else
        item.template scan_all<false>(pl, lv, nl);
      for (int l = 0; l < nl; ++l) {
        const index_t OH = lv[l].axis[1].out, OW = lv[l].axis[2].out, bins = OH * OW;
        for (int k = 0; k < item.n; ++k) {
          // a block's values are laid out as the level's staging tile: (bin, lane)
          T* v = item.val[k] + pl.boff[l] * V::N;
          const LevelIO<T> io(pb, item.unit[k], lv[l], v, bins * V::N);
          if (io.staged())
            io.store_all(lv[l].y);
          else
            for (index_t oh = 0; oh < OH; ++oh)
              for (index_t ow = 0; ow < OW; ++ow) io.put(lv[l].y, 0, oh, ow, 0, V::load(v + (oh * OW + ow) * V::N));
          if (!lv[l].indices) continue;
          const LaneOffsets<T>& lo = io.offsets();
          const T* p = item.pos[k] + pl.boff[l] * V::N;
          for (index_t oh = 0; oh < OH; ++oh)
            for (index_t ow = 0; ow < OW; ++ow) {
              const index_t at = io.at(0, oh, ow, 0), b = (oh * OW + ow) * V::N;
              for (index_t i = 0; i < item.unit[k].lanes; ++i) lv[l].indices[lo.off[i] + at] = std::int64_t(p[b + i]);
            }
        }
      }
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
  int ok = 1;
  parallel_for(pl.items, threads, 2 * pb.size(), [&](index_t i0, index_t i1) {
    Scratch mem(Item<T>::bytes(pl));
    if (!mem.ok()) return report_failure(ok);
    Item<T> item(mem, pl);
    for (index_t it = i0; it < i1; ++it) {
      item.load(pb, pl, it, x);
      item.template scan_all<true>(pl, lv, nl);
      for (int k = 0; k < item.n; ++k) {
        T* g = item.val[k];  // the bins' gradients replace their values, as the staging tile
        for (int l = 0; l < nl; ++l) {
          const index_t OH = lv[l].axis[1].out, OW = lv[l].axis[2].out;
          T* gl = g + pl.boff[l] * V::N;
          const LevelIO<T> io(pb, item.unit[k], lv[l], gl, OH * OW * V::N);
          io.load_all(lv[l].grad_y);
          if (!io.staged())
            for (index_t oh = 0; oh < OH; ++oh)
              for (index_t ow = 0; ow < OW; ++ow) V::store(gl + (oh * OW + ow) * V::N, io.get(lv[l].grad_y, 0, oh, ow, 0));
        }
        // each lane's bin gradients added at its argmax, levels then bins in order, so
        // a pixel's sum has one order on every path
        T* buf = item.copy[k];
        for (index_t q = 0; q < pl.P; ++q) V::store(buf + q * V::N, V::zero());
        const T* pos = item.pos[k];
        for (index_t b = 0; b < pl.total_bins * V::N; b += V::N)
          for (index_t i = 0; i < V::N; ++i) buf[index_t(pos[b + i]) * V::N + i] += g[b + i];
      }
      item.store(pl, gx);
    }
  });
  if (!ok) throw std::bad_alloc();
  return -1;
}

}  // namespace binmax
