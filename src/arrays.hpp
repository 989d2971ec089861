// Array checks shared by the bindings: the Python layer has already validated
// user input; these re-check what the kernels rely on, so a wrong call from
// Python is an exception, never a bad memory access.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "fastpool/geometry.hpp"

namespace fastpool_py {

namespace py = pybind11;
using fastpool::index_t;
using fastpool::PoolGeometry;

enum class DType { f32, f64 };

inline DType dtype_of(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::f32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::f64;
  throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) +
                       "; supported dtypes are float32, float64");
}

// (N, C, D, H, W) or (N, D, H, W, C)
inline std::array<index_t, 5> canonical_shape(const PoolGeometry& g, bool output) {
  index_t sp[3];
  for (int i = 0; i < 3; ++i) sp[i] = output ? g.axis[i].out : g.axis[i].in;
  if (g.channels_last) return {g.batch, sp[0], sp[1], sp[2], g.channels};
  return {g.batch, g.channels, sp[0], sp[1], sp[2]};
}

/// C-contiguous and aligned (and writeable when asked): how the kernels read arrays.
inline void check_c_contiguous(const py::array& a, const char* name, bool writeable) {
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned to its dtype");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " is read-only");
}

inline void check_array(const py::array& a, const char* name, const PoolGeometry& g, bool output,
                        bool writeable) {
  check_c_contiguous(a, name, writeable);
  const auto want = canonical_shape(g, output);
  bool ok = a.ndim() == 5;
  for (int i = 0; ok && i < 5; ++i) ok = a.shape(i) == want[i];
  if (!ok) throw py::value_error(std::string(name) + " does not have the shape the geometry implies");
}

inline void check_same_dtype(const py::array& a, const py::array& b, const char* name_b) {
  if (!a.dtype().is(b.dtype()))
    throw py::type_error(std::string(name_b) + " has dtype " + std::string(py::str(b.dtype())) +
                         ", expected " + std::string(py::str(a.dtype())));
}

}  // namespace fastpool_py
