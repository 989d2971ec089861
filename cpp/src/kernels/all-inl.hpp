// Every kernel template and the table that exposes their instantiations for one
// ISA. Included by each src/isa/*.cpp inside its own namespace, after the vector
// types `Vec<T>` (and `Scalar<T>`) of that ISA.
#include "kernels/common-inl.hpp"
#include "kernels/rows-inl.hpp"
#include "kernels/channels_last-inl.hpp"
#include "kernels/small_plane-inl.hpp"
#include "kernels/max_pool-inl.hpp"
#include "kernels/avg_pool-inl.hpp"

template <class T>
PoolKernels<T> make_kernels() {
  PoolKernels<T> k;
  k.max_forward = &max_pool_forward_impl<T>;
  k.max_backward = &max_pool_backward_impl<T>;
  k.avg_forward = &avg_pool_forward_impl<T>;
  k.avg_backward = &avg_pool_backward_impl<T>;
  return k;
}

void fill_table(KernelTable& t) {
  t.f32 = make_kernels<float>();
  t.f64 = make_kernels<double>();
}
