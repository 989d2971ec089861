// Bin geometry of the reductions over explicit tap ranges: global, adaptive, spatial
// pyramid and strip pooling (one bin per output, PyTorch's adaptive rule), and the
// windowed LP / GeM / SoftPool / mixed pooling (a window's taps inside the input are a bin too).
#pragma once

#include <cstdint>
#include <vector>

#include "fastpool/geometry.hpp"

namespace fastpool {

/// One axis of a bin grid: output o reduces input positions first[o] + j*step for
/// j < count[o], all inside [0, in); divisor[o] is the count the mean divides by.
/// Plain pointers: the kernels (compiled per ISA) see no std:: containers.
struct BinAxis {
  index_t in = 1;
  index_t out = 1;
  index_t step = 1;
  const index_t* first = nullptr;
  const index_t* count = nullptr;
  const index_t* divisor = nullptr;
};

/// Owns the arrays a BinAxis points into.
class AxisBins {
 public:
  AxisBins() = default;
  AxisBins(index_t in, index_t out, index_t step);
  BinAxis view() const;
  std::vector<index_t> first, count, divisor;
  index_t in = 1, out = 1, step = 1;
  /// Whether a position is covered by a contiguous, non-decreasing range of bins
  /// (adaptive bins; the gather-form backward relies on it).
  bool monotone = true;
};

/// PyTorch's adaptive bins: bin i covers [floor(i*in/out), ceil((i+1)*in/out)).
/// Throws std::invalid_argument unless 1 <= in, out <= 2**40.
AxisBins adaptive_bins(index_t in, index_t out);

/// The taps inside the input of each window of a pooling axis; the divisor follows
/// avg_axis_count (count_include_pad).
AxisBins window_bins(const AxisGeometry& a, bool count_include_pad);

/// The input of a bin reduction: (N, C, D, H, W) or (N, D, H, W, C), C-contiguous.
struct BinProblem {
  index_t batch = 1;
  index_t channels = 1;
  index_t in[kMaxRank] = {1, 1, 1};
  bool channels_last = false;

  index_t plane() const { return in[0] * in[1] * in[2]; }
  index_t size() const { return batch * channels * plane(); }
};

/// One output grid of a reduction and where its values go: element (n, c, od, oh, ow)
/// of y (and of indices / grad_y / the given indices) is at
/// n*stride_n + c*stride_c + od*stride[0] + oh*stride[1] + ow*stride[2].
/// Spatial pyramid pooling has several levels writing into one array.
template <class T>
struct BinLevel {
  BinAxis axis[kMaxRank];
  index_t stride_n = 0, stride_c = 0, stride[kMaxRank] = {0, 0, 0};
  T* y = nullptr;                                 ///< forward output
  std::int64_t* indices = nullptr;                ///< forward argmax (max only; nullable)
  const T* grad_y = nullptr;                      ///< backward input
  const std::int64_t* given_indices = nullptr;    ///< backward argmax (max only; nullable)

  index_t bins() const { return axis[0].out * axis[1].out * axis[2].out; }
};

enum class BinReduce : int {
  max = 0,  ///< maximum (PyTorch's tie and NaN rules), optional int64 argmax
  avg = 1,  ///< sum / divisor
  lp = 2,   ///< (sum |x|^p)^(1/p), ONNX's LpPool
  gem = 3,  ///< (sum max(x, eps)^p / divisor)^(1/p), generalized mean
  soft = 4, ///< sum(e^x x) / sum(e^x), SoftPool's softmax-weighted mean (relative to the bin max)
  mixed = 5, ///< alpha max + (1 - alpha) sum / divisor, mixed max-average pooling (alpha = BinParams::p)
  stochastic = 6,       ///< a tap drawn with probability x / sum x (x >= 0), optional int64 position
  stochastic_mean = 7,  ///< sum x^2 / sum x (x >= 0), stochastic pooling's inference form
  dropout = 8,          ///< max over the taps, dropped ones read as 0 (max-pooling dropout, training)
  dropout_mean = 9,     ///< sum p q^c_i x_i (c_i: taps ranked above tap i), its inference form
};

/// The parameters of a reduction: p is the power means' exponent, mixed pooling's
/// alpha (one value for every channel, or one per channel) or max-pooling dropout's
/// rate q; eps GeM's clamp; seed stochastic pooling's and dropout's (the draw of bin b,
/// or the mask of element q, of plane n*C + c is a hash of the seed, the plane and b
/// or q: the same at any thread count and on every SIMD path).
template <class T>
struct BinParams {
  T p = T(1);
  const T* p_channel = nullptr;  ///< C values, or null for the scalar p
  T eps = T(0);
  std::uint64_t seed = 0;
  T keep = T(1);                 ///< dropout: 1 - rate, rounded once from the exact rate
  std::uint64_t drop_below = 0;  ///< dropout: an element whose 32-bit hash is below this is dropped
};

/// floor(rate * 2**32): dropout's threshold for a rate in [0, 1] (0 otherwise).
std::uint64_t dropout_threshold(double rate);

/// Checks a problem and its levels against each other (sizes, bins inside the
/// input, argmax positions exact in T). Throws std::invalid_argument.
template <class T>
void check_bins(const BinProblem& pb, BinReduce op, const BinLevel<T>* levels, int n_levels);

}  // namespace fastpool
