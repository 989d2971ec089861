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

template <class T>
PoolKernels<T> make_kernels() {
  PoolKernels<T> k;
  k.max_forward = &max_pool_forward_impl<T>;
  k.max_backward = &max_pool_backward_impl<T>;
  k.avg_forward = &avg_pool_forward_impl<T>;
  k.avg_backward = &avg_pool_backward_impl<T>;
  k.bin_forward = &bin_forward_impl<T>;
  k.bin_backward = &bin_backward_impl<T>;
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
