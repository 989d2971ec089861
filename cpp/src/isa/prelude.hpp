// Headers every ISA translation unit needs, included before entering the ISA
// namespace (the kernel templates themselves are included inside it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#ifdef FASTPOOL_HAVE_OPENMP
#include <omp.h>
#endif

#include "fastpool/dispatch.hpp"
#include "fastpool/geometry.hpp"
