// The portable reference path: one lane, compiled with the baseline flags.
#include "isa/prelude.hpp"

namespace fastpool {
namespace scalar {

#include "simd/vec_scalar.hpp"
template <class T>
using Vec = Scalar<T>;
#include "kernels/all-inl.hpp"

}  // namespace scalar
}  // namespace fastpool
