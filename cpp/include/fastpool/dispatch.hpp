// Run-time SIMD dispatch: one kernel table per compiled ISA, the best supported
// one chosen once at start-up (or forced lower by FASTPOOL_SIMD / set_isa).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastpool/bins.hpp"
#include "fastpool/geometry.hpp"
#include "fastpool/lines.hpp"
#include "fastpool/fractional.hpp"
#include "fastpool/hopfield.hpp"
#include "fastpool/unpool.hpp"

namespace fastpool {

enum class Isa : int { scalar = 0, neon = 1, avx2 = 2, avx512 = 3 };

template <class T>
struct PoolKernels {
  void (*max_forward)(const T*, T*, std::int64_t*, const PoolGeometry&, int);
  index_t (*max_backward)(const T*, const T*, const std::int64_t*, T*, const PoolGeometry&, int);
  void (*avg_forward)(const T*, T*, const PoolGeometry&, const AvgOptions&, int);
  void (*avg_backward)(const T*, T*, const PoolGeometry&, const AvgOptions&, int);
  index_t (*bin_forward)(const T*, const BinProblem&, BinReduce, const BinParams<T>&, const BinLevel<T>*, int, int);
  index_t (*bin_backward)(const T*, const BinProblem&, BinReduce, const BinParams<T>&, const BinLevel<T>*, int, T*,
                          T*, int);
  void (*line_forward)(const T*, const T*, T*, const LineProblem&, int);
  void (*line_backward)(const T*, const T*, const T*, T*, const LineProblem&, int);
  void (*center_forward)(const T*, const T*, T*, const LineProblem&, int);
  index_t (*unpool_forward)(const T*, const std::int64_t*, T*, const UnpoolProblem&, int);
  index_t (*unpool_backward)(const T*, const std::int64_t*, T*, const UnpoolProblem&, int);
  index_t (*scatter_add)(const T*, const std::int64_t*, T*, const UnpoolProblem&, int);
  void (*fractional_forward)(const T*, const T*, T*, std::int64_t*, const FractionalProblem&, int);
  void (*hopfield_forward)(const T*, const T*, T, T*, const HopfieldProblem&, int);
  void (*hopfield_backward)(const T*, const T*, T, const T*, T*, T*, T*, const HopfieldProblem&, int);
};

// Element-wise vector math of each path, over arrays: the tests compare every path
// with the scalar one and with libm.
template <class T>
struct MathKernels {
  void (*exp)(const T* x, T* y, index_t n);
  void (*log)(const T* x, T* y, index_t n);
  /// x >= 0, p > 0: x**p (0 for x == 0).
  void (*pow)(const T* x, const T* p, T* y, index_t n);
  void (*transpose)(const T* src, index_t ss, T* dst, index_t ds, index_t n_blocks);  // V::transpose_block per N x N block
};

struct KernelTable {
  PoolKernels<float> f32;
  PoolKernels<double> f64;
  MathKernels<float> math32;
  MathKernels<double> math64;
};

const char* isa_name(Isa isa);
/// Throws std::invalid_argument naming the valid choices.
Isa parse_isa(const std::string& name);
/// Compiled into this build, worst first.
std::vector<Isa> compiled_isas();
/// Compiled and supported by this CPU and OS, worst first.
std::vector<Isa> available_isas();
Isa active_isa();
/// Throws std::invalid_argument if isa is not available.
void set_isa(Isa isa);
const KernelTable& kernel_table();

/// Kernel table of one ISA (tests compare paths directly). Throws if unavailable.
const KernelTable& kernel_table(Isa isa);

bool have_openmp();
/// OMP_NUM_THREADS or the CPUs available to this process.
int default_num_threads();

}  // namespace fastpool
