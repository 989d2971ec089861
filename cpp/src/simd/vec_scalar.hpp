// Scalar "vector" of one lane: the reference path, and the tail path of every ISA.
// Included inside an ISA namespace (no include guard on purpose).

template <class T>
struct Scalar {
  using value_type = T;
  using M = bool;
  static constexpr int N = 1;
  T v;

  static Scalar load(const T* p) { return {*p}; }
  static void store(T* p, Scalar a) { *p = a.v; }
  static Scalar set1(T a) { return {a}; }
  static Scalar zero() { return {T(0)}; }
  static Scalar load_strided(const T* p, index_t) { return {*p}; }
  // Partial forms (first n lanes; n >= 1): trivial for one lane.
  static Scalar load_n(const T* p, index_t) { return {*p}; }
  static Scalar load_strided_n(const T* p, index_t, index_t) { return {*p}; }
  static void store_n(T* p, Scalar a, index_t) { *p = a.v; }
  // base[offs[i]] per lane; the masked form gives 0 where valid[i] == 0.
  static Scalar gather(const T* base, const std::int32_t* offs) { return {base[offs[0]]}; }
  static Scalar gather_valid(const T* base, const std::int32_t* offs, const std::int32_t* valid) {
    return {valid[0] ? base[offs[0]] : T(0)};
  }
  static Scalar add(Scalar a, Scalar b) { return {a.v + b.v}; }
  static Scalar mul(Scalar a, Scalar b) { return {a.v * b.v}; }
  static Scalar div(Scalar a, Scalar b) { return {a.v / b.v}; }
  // a > b or a is NaN: the max-pooling scan rule.
  static M gt_or_nan(Scalar a, Scalar b) { return a.v > b.v || a.v != a.v; }
  static M eq(Scalar a, Scalar b) { return a.v == b.v; }
  // acc updated by v under the scan rule (value only).
  static Scalar max_nan(Scalar acc, Scalar v) { return {v.v > acc.v || v.v != v.v ? v.v : acc.v}; }
  static Scalar select(M m, Scalar a, Scalar b) { return {m ? a.v : b.v}; }
  static void stream(T* p, Scalar a) { *p = a.v; }
};
