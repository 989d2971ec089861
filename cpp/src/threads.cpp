#include <cstdlib>
#include <thread>

#include "fastpool/dispatch.hpp"

#ifdef FASTPOOL_HAVE_OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace fastpool {

bool have_openmp() {
#ifdef FASTPOOL_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

int default_num_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

}  // namespace fastpool
