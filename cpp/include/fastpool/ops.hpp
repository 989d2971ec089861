// One declaration per operator: plain pointers + geometry. Each call goes through
// the dispatch table to the active SIMD path. Arrays are C-contiguous in the
// geometry's layout: (N, C, D, H, W) or (N, D, H, W, C).
#pragma once

#include <cstdint>

#include "fastpool/geometry.hpp"

namespace fastpool {

/// y = max over each window; indices (nullable) get the int64 flat spatial index
/// of the maximum (first in window order; NaN propagates, index at the last NaN).
template <class T>
void max_pool_forward(const T* x, T* y, std::int64_t* indices, const PoolGeometry& g, int threads);

/// grad_x = sum of grad_y routed to each window's argmax, recomputed from x when
/// indices is null. Returns -1, or the flat position of the first index outside
/// the spatial plane (grad_x is then unspecified).
template <class T>
index_t max_pool_backward(const T* grad_y, const T* x, const std::int64_t* indices, T* grad_x,
                          const PoolGeometry& g, int threads);

/// y = sum over each window's taps inside the input / divisor.
template <class T>
void avg_pool_forward(const T* x, T* y, const PoolGeometry& g, const AvgOptions& opt, int threads);

/// grad_x[i] = sum over windows covering i of grad_y / divisor.
template <class T>
void avg_pool_backward(const T* grad_y, T* grad_x, const PoolGeometry& g, const AvgOptions& opt,
                       int threads);

}  // namespace fastpool
