// AVX-512 F/CD/VL/BW/DQ path (compiled with those flags; used only if the CPU and
// the OS support them).
#include "isa/prelude.hpp"

#include <immintrin.h>

namespace fastpool {
namespace avx512 {

#include "simd/vec_scalar.hpp"
#include "simd/vec_avx512.hpp"
#include "kernels/all-inl.hpp"

}  // namespace avx512
}  // namespace fastpool
