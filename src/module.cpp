// The fastpool._core extension: creates the module and registers each area.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_bins(py::module_& m);
void register_pooling(py::module_& m);
void register_lines(py::module_& m);
void register_unpool(py::module_& m);
void register_fractional(py::module_& m);
void register_hopfield(py::module_& m);
void register_runtime(py::module_& m);

#ifndef FASTPOOL_VERSION
#define FASTPOOL_VERSION "0.0.0"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastpool compiled kernels (private: use the fastpool package)";
  m.attr("__version__") = FASTPOOL_VERSION;
  register_runtime(m);
  register_pooling(m);
  register_bins(m);
  register_lines(m);
  register_unpool(m);
  register_fractional(m);
  register_hopfield(m);
}
