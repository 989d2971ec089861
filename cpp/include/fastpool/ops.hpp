// One declaration per operator: plain pointers + geometry. Each call goes through
// the dispatch table to the active SIMD path. Arrays are C-contiguous in the
// geometry's layout: (N, C, D, H, W) or (N, D, H, W, C).
#pragma once

#include <cstdint>

#include "fastpool/bins.hpp"
#include "fastpool/fractional.hpp"
#include "fastpool/geometry.hpp"
#include "fastpool/hopfield.hpp"
#include "fastpool/lines.hpp"
#include "fastpool/unpool.hpp"

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

/// Reductions over bins (global, adaptive, pyramid, strip, LP, GeM, SoftPool, mixed,
/// stochastic): writes every level's y (and, for max and stochastic, indices where
/// given). Returns -1, or (stochastic reductions) 0 when a bin holds a value that is
/// negative, NaN or +inf (y is then unspecified).
template <class T>
index_t bin_forward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                 const BinLevel<T>* levels, int n_levels, int threads);

/// grad_x of a bin reduction from every level's grad_y. x may be null for avg and
/// for max with given indices. For GeM (mixed pooling), grad_p (nullable) receives
/// dL/dp (dL/dalpha) per channel, summed over the batch. Returns -1, 0 (stochastic_mean:
/// as bin_forward, a value outside [0, inf)), or (max with given indices) the
/// smallest element offset, counted from level 0's indices pointer (a pyramid's
/// levels share one array), of an index outside the plane (grad_x is then unspecified).
template <class T>
index_t bin_backward(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                     const BinLevel<T>* levels, int n_levels, T* grad_x, T* grad_p, int threads);

/// y = the line maxima of x (lp.scan along lp.axis) + add. add is nullable and may
/// be y itself (adds to what y holds); NaN propagates.
template <class T>
void line_max_forward(const T* x, const T* add, T* y, const LineProblem& lp, int threads);

/// grad_x = grad_y routed to the positions that supplied each maximum + add
/// (nullable, may be grad_x itself). Along a line scanned from its far edge, the
/// first element found strictly greater than all before it supplies the maximum
/// (CornerNet's rule; NaN counts as the largest value, its first occurrence wins);
/// a whole-line maximum is the one found first scanning from the end of the line.
template <class T>
void line_max_backward(const T* grad_y, const T* x, const T* add, T* grad_x, const LineProblem& lp,
                       int threads);

/// Center pooling's forward: y[i, j] = max over the column j of x + max over the row i
/// of x2 in each plane (x2 may be x; lp.axis and lp.scan are not used); NaN propagates.
template <class T>
void center_max_forward(const T* x, const T* x2, T* y, const LineProblem& lp, int threads);

/// Max unpooling: y = 0, then y[index] = x in each plane (of equal indices the last in
/// input order wins). Returns the flat position of the first index outside
/// [0, up.out_size), or -1 (y is then unspecified).
template <class T>
index_t max_unpool_forward(const T* x, const std::int64_t* indices, T* y, const UnpoolProblem& up, int threads);

/// y = 0, then y[index] += x in each plane: a gradient routed to the argmax positions a
/// forward returned (max, fractional max, stochastic pooling). Returns as max_unpool_forward.
template <class T>
index_t scatter_add(const T* x, const std::int64_t* indices, T* y, const UnpoolProblem& up, int threads);

/// Gradient of max unpooling: grad_x = grad_y at the indices. Returns as the forward
/// (grad_x holds 0 where an index is outside).
template <class T>
index_t max_unpool_backward(const T* grad_y, const std::int64_t* indices, T* grad_x, const UnpoolProblem& up,
                            int threads);

/// Fractional max pooling: y = the maximum of each window (PyTorch's starts from the
/// samples, its scan: first maximum, the last NaN); idx (nullable) its flat spatial
/// position. The gradient is max pooling's with given indices (bin_backward).
template <class T>
void fractional_max_forward(const T* x, const T* samples, T* y, std::int64_t* idx, const FractionalProblem& fp,
                            int threads);

/// Hopfield pooling: y[n, q] = sum_j softmax_j(beta <queries[q], x[n, j]>) x[n, j] over the
/// positions j of sample n; y is (N, Q, C). beta must be finite.
template <class T>
void hopfield_forward(const T* x, const T* queries, T beta, T* y, const HopfieldProblem& hp, int threads);

/// Its gradients from grad_y (N, Q, C): grad_x (x's layout), grad_queries (Q, C) and
/// *grad_beta, both summed over the batch in order (the same bits at any thread count).
template <class T>
void hopfield_backward(const T* x, const T* queries, T beta, const T* grad_y, T* grad_x, T* grad_queries,
                       T* grad_beta, const HopfieldProblem& hp, int threads);

}  // namespace fastpool
