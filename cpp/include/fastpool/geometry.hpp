// Pooling geometry: the single source of truth for output sizes and padding rules.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastpool {

using index_t = std::ptrdiff_t;

/// Maximum spatial rank. Lower ranks are embedded as trailing axes of rank 3
/// (1D: (1, 1, W), 2D: (1, H, W)) with kernel 1, stride 1 and no padding.
constexpr int kMaxRank = 3;

/// One spatial axis. A window for output o covers input positions
/// o*stride - pad_before + j*dilation, j = 0..kernel-1; positions outside
/// [0, in) are padding.
struct AxisGeometry {
  index_t in = 1;
  index_t kernel = 1;
  index_t stride = 1;
  index_t dilation = 1;
  index_t pad_before = 0;
  index_t pad_after = 0;
  bool ceil_mode = false;
  index_t out = 1;  ///< filled by make_axis

  /// First input position of window o (may be negative: padding).
  index_t start(index_t o) const { return o * stride - pad_before; }
  /// Taps j in [first, last) of window o fall inside [lo, hi).
  void taps_inside(index_t o, index_t lo, index_t hi, index_t& first, index_t& last) const {
    const index_t s = start(o);
    if (dilation == 1) {  // the common case, without divisions
      first = s >= lo ? 0 : lo - s;
      last = s >= hi ? 0 : hi - s;
    } else {  // smallest j with s + j*d >= lo; one past the largest j with s + j*d < hi
      first = s >= lo ? 0 : (lo - s + dilation - 1) / dilation;
      last = s >= hi ? 0 : (hi - 1 - s) / dilation + 1;
    }
    if (first > kernel) first = kernel;
    if (last > kernel) last = kernel;
    if (last < first) last = first;
  }
  /// Taps of window o that read real input: [first, last).
  void valid_taps(index_t o, index_t& first, index_t& last) const { taps_inside(o, 0, in, first, last); }
};

/// Output size along one axis (floor or ceil mode, PyTorch's rule that a last
/// window starting in the right padding is dropped). Throws std::invalid_argument
/// for invalid parameters, an empty output, or a window made only of padding.
AxisGeometry make_axis(index_t in, index_t kernel, index_t stride, index_t dilation,
                       index_t pad_before, index_t pad_after, bool ceil_mode);

/// TensorFlow "SAME" (extra pad at the end) or ONNX SAME_LOWER (extra pad first):
/// out = ceil(in / stride); returns the pads through pad_before / pad_after.
void same_padding(index_t in, index_t kernel, index_t stride, index_t dilation, bool lower,
                  index_t& pad_before, index_t& pad_after);

/// The whole problem: batch N, channels C, three spatial axes (depth, height, width)
/// and the memory layout of a C-contiguous input.
struct PoolGeometry {
  index_t batch = 1;
  index_t channels = 1;
  AxisGeometry axis[kMaxRank];
  bool channels_last = false;

  index_t in_plane() const { return axis[0].in * axis[1].in * axis[2].in; }
  index_t out_plane() const { return axis[0].out * axis[1].out * axis[2].out; }
  index_t kernel_volume() const { return axis[0].kernel * axis[1].kernel * axis[2].kernel; }
  index_t in_size() const { return batch * channels * in_plane(); }
  index_t out_size() const { return batch * channels * out_plane(); }
};

/// Checks every invariant the kernels rely on (sizes positive, products fit in
/// int64, kernel volume small enough to be tracked exactly). Throws std::invalid_argument.
void check_geometry(const PoolGeometry& g);

/// Divisor rule of average pooling.
struct AvgOptions {
  bool count_include_pad = true;
  index_t divisor_override = 0;  ///< 0: none
};

/// Number of taps of window o counted by the divisor along one axis.
index_t avg_axis_count(const AxisGeometry& a, index_t o, bool count_include_pad);

}  // namespace fastpool
