#include "fastpool/geometry.hpp"

#include "fastpool/bins.hpp"
#include "fastpool/fractional.hpp"
#include "fastpool/hopfield.hpp"
#include "fastpool/lines.hpp"
#include "fastpool/unpool.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace fastpool {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

index_t floor_div(index_t a, index_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
index_t ceil_div(index_t a, index_t b) { return -floor_div(-a, b); }

constexpr index_t kHuge = index_t(1) << 40;

index_t checked_mul(index_t a, index_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<index_t>::max() / a)
    fail(std::string(what) + " overflows int64");
  return a * b;
}

}  // namespace

AxisGeometry make_axis(index_t in, index_t kernel, index_t stride, index_t dilation,
                       index_t pad_before, index_t pad_after, bool ceil_mode) {
  if (in < 1 || in > kHuge) fail("input size must be in [1, 2**40], got " + std::to_string(in));
  if (kernel < 1 || kernel > kHuge) fail("kernel_size must be in [1, 2**40], got " + std::to_string(kernel));
  if (stride < 1 || stride > kHuge) fail("stride must be in [1, 2**40], got " + std::to_string(stride));
  if (dilation < 1 || dilation > kHuge) fail("dilation must be in [1, 2**40], got " + std::to_string(dilation));
  if (pad_before < 0 || pad_after < 0 || pad_before > kHuge || pad_after > kHuge)
    fail("padding must be in [0, 2**40], got (" + std::to_string(pad_before) + ", " +
         std::to_string(pad_after) + ")");
  AxisGeometry a;
  a.in = in;
  a.kernel = kernel;
  a.stride = stride;
  a.dilation = dilation;
  a.pad_before = pad_before;
  a.pad_after = pad_after;
  a.ceil_mode = ceil_mode;
  // (kernel - 1) * dilation may overflow before it could be compared: bound it first.
  const index_t padded = in + pad_before + pad_after;
  const index_t room = (kernel - 1) > padded / dilation ? -1 : padded - (dilation * (kernel - 1) + 1);
  const index_t span = room < 0 && (kernel - 1) > padded / dilation ? -1 : dilation * (kernel - 1) + 1;
  if (room < 0)
    fail("kernel_size " + std::to_string(kernel) + " with dilation " + std::to_string(dilation) +
         (span > 0 ? " (span " + std::to_string(span) + ")" : std::string()) +
         " exceeds the padded input size " + std::to_string(padded));
  index_t out = (ceil_mode ? ceil_div(room, stride) : room / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad_before) --out;
  a.out = out;
  // Every window must read at least one real element. Windows move monotonically,
  // so the two end windows decide it, unless dilation exceeds the input size and a
  // window can straddle the whole input between two taps: then check each window.
  auto check = [&](index_t o) {
    index_t f, l;
    a.valid_taps(o, f, l);
    if (f >= l)
      fail("window " + std::to_string(o) + " lies entirely in the padding (input size " +
           std::to_string(in) + ", kernel_size " + std::to_string(kernel) + ", stride " +
           std::to_string(stride) + ", dilation " + std::to_string(dilation) + ", padding (" +
           std::to_string(pad_before) + ", " + std::to_string(pad_after) + "))");
  };
  check(0);
  check(out - 1);
  if (dilation > in) {
    if (out > (index_t(1) << 24)) fail("output size " + std::to_string(out) + " too large");
    for (index_t o = 1; o + 1 < out; ++o) check(o);
  }
  return a;
}

void same_padding(index_t in, index_t kernel, index_t stride, index_t dilation, bool lower,
                  index_t& pad_before, index_t& pad_after) {
  if (in < 1 || in > kHuge) fail("input size must be in [1, 2**40], got " + std::to_string(in));
  if (kernel < 1 || kernel > kHuge) fail("kernel_size must be in [1, 2**40], got " + std::to_string(kernel));
  if (stride < 1 || stride > kHuge) fail("stride must be in [1, 2**40], got " + std::to_string(stride));
  if (dilation < 1 || dilation > kHuge) fail("dilation must be in [1, 2**40], got " + std::to_string(dilation));
  if (kernel - 1 > (index_t(1) << 50) / dilation)
    fail("kernel_size " + std::to_string(kernel) + " with dilation " + std::to_string(dilation) + " is too large");
  const index_t out = ceil_div(in, stride);
  index_t total = (out - 1) * stride + dilation * (kernel - 1) + 1 - in;
  if (total < 0) total = 0;
  pad_before = lower ? total - total / 2 : total / 2;
  pad_after = total - pad_before;
}

