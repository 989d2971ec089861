// Bindings of the runtime: SIMD dispatch and threading facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "fastpool/dispatch.hpp"

namespace py = pybind11;

namespace {

std::vector<std::string> names(const std::vector<fastpool::Isa>& isas) {
  std::vector<std::string> v;
  for (fastpool::Isa i : isas) v.emplace_back(fastpool::isa_name(i));
  return v;
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("get_simd", [] { return std::string(fastpool::isa_name(fastpool::active_isa())); });
  m.def("available_simd", [] { return names(fastpool::available_isas()); });
  m.def("compiled_simd", [] { return names(fastpool::compiled_isas()); });
  m.def(
      "set_simd",
      [](const std::string& name) {
        const std::string previous = fastpool::isa_name(fastpool::active_isa());
        if (name == "best")
          fastpool::set_isa(fastpool::available_isas().back());
        else
          fastpool::set_isa(fastpool::parse_isa(name));
        return previous;
      },
      py::arg("name"));
  m.def("have_openmp", &fastpool::have_openmp);
  m.def("default_num_threads", &fastpool::default_num_threads);
}
