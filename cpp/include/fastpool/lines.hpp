// Running maxima along the rows or the columns of 2-D planes: the directional pools
// of CornerNet (top, bottom, left, right) and the whole-line maxima of CenterNet's
// center pooling.
#pragma once

#include "fastpool/geometry.hpp"

namespace fastpool {

/// Which maxima a line scan produces at position i of a line of length L.
enum class LineScan : int {
  from_end = 0,    ///< max over [i, L): top pooling along H, left pooling along W
  from_start = 1,  ///< max over [0, i]: bottom pooling along H, right pooling along W
  whole = 2,       ///< max over [0, L), at every position (center pooling's parts)
};

/// A batch of 2-D planes, (N, C, H, W) or (N, H, W, C) C-contiguous, scanned along
/// H (axis 0: each column is a line) or W (axis 1: each row is a line).
struct LineProblem {
  index_t batch = 1, channels = 1, height = 1, width = 1;
  bool channels_last = false;
  int axis = 0;
  LineScan scan = LineScan::from_end;

  index_t size() const { return batch * channels * height * width; }
  index_t length() const { return axis == 0 ? height : width; }
};

/// Throws std::invalid_argument unless sizes are in [1, 2**40] with a product that
/// fits in int64, axis is 0 or 1 and scan is one of LineScan's values.
void check_lines(const LineProblem& lp);

}  // namespace fastpool
