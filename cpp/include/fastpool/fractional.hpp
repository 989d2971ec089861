// Fractional max pooling (Graham 2014, PyTorch's fractional_max_pool2d/3d): windows of
// a fixed size at pseudo-random starts, one sample u in [0, 1) per (n, c, axis).
#pragma once

#include "fastpool/geometry.hpp"

namespace fastpool {

/// (N, C, D, H, W) or (N, D, H, W, C), C-contiguous; 2D problems have D = 1 and a
/// kernel depth of 1. samples[(n*C + c)*rank + sample_axis[a]] is the u of spatial
/// axis a (D, H, W), or none when sample_axis[a] < 0 (an axis that is not pooled:
/// in = out = kernel = 1). PyTorch's order: 2D samples are (W, H), 3D ones (D, H, W).
struct FractionalProblem {
  index_t batch = 1, channels = 1;
  index_t in[kMaxRank] = {1, 1, 1}, out[kMaxRank] = {1, 1, 1}, kernel[kMaxRank] = {1, 1, 1};
  int rank = 2;
  int sample_axis[kMaxRank] = {-1, 1, 0};
  bool channels_last = false;

  index_t in_plane() const { return in[0] * in[1] * in[2]; }
  index_t out_plane() const { return out[0] * out[1] * out[2]; }
};

/// Throws std::invalid_argument unless sizes are in [1, 2**40], out + kernel - 1 <= in
/// on every axis (PyTorch's rule), the element counts fit in int64 and a plane
/// (channels_last: a sample) holds fewer than 2**31 elements.
void check_fractional(const FractionalProblem& fp);

/// PyTorch's window start of output i on an axis: in - k for the last output, else
/// int((i + u) * alpha) - int(u * alpha) with alpha = (in - k) / (out - 1), all in T
/// (PyTorch truncates to int; to int64 here, the same wherever int holds the value).
template <class T>
inline index_t fractional_start(T u, index_t i, index_t in, index_t out, index_t k) {
  if (i == out - 1) return in - k;
  const T alpha = static_cast<T>(in - k) / static_cast<T>(out - 1);
  return static_cast<index_t>((static_cast<T>(i) + u) * alpha) - static_cast<index_t>(u * alpha);
}

}  // namespace fastpool
