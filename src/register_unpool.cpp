// Bindings of max unpooling and of the scatter-add that routes a gradient to argmax
// positions: check the arrays, release the GIL, call cpp/.
#include <pybind11/pybind11.h>

#include <string>

#include "arrays.hpp"
#include "fastpool/ops.hpp"
#include "fastpool/unpool.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::UnpoolProblem;

namespace {

// The kernels take planes flattened to (N, C, size) or (N, size, C).
void check_planes(const py::array& a, const char* name, bool writeable) {
  if (a.ndim() != 3) throw py::value_error(std::string(name) + " must have 3 dimensions (N, C, size) or (N, size, C)");
  check_c_contiguous(a, name, writeable);
}

// small: x or grad_x (the pooled side, shaped like the indices); large: y or grad_y.
UnpoolProblem problem_of(const py::array& small, const py::array& idx, const py::array& large, bool channels_last,
                         const char* small_name, const char* large_name, bool small_writeable) {
  check_planes(small, small_name, small_writeable);
  check_planes(idx, "indices", false);
  check_planes(large, large_name, !small_writeable);
  if (!idx.dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("indices must be int64");
  check_same_dtype(small, large, large_name);
  for (int i = 0; i < 3; ++i)
    if (idx.shape(i) != small.shape(i)) throw py::value_error(std::string("indices does not have the shape of ") + small_name);
  const int c = channels_last ? 2 : 1, s = channels_last ? 1 : 2;
  if (large.shape(0) != small.shape(0) || large.shape(c) != small.shape(c))
    throw py::value_error(std::string(large_name) + " does not have the batch and channels of " + small_name);
  UnpoolProblem up;
  up.batch = small.shape(0);
  up.channels = small.shape(c);
  up.in_size = small.shape(s);
  up.out_size = large.shape(s);
  up.channels_last = channels_last;
  fastpool::check_unpool(up);
  return up;
}

index_t forward(const py::array& x, const py::array& idx, py::array& y, bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  const UnpoolProblem up = problem_of(x, idx, y, channels_last, "x", "out", false);
  const auto* ip = static_cast<const std::int64_t*>(idx.data());
  py::gil_scoped_release release;
  if (dt == DType::f32)
    return fastpool::max_unpool_forward(static_cast<const float*>(x.data()), ip, static_cast<float*>(y.mutable_data()),
                                        up, threads);
  return fastpool::max_unpool_forward(static_cast<const double*>(x.data()), ip, static_cast<double*>(y.mutable_data()),
                                      up, threads);
}

index_t scatter_add(const py::array& x, const py::array& idx, py::array& y, bool channels_last, bool skip_minus_one,
                    int threads) {
  const DType dt = dtype_of(x, "x");
  UnpoolProblem up = problem_of(x, idx, y, channels_last, "x", "out", false);
  up.skip_minus_one = skip_minus_one;
  const auto* ip = static_cast<const std::int64_t*>(idx.data());
  py::gil_scoped_release release;
  if (dt == DType::f32)
    return fastpool::scatter_add(static_cast<const float*>(x.data()), ip, static_cast<float*>(y.mutable_data()), up,
                                 threads);
  return fastpool::scatter_add(static_cast<const double*>(x.data()), ip, static_cast<double*>(y.mutable_data()), up,
                               threads);
}

index_t backward(const py::array& gy, const py::array& idx, py::array& gx, bool channels_last, int threads) {
  const DType dt = dtype_of(gy, "grad_output");
  const UnpoolProblem up = problem_of(gx, idx, gy, channels_last, "out", "grad_output", true);
  const auto* ip = static_cast<const std::int64_t*>(idx.data());
  py::gil_scoped_release release;
  if (dt == DType::f32)
    return fastpool::max_unpool_backward(static_cast<const float*>(gy.data()), ip,
                                         static_cast<float*>(gx.mutable_data()), up, threads);
  return fastpool::max_unpool_backward(static_cast<const double*>(gy.data()), ip,
                                       static_cast<double*>(gx.mutable_data()), up, threads);
}

}  // namespace

void register_unpool(py::module_& m) {
  m.def("unpool_default_size", &fastpool::unpool_default_size, py::arg("in_size"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), "(in - 1) * stride - 2 * padding + kernel_size, checked.");
  m.def("max_unpool_forward", &forward, py::arg("x"), py::arg("indices"), py::arg("out"), py::arg("channels_last"),
        py::arg("threads"),
        "out = 0, out[index] = x per plane; arrays (N, C, size) or (N, size, C). Returns the flat position of "
        "the first index outside the plane, or -1.");
  m.def("scatter_add", &scatter_add, py::arg("x"), py::arg("indices"), py::arg("out"), py::arg("channels_last"),
        py::arg("skip_minus_one"), py::arg("threads"),
        "out = 0, out[index] += x per plane (a gradient routed to argmax positions; an index of -1 adds nothing "
        "where skip_minus_one); returns as max_unpool_forward.");
  m.def("max_unpool_backward", &backward, py::arg("grad_output"), py::arg("indices"), py::arg("out"),
        py::arg("channels_last"), py::arg("threads"),
        "out = grad_output at the indices; returns as max_unpool_forward.");
}