void check_geometry(const PoolGeometry& g) {
  if (g.batch < 1) fail("batch size must be >= 1, got " + std::to_string(g.batch));
  if (g.channels < 1) fail("channel count must be >= 1, got " + std::to_string(g.channels));
  index_t in = checked_mul(g.batch, g.channels, "input size");
  index_t out = in;
  index_t kv = 1;
  for (const AxisGeometry& a : g.axis) {
    if (a.in < 1 || a.out < 1 || a.kernel < 1 || a.stride < 1 || a.dilation < 1 ||
        a.pad_before < 0 || a.pad_after < 0)
      fail("invalid axis geometry");
    in = checked_mul(in, a.in, "input size");
    out = checked_mul(out, a.out, "output size");
    kv = checked_mul(kv, a.kernel, "kernel volume");
  }
  // Window taps are tracked in the floating-point type of the data; 2**24 keeps
  // them exact in float32.
  if (kv > (index_t(1) << 24))
    fail("kernel volume " + std::to_string(kv) + " exceeds 2**24 elements");
}

index_t avg_axis_count(const AxisGeometry& a, index_t o, bool count_include_pad) {
  index_t f, l;
  if (count_include_pad)
    a.taps_inside(o, -a.pad_before, a.in + a.pad_after, f, l);
  else
    a.valid_taps(o, f, l);
  return l - f;
}

// ------------------------------------------------------------------ bins

AxisBins::AxisBins(index_t in_, index_t out_, index_t step_)
    : first(std::size_t(out_)), count(std::size_t(out_)), divisor(std::size_t(out_)), in(in_), out(out_), step(step_) {}

BinAxis AxisBins::view() const {
  BinAxis a;
  a.in = in;
  a.out = out;
  a.step = step;
  a.first = first.data();
  a.count = count.data();
  a.divisor = divisor.data();
  return a;
}

AxisBins adaptive_bins(index_t in, index_t out) {
  if (in < 1 || in > kHuge) fail("input size must be in [1, 2**40], got " + std::to_string(in));
  if (out < 1 || out > kHuge) fail("output size must be in [1, 2**40], got " + std::to_string(out));
  AxisBins b(in, out, 1);
  using wide = unsigned __int128;  // i * in reaches 2**80
  for (index_t i = 0; i < out; ++i) {
    const index_t s = index_t(wide(i) * wide(in) / wide(out));
    const index_t e = index_t((wide(i + 1) * wide(in) + wide(out) - 1) / wide(out));
    b.first[i] = s;
    b.count[i] = b.divisor[i] = e - s;
  }
  return b;
}

AxisBins window_bins(const AxisGeometry& a, bool count_include_pad) {
  AxisBins b(a.in, a.out, a.dilation);
  b.monotone = a.dilation == 1;
  for (index_t o = 0; o < a.out; ++o) {
    index_t f, l;
    a.valid_taps(o, f, l);
    b.first[o] = a.start(o) + f * a.dilation;
    b.count[o] = l - f;
    b.divisor[o] = avg_axis_count(a, o, count_include_pad);
  }
  return b;
}

std::uint64_t dropout_threshold(double rate) {
  if (!(rate >= 0.0 && rate <= 1.0)) return 0;
  return std::uint64_t(std::floor(rate * 4294967296.0));  // exact: a power-of-two scale
}

template <class T>
void check_bins(const BinProblem& pb, BinReduce op, const BinLevel<T>* levels, int n_levels) {
  if (pb.batch < 1 || pb.channels < 1) fail("batch and channel counts must be >= 1");
  index_t size = checked_mul(pb.batch, pb.channels, "input size");
  for (index_t s : pb.in) {
    if (s < 1 || s > kHuge) fail("spatial sizes must be in [1, 2**40]");
    size = checked_mul(size, s, "input size");
  }
  if (n_levels < 1) fail("at least one output grid is needed");
  // Argmax positions are tracked in T as (row d*H + h, column): exact below 2**24 in float32.
  const index_t exact = index_t(1) << (sizeof(T) == 4 ? 24 : 53);
  const bool positions = op == BinReduce::max || op == BinReduce::mixed || op == BinReduce::stochastic ||
                         op == BinReduce::dropout;
  if (positions && (pb.in[0] * pb.in[1] > exact || pb.in[2] > exact))
    fail("an input of " + std::to_string(pb.in[0] * pb.in[1]) + " rows x " + std::to_string(pb.in[2]) +
         " columns is too large to track its argmax exactly in this dtype");
  for (int l = 0; l < n_levels; ++l) {
    const BinLevel<T>& lv = levels[l];
    for (int i = 0; i < kMaxRank; ++i) {
      const BinAxis& a = lv.axis[i];
      if (a.in != pb.in[i] || a.out < 1 || a.step < 1 || !a.first || !a.count || !a.divisor)
        fail("bin grid does not match the input");
      for (index_t o = 0; o < a.out; ++o)
        if (a.count[o] < 1 || a.first[o] < 0 || a.divisor[o] < 1 ||
            a.first[o] + (a.count[o] - 1) * a.step >= a.in)
          fail("bin " + std::to_string(o) + " lies outside the input");
    }
  }
}

