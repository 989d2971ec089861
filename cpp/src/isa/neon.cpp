// NEON path: baseline on arm64, so no extra flags.
#include "isa/prelude.hpp"

#include <arm_neon.h>

namespace fastpool {
namespace neon {

#include "simd/vec_scalar.hpp"
#include "simd/vec_neon.hpp"
#include "kernels/all-inl.hpp"

}  // namespace neon
}  // namespace fastpool
