// Every kernel template and the table that exposes their instantiations for one
// ISA. Included by each src/isa/*.cpp inside its own namespace, after the vector
// types `Vec<T>` (and `Scalar<T>`) of that ISA.
#include "simd/math-inl.hpp"
#include "kernels/common-inl.hpp"
#include "kernels/rows-inl.hpp"
#include "kernels/channels_last-inl.hpp"
#include "kernels/small_plane-inl.hpp"
#include "kernels/max_pool-inl.hpp"
#include "kernels/avg_pool-inl.hpp"
#include "kernels/bins-inl.hpp"
#include "kernels/global_pool-inl.hpp"
#include "kernels/bin_max-inl.hpp"
#include "kernels/line_max-inl.hpp"
#include "kernels/unpool-inl.hpp"
#include "kernels/fractional-inl.hpp"
#include "kernels/hopfield-inl.hpp"

// Bin reductions: global max / avg pooling and the max over adaptive bins of small
// planes have loops of their own; every other bin reduction runs the general kernels.
template <class T>
index_t bin_forward_impl(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                         const BinLevel<T>* levels, int n_levels, int threads) {
  if (global::applies(pb, op, levels, n_levels)) {
    if (op == BinReduce::max)
      global::forward<BinReduce::max>(x, pb, levels[0], threads);
    else
      global::forward<BinReduce::avg>(x, pb, levels[0], threads);
    return -1;
  }
  if (binmax::applies(pb, op, levels, n_levels, false)) {
    binmax::forward(x, pb, levels, n_levels, threads);
    return -1;
  }
  return bins::forward(x, pb, op, pp, levels, n_levels, threads);
}

template <class T>
index_t bin_backward_impl(const T* x, const BinProblem& pb, BinReduce op, const BinParams<T>& pp,
                          const BinLevel<T>* levels, int n_levels, T* grad_x, T* grad_p, int threads) {
  if (global::applies(pb, op, levels, n_levels))
    return op == BinReduce::max ? global::backward<BinReduce::max>(x, pb, levels[0], grad_x, threads)
                                : global::backward<BinReduce::avg>(x, pb, levels[0], grad_x, threads);
  if (binmax::applies(pb, op, levels, n_levels, true)) return binmax::backward(x, pb, levels, n_levels, grad_x, threads);
  return bins::backward(x, pb, op, pp, levels, n_levels, grad_x, grad_p, threads);
}

template <class T>
PoolKernels<T> make_kernels() {
  PoolKernels<T> k;
  k.max_forward = &max_pool_forward_impl<T>;
  k.max_backward = &max_pool_backward_impl<T>;
  k.avg_forward = &avg_pool_forward_impl<T>;
  k.avg_backward = &avg_pool_backward_impl<T>;
  k.bin_forward = &bin_forward_impl<T>;
  k.bin_backward = &bin_backward_impl<T>;
  k.line_forward = &lines::forward<T>;
  k.line_backward = &lines::backward<T>;
  k.center_forward = &lines::center_forward<T>;
  k.unpool_forward = &unpool::forward<T>;
  k.unpool_backward = &unpool::backward<T>;
  k.scatter_add = &unpool::forward<T, true>;
  k.fractional_forward = &fractional::forward<T>;
  k.hopfield_forward = &hopfield::forward<T>;
  k.hopfield_backward = &hopfield::backward<T>;
  return k;
}

template <class T>
MathKernels<T> make_math() {
  MathKernels<T> m;
  m.exp = &exp_array<T>;
  m.log = &log_array<T>;
  m.pow = &pow_array<T>;
  m.transpose = &transpose_array<T>;
  return m;
}

void fill_table(KernelTable& t) {
  t.f32 = make_kernels<float>();
  t.f64 = make_kernels<double>();
  t.math32 = make_math<float>();
  t.math64 = make_math<double>();
}
