// Bindings of the runtime: SIMD dispatch and threading facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>

#include "fastpool/buffer_pool.hpp"
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
  m.def(
      "empty",
      [](const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
        std::size_t bytes = std::size_t(dtype.itemsize());
        for (py::ssize_t s : shape) {
          if (s < 0) throw py::value_error("negative dimension");
          bytes *= std::size_t(s);
        }
        void* p = fastpool::acquire_buffer(bytes);
        // The array owns the buffer through a capsule that hands it back to the pool
        // (made first, so an exception below still returns the buffer).
        using Block = std::pair<void*, std::size_t>;
        py::capsule owner(new Block(p, bytes), [](void* h) {
          auto* b = static_cast<Block*>(h);
          fastpool::release_buffer(b->first, b->second);
          delete b;
        });
        return py::array(dtype, shape, p, owner);
      },
      py::arg("shape"), py::arg("dtype"),
      "An uninitialized C-contiguous array whose memory comes from the reuse pool.");
  m.def("trim_buffers", &fastpool::trim_buffers, "Free cached output buffers; returns bytes freed.");
  m.def("cached_buffer_bytes", &fastpool::cached_buffer_bytes);
  m.def("default_num_threads", &fastpool::default_num_threads);
}
