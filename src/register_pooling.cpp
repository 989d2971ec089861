// Bindings of the pooling kernels: convert, check, release the GIL, call cpp/.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>

#include "arrays.hpp"
#include "fastpool/geometry.hpp"
#include "fastpool/ops.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::AvgOptions;

namespace {

using Triple = std::array<index_t, 3>;

PoolGeometry make_geometry(index_t batch, index_t channels, Triple in, Triple kernel, Triple stride,
                           Triple dilation, Triple pad_before, Triple pad_after, bool ceil_mode,
                           bool channels_last) {
  PoolGeometry g;
  g.batch = batch;
  g.channels = channels;
  g.channels_last = channels_last;
  for (int i = 0; i < 3; ++i)
    g.axis[i] = fastpool::make_axis(in[i], kernel[i], stride[i], dilation[i], pad_before[i],
                                    pad_after[i], ceil_mode);
  fastpool::check_geometry(g);
  return g;
}

Triple sizes(const PoolGeometry& g, bool output) {
  Triple t;
  for (int i = 0; i < 3; ++i) t[i] = output ? g.axis[i].out : g.axis[i].in;
  return t;
}

template <class T>
const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

void max_forward(const py::array& x, py::array& y, std::optional<py::array> idx, const PoolGeometry& g,
                 int threads) {
  const DType dt = dtype_of(x, "x");
  check_array(x, "x", g, false, false);
  check_array(y, "out", g, true, true);
  check_same_dtype(x, y, "out");
  std::int64_t* ip = nullptr;
  if (idx) {
    if (!idx->dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("indices must be int64");
    check_array(*idx, "indices", g, true, true);
    ip = static_cast<std::int64_t*>(idx->mutable_data());
  }
  // Raw pointers only from here: no Python object is touched without the GIL.
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::max_pool_forward(cptr<float>(x), mptr<float>(y), ip, g, threads);
  else
    fastpool::max_pool_forward(cptr<double>(x), mptr<double>(y), ip, g, threads);
}

index_t max_backward(const py::array& gy, std::optional<py::array> x, std::optional<py::array> idx,
                     py::array& gx, const PoolGeometry& g, int threads) {
  const DType dt = dtype_of(gy, "grad_output");
  check_array(gy, "grad_output", g, true, false);
  check_array(gx, "out", g, false, true);
  check_same_dtype(gy, gx, "out");
  const void* xp = nullptr;
  const std::int64_t* ip = nullptr;
  if (x) {
    check_array(*x, "x", g, false, false);
    check_same_dtype(gy, *x, "x");
    xp = x->data();
  }
  if (idx) {
    if (!idx->dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("indices must be int64");
    check_array(*idx, "indices", g, true, false);
    ip = static_cast<const std::int64_t*>(idx->data());
  }
  if (!xp && !ip) throw py::value_error("max_pool_backward needs x or indices");
  py::gil_scoped_release release;
  if (dt == DType::f32)
    return fastpool::max_pool_backward(cptr<float>(gy), static_cast<const float*>(xp), ip, mptr<float>(gx), g, threads);
  return fastpool::max_pool_backward(cptr<double>(gy), static_cast<const double*>(xp), ip, mptr<double>(gx), g, threads);
}

void avg_forward(const py::array& x, py::array& y, const PoolGeometry& g, bool include, index_t div,
                 int threads) {
  const DType dt = dtype_of(x, "x");
  check_array(x, "x", g, false, false);
  check_array(y, "out", g, true, true);
  check_same_dtype(x, y, "out");
  const AvgOptions opt{include, div};
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::avg_pool_forward(cptr<float>(x), mptr<float>(y), g, opt, threads);
  else
    fastpool::avg_pool_forward(cptr<double>(x), mptr<double>(y), g, opt, threads);
}

void avg_backward(const py::array& gy, py::array& gx, const PoolGeometry& g, bool include, index_t div,
                  int threads) {
  const DType dt = dtype_of(gy, "grad_output");
  check_array(gy, "grad_output", g, true, false);
  check_array(gx, "out", g, false, true);
  check_same_dtype(gy, gx, "out");
  const AvgOptions opt{include, div};
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::avg_pool_backward(cptr<float>(gy), mptr<float>(gx), g, opt, threads);
  else
    fastpool::avg_pool_backward(cptr<double>(gy), mptr<double>(gx), g, opt, threads);
}

}  // namespace

void register_pooling(py::module_& m) {
  py::class_<PoolGeometry>(m, "Geometry", "Validated pooling geometry (C++ PoolGeometry).")
      .def(py::init(&make_geometry), py::arg("batch"), py::arg("channels"), py::arg("in_sizes"),
           py::arg("kernel"), py::arg("stride"), py::arg("dilation"), py::arg("pad_before"),
           py::arg("pad_after"), py::arg("ceil_mode"), py::arg("channels_last"))
      .def_readonly("batch", &PoolGeometry::batch)
      .def_readonly("channels", &PoolGeometry::channels)
      .def_readonly("channels_last", &PoolGeometry::channels_last)
      .def_property_readonly("in_sizes", [](const PoolGeometry& g) { return sizes(g, false); })
      .def_property_readonly("out_sizes", [](const PoolGeometry& g) { return sizes(g, true); })
      .def_property_readonly("in_plane", &PoolGeometry::in_plane)
      .def_property_readonly("pad_before", [](const PoolGeometry& g) {
        return Triple{g.axis[0].pad_before, g.axis[1].pad_before, g.axis[2].pad_before};
      })
      .def_property_readonly("pad_after", [](const PoolGeometry& g) {
        return Triple{g.axis[0].pad_after, g.axis[1].pad_after, g.axis[2].pad_after};
      });

  m.def("same_padding",
        [](index_t in, index_t k, index_t s, index_t d, bool lower) {
          index_t b, a;
          fastpool::same_padding(in, k, s, d, lower, b, a);
          return std::make_pair(b, a);
        },
        py::arg("in_size"), py::arg("kernel"), py::arg("stride"), py::arg("dilation"), py::arg("lower"),
        "Per-side pads of TensorFlow 'SAME' (lower=False) or ONNX SAME_LOWER (lower=True).");
  m.def("max_pool_forward", &max_forward, py::arg("x"), py::arg("out"), py::arg("indices"),
        py::arg("geometry"), py::arg("threads"));
  m.def("max_pool_backward", &max_backward, py::arg("grad_output"), py::arg("x"), py::arg("indices"),
        py::arg("out"), py::arg("geometry"), py::arg("threads"));
  m.def("avg_pool_forward", &avg_forward, py::arg("x"), py::arg("out"), py::arg("geometry"),
        py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("threads"));
  m.def("avg_pool_backward", &avg_backward, py::arg("grad_output"), py::arg("out"), py::arg("geometry"),
        py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("threads"));
}