template void check_bins<float>(const BinProblem&, BinReduce, const BinLevel<float>*, int);
template void check_bins<double>(const BinProblem&, BinReduce, const BinLevel<double>*, int);

// ------------------------------------------------------------------ lines

void check_lines(const LineProblem& lp) {
  const index_t dims[4] = {lp.batch, lp.channels, lp.height, lp.width};
  index_t n = 1;
  for (index_t d : dims) {
    if (d < 1 || d > kHuge) fail("line sizes must be in [1, 2**40], got " + std::to_string(d));
    n = checked_mul(n, d, "input size");
  }
  if (lp.axis != 0 && lp.axis != 1) fail("line axis must be 0 (H) or 1 (W), got " + std::to_string(lp.axis));
  const int s = static_cast<int>(lp.scan);
  if (s < 0 || s > 2) fail("invalid line scan " + std::to_string(s));
}

// ------------------------------------------------------------------ unpooling

void check_unpool(const UnpoolProblem& up) {
  const index_t dims[4] = {up.batch, up.channels, up.in_size, up.out_size};
  for (index_t d : dims)
    if (d < 1 || d > kHuge) fail("unpooling sizes must be in [1, 2**40], got " + std::to_string(d));
  checked_mul(checked_mul(up.batch, up.channels, "input size"), up.in_size, "input size");
  checked_mul(checked_mul(up.batch, up.channels, "output size"), up.out_size, "output size");
}

void check_hopfield(const HopfieldProblem& hp) {
  const index_t dims[4] = {hp.batch, hp.channels, hp.positions, hp.queries};
  for (index_t d : dims)
    if (d < 1 || d > kHuge) fail("Hopfield pooling sizes must be in [1, 2**40], got " + std::to_string(d));
  checked_mul(checked_mul(hp.batch, hp.channels, "input size"), hp.positions, "input size");
  checked_mul(checked_mul(hp.batch, hp.queries, "output size"), hp.channels, "output size");
}

void check_fractional(const FractionalProblem& fp) {
  if (fp.rank < 1 || fp.rank > kMaxRank) fail("fractional pooling's rank must be 1, 2 or 3");
  if (fp.batch < 1 || fp.batch > kHuge || fp.channels < 1 || fp.channels > kHuge)
    fail("batch and channel counts must be in [1, 2**40]");
  index_t in = checked_mul(fp.batch, fp.channels, "input size"), out = in;
  for (int a = 0; a < kMaxRank; ++a) {
    const index_t i = fp.in[a], o = fp.out[a], k = fp.kernel[a];
    if (i < 1 || i > kHuge || o < 1 || o > kHuge || k < 1 || k > kHuge)
      fail("fractional pooling sizes must be in [1, 2**40]");
    if (o + k - 1 > i)
      fail("output size " + std::to_string(o) + " + kernel size " + std::to_string(k) + " - 1 exceeds the input size " +
           std::to_string(i));
    if (fp.sample_axis[a] >= fp.rank || (fp.sample_axis[a] < 0 && (i != 1 || o != 1 || k != 1)))
      fail("every pooled axis needs a sample");
    in = checked_mul(in, i, "input size");
    out = checked_mul(out, o, "output size");
  }
  // the kernels gather with 32-bit offsets within a plane (channels_last: a sample)
  if (fp.in_plane() * (fp.channels_last ? fp.channels : 1) > index_t(2147483647))
    fail(std::string("fractional pooling needs fewer than 2**31 elements per ") +
         (fp.channels_last ? "sample" : "plane"));
}

index_t unpool_default_size(index_t in, index_t kernel, index_t stride, index_t padding) {
  if (in < 1 || in > kHuge) fail("unpooling input size must be in [1, 2**40], got " + std::to_string(in));
  if (kernel < 1 || kernel > kHuge) fail("kernel_size must be in [1, 2**40], got " + std::to_string(kernel));
  if (stride < 1 || stride > kHuge) fail("stride must be in [1, 2**40], got " + std::to_string(stride));
  if (padding < 0 || padding > kHuge) fail("padding must be in [0, 2**40], got " + std::to_string(padding));
  const index_t span = checked_mul(in - 1, stride, "unpooled size");
  if (span > kHuge) fail("the unpooled size exceeds 2**40 (in " + std::to_string(in) + ", stride " + std::to_string(stride) + ")");
  const index_t size = span - 2 * padding + kernel;
  if (size < 1)
    fail("the unpooled size (in - 1) * stride - 2 * padding + kernel_size = " + std::to_string(size) +
         " is not positive (in " + std::to_string(in) + ", kernel_size " + std::to_string(kernel) + ", stride " +
         std::to_string(stride) + ", padding " + std::to_string(padding) + ")");
  return size;
}

}  // namespace fastpool
