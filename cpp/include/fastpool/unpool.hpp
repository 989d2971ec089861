// Max unpooling (PyTorch's max_unpool1d/2d/3d): the pooled values put back at the
// positions their indices name, zeros elsewhere, and its gradient.
#pragma once

#include "fastpool/geometry.hpp"

namespace fastpool {

/// A batch of (n, c) planes: `in_size` pooled elements each (x and its indices),
/// `out_size` unpooled ones; (N, C, *spatial) or (N, *spatial, C), C-contiguous.
/// An index is flat over the output's spatial positions of its plane.
struct UnpoolProblem {
  index_t batch = 1, channels = 1, in_size = 1, out_size = 1;
  bool channels_last = false;
  bool skip_minus_one = false;  ///< scatter_add: an index of -1 adds nothing (a dropped maximum)

  index_t in_elements() const { return batch * channels * in_size; }
  index_t out_elements() const { return batch * channels * out_size; }
};

/// Throws std::invalid_argument unless every size is in [1, 2**40] and the element
/// counts fit in int64.
void check_unpool(const UnpoolProblem& up);

/// PyTorch's default unpooled size of an axis, (in - 1) * stride - 2 * padding + kernel;
/// throws std::invalid_argument unless in, kernel, stride >= 1, padding >= 0 and the
/// size is at least 1.
index_t unpool_default_size(index_t in, index_t kernel, index_t stride, index_t padding);

}  // namespace fastpool
