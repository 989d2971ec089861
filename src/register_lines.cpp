// Bindings of the line maxima (corner, center and cascade corner pooling): check the
// arrays, release the GIL, call cpp/.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "arrays.hpp"
#include "fastpool/lines.hpp"
#include "fastpool/ops.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::LineProblem;
using fastpool::LineScan;

namespace {

// x's shape (N, C, H, W) or (N, H, W, C) as a problem.
LineProblem problem_of(const py::array& x, int axis, LineScan scan, bool channels_last) {
  if (x.ndim() != 4) throw py::value_error("line arrays must have 4 dimensions, got " + std::to_string(x.ndim()));
  LineProblem lp;
  lp.batch = x.shape(0);
  lp.channels = channels_last ? x.shape(3) : x.shape(1);
  lp.height = channels_last ? x.shape(1) : x.shape(2);
  lp.width = channels_last ? x.shape(2) : x.shape(3);
  lp.channels_last = channels_last;
  lp.axis = axis;
  lp.scan = scan;
  fastpool::check_lines(lp);
  return lp;
}

void check_like(const py::array& x, const py::array& a, const char* name, bool writeable) {
  check_c_contiguous(a, name, writeable);
  bool same = a.ndim() == x.ndim();
  for (int i = 0; same && i < x.ndim(); ++i) same = a.shape(i) == x.shape(i);
  if (!same) throw py::value_error(std::string(name) + " does not have the shape of x");
  check_same_dtype(x, a, name);
}

template <class T>
const T* cptr(const std::optional<py::array>& a) { return a ? static_cast<const T*>(a->data()) : nullptr; }

void forward(const py::array& x, std::optional<py::array> add, py::array& y, int axis, LineScan scan,
             bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  const LineProblem lp = problem_of(x, axis, scan, channels_last);
  check_like(x, x, "x", false);
  check_like(x, y, "out", true);
  if (add) check_like(x, *add, "add", false);
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::line_max_forward(static_cast<const float*>(x.data()), cptr<float>(add),
                               static_cast<float*>(y.mutable_data()), lp, threads);
  else
    fastpool::line_max_forward(static_cast<const double*>(x.data()), cptr<double>(add),
                               static_cast<double*>(y.mutable_data()), lp, threads);
}

void backward(const py::array& gy, const py::array& x, std::optional<py::array> add, py::array& gx, int axis,
              LineScan scan, bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  const LineProblem lp = problem_of(x, axis, scan, channels_last);
  check_like(x, x, "x", false);
  check_like(x, gy, "grad_output", false);
  check_like(x, gx, "out", true);
  if (add) check_like(x, *add, "add", false);
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::line_max_backward(static_cast<const float*>(gy.data()), static_cast<const float*>(x.data()),
                                cptr<float>(add), static_cast<float*>(gx.mutable_data()), lp, threads);
  else
    fastpool::line_max_backward(static_cast<const double*>(gy.data()), static_cast<const double*>(x.data()),
                                cptr<double>(add), static_cast<double*>(gx.mutable_data()), lp, threads);
}

void center_forward(const py::array& x, const py::array& x2, py::array& y, bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  const LineProblem lp = problem_of(x, 0, LineScan::whole, channels_last);
  check_like(x, x, "x", false);
  check_like(x, x2, "x2", false);
  check_like(x, y, "out", true);
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::center_max_forward(static_cast<const float*>(x.data()), static_cast<const float*>(x2.data()),
                                 static_cast<float*>(y.mutable_data()), lp, threads);
  else
    fastpool::center_max_forward(static_cast<const double*>(x.data()), static_cast<const double*>(x2.data()),
                                 static_cast<double*>(y.mutable_data()), lp, threads);
}

}  // namespace

void register_lines(py::module_& m) {
  py::enum_<LineScan>(m, "LineScan", "Which maxima a line scan produces (C++ fastpool::LineScan).")
      .value("from_end", LineScan::from_end)
      .value("from_start", LineScan::from_start)
      .value("whole", LineScan::whole);
  m.def("line_max_forward", &forward, py::arg("x"), py::arg("add"), py::arg("out"), py::arg("axis"),
        py::arg("scan"), py::arg("channels_last"), py::arg("threads"),
        "out = line maxima of x along axis (0: H, 1: W) + add (None, or any array of x's shape, out itself included).");
  m.def("line_max_backward", &backward, py::arg("grad_output"), py::arg("x"), py::arg("add"), py::arg("out"),
        py::arg("axis"), py::arg("scan"), py::arg("channels_last"), py::arg("threads"),
        "out = grad_output routed to the maxima's positions + add (None, or out itself, or another array).");
  m.def("center_max_forward", &center_forward, py::arg("x"), py::arg("x2"), py::arg("out"), py::arg("channels_last"),
        py::arg("threads"), "out = the column maxima of x + the row maxima of x2 (x2 may be x), per plane.");
}
