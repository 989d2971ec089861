// Bindings of the bin reductions (global, adaptive, pyramid, strip, LP, GeM, SoftPool, mixed,
// stochastic, max-pooling dropout):
// build the bins through cpp/, check arrays, release the GIL, call cpp/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "fastpool/bins.hpp"
#include "fastpool/geometry.hpp"
#include "fastpool/ops.hpp"

namespace py = pybind11;
using namespace fastpool_py;
using fastpool::AxisBins;
using fastpool::BinLevel;
using fastpool::BinProblem;
using fastpool::BinReduce;
using fastpool::BinParams;

namespace {

using Triple = std::array<index_t, 3>;

// The bins of one output grid, one AxisBins per spatial axis (depth, height, width).
struct Bins {
  AxisBins axis[3];

  static Bins adaptive(Triple in, Triple out) {
    Bins b;
    for (int i = 0; i < 3; ++i) b.axis[i] = fastpool::adaptive_bins(in[i], out[i]);
    return b;
  }
  static Bins window(const PoolGeometry& g, bool count_include_pad) {
    fastpool::check_geometry(g);
    Bins b;
    for (int i = 0; i < 3; ++i) b.axis[i] = fastpool::window_bins(g.axis[i], count_include_pad);
    return b;
  }
  Triple in_sizes() const { return {axis[0].in, axis[1].in, axis[2].in}; }
  Triple out_sizes() const { return {axis[0].out, axis[1].out, axis[2].out}; }
};

BinReduce parse_op(const std::string& op) {
  if (op == "max") return BinReduce::max;
  if (op == "avg") return BinReduce::avg;
  if (op == "lp") return BinReduce::lp;
  if (op == "gem") return BinReduce::gem;
  if (op == "soft") return BinReduce::soft;
  if (op == "mixed") return BinReduce::mixed;
  if (op == "stochastic") return BinReduce::stochastic;
  if (op == "stochastic_mean") return BinReduce::stochastic_mean;
  if (op == "dropout") return BinReduce::dropout;
  if (op == "dropout_mean") return BinReduce::dropout_mean;
  throw py::value_error("unknown reduction " + op);
}

BinProblem problem(const py::array& x, bool channels_last, const char* name) {
  if (x.ndim() != 5) throw py::value_error(std::string(name) + " must be 5-dimensional");
  BinProblem pb;
  pb.channels_last = channels_last;
  pb.batch = x.shape(0);
  pb.channels = channels_last ? x.shape(4) : x.shape(1);
  for (int i = 0; i < 3; ++i) pb.in[i] = x.shape(channels_last ? i + 1 : i + 2);
  return pb;
}

// A level array: (N, C, OD, OH, OW) in logical order, any non-negative strides (a
// view into a larger output, as one pyramid level of a concatenated result).
template <class T>
void level_strides(const py::array& a, const char* name, const BinProblem& pb, const Bins& b, bool writeable,
                   std::size_t itemsize, BinLevel<T>& lv) {
  if (a.ndim() != 5) throw py::value_error(std::string(name) + " must be 5-dimensional");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned to its dtype");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  const Triple o = b.out_sizes();
  const index_t want[5] = {pb.batch, pb.channels, o[0], o[1], o[2]};
  index_t st[5];
  for (int i = 0; i < 5; ++i) {
    if (a.shape(i) != want[i]) throw py::value_error(std::string(name) + " does not have the bins' shape");
    if (a.strides(i) < 0 || a.strides(i) % index_t(itemsize) != 0)
      throw py::value_error(std::string(name) + " has unsupported strides");
    // a size-1 axis is only ever indexed at 0: its stride is irrelevant (and arbitrary in NumPy)
    st[i] = a.shape(i) == 1 ? 0 : a.strides(i) / index_t(itemsize);
  }
  lv.stride_n = st[0];
  lv.stride_c = st[1];
  for (int i = 0; i < 3; ++i) lv.stride[i] = st[i + 2];
  for (int i = 0; i < 3; ++i) lv.axis[i] = b.axis[i].view();
}

struct LevelArgs {
  const Bins* bins;
  py::array values;
  std::optional<py::array> indices;
};

template <class T>
std::vector<BinLevel<T>> make_levels(const std::vector<LevelArgs>& args, const BinProblem& pb, bool forward) {
  std::vector<BinLevel<T>> lv(args.size());
  for (std::size_t l = 0; l < args.size(); ++l) {
    const LevelArgs& a = args[l];
    if (a.bins->in_sizes() != Triple{pb.in[0], pb.in[1], pb.in[2]})
      throw py::value_error("bins were built for another input size");
    if (!a.values.dtype().is(py::dtype::of<T>())) throw py::type_error("level arrays must have x's dtype");
    level_strides<T>(a.values, forward ? "out" : "grad_output", pb, *a.bins, forward, sizeof(T), lv[l]);
    if (forward)
      lv[l].y = static_cast<T*>(py::array(a.values).mutable_data());
    else
      lv[l].grad_y = static_cast<const T*>(a.values.data());
    if (a.indices) {
      if (!a.indices->dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("indices must be int64");
      BinLevel<T> il;
      level_strides<T>(*a.indices, "indices", pb, *a.bins, forward, sizeof(std::int64_t), il);
      if (il.stride_n != lv[l].stride_n || il.stride_c != lv[l].stride_c || il.stride[0] != lv[l].stride[0] ||
          il.stride[1] != lv[l].stride[1] || il.stride[2] != lv[l].stride[2])
        throw py::value_error("indices must have the same strides as the values");
      if (forward)
        lv[l].indices = static_cast<std::int64_t*>(py::array(*a.indices).mutable_data());
      else
        lv[l].given_indices = static_cast<const std::int64_t*>(a.indices->data());
    }
  }
  return lv;
}

std::vector<LevelArgs> level_args(const py::list& levels) {
  std::vector<LevelArgs> out;
  for (const py::handle& h : levels) {
    const py::tuple t = py::reinterpret_borrow<py::tuple>(h);
    if (t.size() != 3) throw py::value_error("a level is (bins, values, indices)");
    // Arrays only: a conversion would write into a temporary.
    if (!py::isinstance<py::array>(t[1]) || !(t[2].is_none() || py::isinstance<py::array>(t[2])))
      throw py::type_error("level arrays must be numpy arrays");
    LevelArgs a{t[0].cast<const Bins*>(), py::reinterpret_borrow<py::array>(t[1]), std::nullopt};
    if (!t[2].is_none()) a.indices = py::reinterpret_borrow<py::array>(t[2]);
    out.push_back(std::move(a));
  }
  return out;
}

template <class T>
BinParams<T> params(double p, const std::optional<py::array>& p_channel, double eps, std::uint64_t seed,
                    const BinProblem& pb) {
  BinParams<T> pp;
  pp.p = T(p);
  pp.eps = T(eps);
  pp.seed = seed;
  pp.keep = T(1.0 - p);  // dropout's (p is the rate there), from the exact rate
  pp.drop_below = fastpool::dropout_threshold(p);
  if (p_channel) {
    if (!p_channel->dtype().is(py::dtype::of<T>())) throw py::type_error("p must have x's dtype");
    check_c_contiguous(*p_channel, "p", false);
    if (p_channel->ndim() != 1 || p_channel->shape(0) != pb.channels)
      throw py::value_error("p must have one value per channel");
    pp.p_channel = static_cast<const T*>(p_channel->data());
  }
  return pp;
}

template <class T>
index_t forward_t(const py::array& x, const BinProblem& pb, BinReduce op, const std::vector<LevelArgs>& args, double p,
                  const std::optional<py::array>& p_channel, double eps, std::uint64_t seed, int threads) {
  const std::vector<BinLevel<T>> lv = make_levels<T>(args, pb, true);
  const BinParams<T> pp = params<T>(p, p_channel, eps, seed, pb);
  py::gil_scoped_release release;
  return fastpool::bin_forward(static_cast<const T*>(x.data()), pb, op, pp, lv.data(), int(lv.size()), threads);
}

index_t forward(const py::array& x, bool channels_last, const std::string& op, const py::list& levels, double p,
                std::optional<py::array> p_channel, double eps, std::uint64_t seed, int threads) {
  const DType dt = dtype_of(x, "x");
  check_c_contiguous(x, "x", false);
  const BinProblem pb = problem(x, channels_last, "x");
  const std::vector<LevelArgs> args = level_args(levels);
  if (dt == DType::f32) return forward_t<float>(x, pb, parse_op(op), args, p, p_channel, eps, seed, threads);
  return forward_t<double>(x, pb, parse_op(op), args, p, p_channel, eps, seed, threads);
}

template <class T>
index_t backward_t(const std::optional<py::array>& x, py::array& gx, const BinProblem& pb, BinReduce op,
                   const std::vector<LevelArgs>& args, double p, const std::optional<py::array>& p_channel, double eps,
                   std::uint64_t seed, std::optional<py::array>& grad_p, int threads) {
  const std::vector<BinLevel<T>> lv = make_levels<T>(args, pb, false);
  const BinParams<T> pp = params<T>(p, p_channel, eps, seed, pb);
  T* gp = nullptr;
  if (grad_p) {
    if (!grad_p->dtype().is(py::dtype::of<T>())) throw py::type_error("grad_p must have x's dtype");
    check_c_contiguous(*grad_p, "grad_p", true);
    if (grad_p->ndim() != 1 || grad_p->shape(0) != pb.channels)
      throw py::value_error("grad_p must have one value per channel");
    gp = static_cast<T*>(grad_p->mutable_data());
  }
  const T* xp = x ? static_cast<const T*>(x->data()) : nullptr;
  T* gxp = static_cast<T*>(gx.mutable_data());
  py::gil_scoped_release release;
  return fastpool::bin_backward(xp, pb, op, pp, lv.data(), int(lv.size()), gxp, gp, threads);
}

index_t backward(std::optional<py::array> x, py::array& gx, bool channels_last, const std::string& op,
                 const py::list& levels, double p, std::optional<py::array> p_channel, double eps,
                 std::uint64_t seed, std::optional<py::array> grad_p, int threads) {
  const DType dt = dtype_of(gx, "out");
  check_c_contiguous(gx, "out", true);
  const BinProblem pb = problem(gx, channels_last, "out");
  if (x) {
    check_c_contiguous(*x, "x", false);
    if (!x->dtype().is(gx.dtype())) throw py::type_error("x must have out's dtype");
    bool same = x->ndim() == 5;
    for (int i = 0; same && i < 5; ++i) same = x->shape(i) == gx.shape(i);
    if (!same) throw py::value_error("x and out must have the same shape");
  }
  const std::vector<LevelArgs> args = level_args(levels);
  if (dt == DType::f32)
    return backward_t<float>(x, gx, pb, parse_op(op), args, p, p_channel, eps, seed, grad_p, threads);
  return backward_t<double>(x, gx, pb, parse_op(op), args, p, p_channel, eps, seed, grad_p, threads);
}

}  // namespace

void register_bins(py::module_& m) {
  py::class_<Bins>(m, "Bins", "Bins of one output grid (C++ AxisBins per spatial axis).")
      .def_static("adaptive", &Bins::adaptive, py::arg("in_sizes"), py::arg("out_sizes"),
                  "PyTorch's adaptive bins: bin i covers [floor(i*in/out), ceil((i+1)*in/out)).")
      .def_static("window", &Bins::window, py::arg("geometry"), py::arg("count_include_pad"),
                  "The taps inside the input of each window of a pooling geometry.")
      .def_property_readonly("in_sizes", &Bins::in_sizes)
      .def_property_readonly("out_sizes", &Bins::out_sizes);
  m.def("bin_forward", &forward, py::arg("x"), py::arg("channels_last"), py::arg("op"), py::arg("levels"),
        py::arg("p"), py::arg("p_channel"), py::arg("eps"), py::arg("seed"), py::arg("threads"));
  m.def("bin_backward", &backward, py::arg("x"), py::arg("out"), py::arg("channels_last"), py::arg("op"),
        py::arg("levels"), py::arg("p"), py::arg("p_channel"), py::arg("eps"), py::arg("seed"), py::arg("grad_p"),
        py::arg("threads"));
}
