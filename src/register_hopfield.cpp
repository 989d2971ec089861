// Bindings of Hopfield pooling: check the arrays, release the GIL, call cpp/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "arrays.hpp"
#include "fastpool/hopfield.hpp"
#include "fastpool/ops.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::HopfieldProblem;

namespace {

void check_shape(const py::array& a, const char* name, index_t d0, index_t d1, index_t d2) {
  const bool two = d0 < 0;
  bool ok = a.ndim() == (two ? 2 : 3);
  const index_t want[3] = {d0, d1, d2};
  for (int i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == want[two ? i + 1 : i];
  if (!ok) throw py::value_error(std::string(name) + " does not have the expected shape");
}

// x: (N, C, L) or (N, L, C); queries (Q, C); out / grad_output (N, Q, C).
HopfieldProblem problem(const py::array& x, const py::array& queries, bool channels_last) {
  if (x.ndim() != 3) throw py::value_error("x must be 3-dimensional");
  if (queries.ndim() != 2) throw py::value_error("queries must be 2-dimensional");
  HopfieldProblem hp;
  hp.batch = x.shape(0);
  hp.channels = x.shape(channels_last ? 2 : 1);
  hp.positions = x.shape(channels_last ? 1 : 2);
  hp.queries = queries.shape(0);
  hp.channels_last = channels_last;
  if (queries.shape(1) != hp.channels) throw py::value_error("queries must have x's channel count");
  fastpool::check_hopfield(hp);
  return hp;
}

void forward(const py::array& x, const py::array& queries, double beta, py::array& out, bool channels_last,
             int threads) {
  const DType dt = dtype_of(x, "x");
  check_c_contiguous(x, "x", false);
  check_c_contiguous(queries, "queries", false);
  check_c_contiguous(out, "out", true);
  check_same_dtype(x, queries, "queries");
  check_same_dtype(x, out, "out");
  const HopfieldProblem hp = problem(x, queries, channels_last);
  check_shape(out, "out", hp.batch, hp.queries, hp.channels);
  py::gil_scoped_release release;
  if (dt == DType::f32)
    fastpool::hopfield_forward(static_cast<const float*>(x.data()), static_cast<const float*>(queries.data()),
                               float(beta), static_cast<float*>(out.mutable_data()), hp, threads);
  else
    fastpool::hopfield_forward(static_cast<const double*>(x.data()), static_cast<const double*>(queries.data()), beta,
                               static_cast<double*>(out.mutable_data()), hp, threads);
}

template <class T>
void backward_t(const py::array& x, const py::array& queries, double beta, const py::array& g, py::array& gx,
                py::array& gq, py::array& gb, const HopfieldProblem& hp, int threads) {
  const T* xp = static_cast<const T*>(x.data());
  const T* qp = static_cast<const T*>(queries.data());
  const T* gp = static_cast<const T*>(g.data());
  T* gxp = static_cast<T*>(gx.mutable_data());
  T* gqp = static_cast<T*>(gq.mutable_data());
  T* gbp = static_cast<T*>(gb.mutable_data());
  py::gil_scoped_release release;
  fastpool::hopfield_backward(xp, qp, T(beta), gp, gxp, gqp, gbp, hp, threads);
}

void backward(const py::array& x, const py::array& queries, double beta, const py::array& grad_output, py::array& out,
              py::array& grad_queries, py::array& grad_beta, bool channels_last, int threads) {
  const DType dt = dtype_of(x, "x");
  check_c_contiguous(x, "x", false);
  check_c_contiguous(queries, "queries", false);
  check_c_contiguous(grad_output, "grad_output", false);
  for (const py::array* a : {&out, &grad_queries, &grad_beta}) check_c_contiguous(*a, "out", true);
  check_same_dtype(x, queries, "queries");
  check_same_dtype(x, grad_output, "grad_output");
  check_same_dtype(x, out, "out");
  check_same_dtype(x, grad_queries, "grad_queries");
  check_same_dtype(x, grad_beta, "grad_beta");
  const HopfieldProblem hp = problem(x, queries, channels_last);
  check_shape(grad_output, "grad_output", hp.batch, hp.queries, hp.channels);
  if (out.ndim() != 3 || out.shape(0) != x.shape(0) || out.shape(1) != x.shape(1) || out.shape(2) != x.shape(2))
    throw py::value_error("out must have x's shape");
  check_shape(grad_queries, "grad_queries", -1, hp.queries, hp.channels);
  if (grad_beta.size() != 1) throw py::value_error("grad_beta must hold one value");
  if (dt == DType::f32)
    backward_t<float>(x, queries, beta, grad_output, out, grad_queries, grad_beta, hp, threads);
  else
    backward_t<double>(x, queries, beta, grad_output, out, grad_queries, grad_beta, hp, threads);
}

}  // namespace

void register_hopfield(py::module_& m) {
  m.def("hopfield_forward", &forward, py::arg("x"), py::arg("queries"), py::arg("beta"), py::arg("out"),
        py::arg("channels_last"), py::arg("threads"),
        "Hopfield pooling of x (N, C, L) / (N, L, C) by queries (Q, C) into out (N, Q, C).");
  m.def("hopfield_backward", &backward, py::arg("x"), py::arg("queries"), py::arg("beta"), py::arg("grad_output"),
        py::arg("out"), py::arg("grad_queries"), py::arg("grad_beta"), py::arg("channels_last"), py::arg("threads"),
        "Gradients of Hopfield pooling: grad_x into out (x's shape), grad_queries (Q, C), grad_beta (one value).");
}
