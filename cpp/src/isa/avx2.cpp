// AVX2 + FMA path (compiled with -mavx2 -mfma; used only if cpuid and xgetbv agree).
#include "isa/prelude.hpp"

#include <immintrin.h>

namespace fastpool {
namespace avx2 {

#include "simd/vec_scalar.hpp"
#include "simd/vec_avx2.hpp"
#include "kernels/all-inl.hpp"

}  // namespace avx2
}  // namespace fastpool
