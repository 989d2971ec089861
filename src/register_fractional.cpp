// Bindings of fractional max pooling: check the arrays, release the GIL, call cpp/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "arrays.hpp"
#include "fastpool/fractional.hpp"
#include "fastpool/ops.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::FractionalProblem;

namespace {

// x and out: (N, C, D, H, W) or (N, D, H, W, C); samples: N*C*rank values of x's dtype;
// indices (optional): int64 shaped like out.
void forward(const py::array& x, const py::array& samples, py::array& out, std::optional<py::array> indices,
             std::array<index_t, 3> kernel, int rank, bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  check_c_contiguous(x, "x", false);
  check_c_contiguous(samples, "samples", false);
  check_c_contiguous(out, "out", true);
  check_same_dtype(x, samples, "samples");
  check_same_dtype(x, out, "out");
  if (x.ndim() != 5 || out.ndim() != 5) throw py::value_error("x and out must be 5-dimensional");
  FractionalProblem fp;
  fp.rank = rank;
  fp.channels_last = channels_last;
  fp.batch = x.shape(0);
  fp.channels = x.shape(channels_last ? 4 : 1);
  if (out.shape(0) != fp.batch || out.shape(channels_last ? 4 : 1) != fp.channels)
    throw py::value_error("out does not have x's batch and channels");
  for (int a = 0; a < 3; ++a) {
    fp.in[a] = x.shape(channels_last ? a + 1 : a + 2);
    fp.out[a] = out.shape(channels_last ? a + 1 : a + 2);
    fp.kernel[a] = kernel[std::size_t(a)];
    fp.sample_axis[a] = rank == 3 ? a : (a == 0 ? -1 : 2 - a);  // PyTorch's order: 2D (W, H), 3D (D, H, W)
  }
  fastpool::check_fractional(fp);
  if (samples.size() != fp.batch * fp.channels * rank)
    throw py::value_error("samples must hold " + std::to_string(fp.batch * fp.channels * rank) + " values");
  std::int64_t* ip = nullptr;
  if (indices) {
    check_c_contiguous(*indices, "indices", true);
    if (!indices->dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("indices must be int64");
    bool same = indices->ndim() == 5;
    for (int i = 0; same && i < 5; ++i) same = indices->shape(i) == out.shape(i);
    if (!same) throw py::value_error("indices must have out's shape");
    ip = static_cast<std::int64_t*>(indices->mutable_data());
  }
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::fractional_max_forward(static_cast<const float*>(x.data()), static_cast<const float*>(samples.data()),
                                     static_cast<float*>(out.mutable_data()), ip, fp, threads);
  else
    fastpool::fractional_max_forward(static_cast<const double*>(x.data()), static_cast<const double*>(samples.data()),
                                     static_cast<double*>(out.mutable_data()), ip, fp, threads);
}

}  // namespace

void register_fractional(py::module_& m) {
  m.def("fractional_max_forward", &forward, py::arg("x"), py::arg("samples"), py::arg("out"), py::arg("indices"),
        py::arg("kernel_size"), py::arg("rank"), py::arg("channels_last"), py::arg("threads"),
        "Fractional max pooling of (N, C, D, H, W) / (N, D, H, W, C) arrays with PyTorch's intervals; "
        "samples: N * C * rank values in [0, 1), PyTorch's order (2D: W, H; 3D: D, H, W).");
}
