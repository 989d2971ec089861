// Scalar "vector" of one lane: the reference path, and the tail path of every ISA.
// Included inside an ISA namespace (no include guard on purpose).

// Unsigned integer of the same width as T: the lane bits of the bit-level helpers.
template <class T>
struct BitsOf;
template <>
struct BitsOf<float> {
  using type = std::uint32_t;
};
template <>
struct BitsOf<double> {
  using type = std::uint64_t;
};

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
  // A store that may bypass the cache (p aligned to the vector); fence() orders it.
  static void stream(T* p, Scalar a) { *p = a.v; }
  static void fence() {}
  // Transposes an N x N block: row i of src (N elements at src + i*src_stride) becomes
  // column i of dst (element j of it at dst + j*dst_stride + i). Unaligned pointers; src
  // and dst do not overlap. Exact bit copies (NaN payloads kept). One lane: one copy.
  static void transpose_block(const T* src, index_t, T* dst, index_t) { __builtin_memcpy(dst, src, sizeof(T)); }

  // ---- element-wise math (simd/math-inl.hpp); every vector type has the same set.
  using U = typename BitsOf<T>::type;
  static constexpr U kSignBit = U(1) << (sizeof(U) * 8 - 1);
  static U bits_of(T a) {
    U u;
    __builtin_memcpy(&u, &a, sizeof u);
    return u;
  }
  static T of_bits(U u) {
    T a;
    __builtin_memcpy(&a, &u, sizeof a);
    return a;
  }
  static Scalar sub(Scalar a, Scalar b) { return {a.v - b.v}; }
  // Exactly these ternaries (minps/maxps order): b when either is NaN or both are zero.
  static Scalar min(Scalar a, Scalar b) { return {a.v < b.v ? a.v : b.v}; }
  static Scalar max(Scalar a, Scalar b) { return {a.v > b.v ? a.v : b.v}; }
  // Sign bit cleared / flipped (NaN payloads untouched).
  static Scalar abs(Scalar a) { return {of_bits(bits_of(a.v) & ~kSignBit)}; }
  static Scalar neg(Scalar a) { return {of_bits(bits_of(a.v) ^ kSignBit)}; }
  // Ordered comparisons: false if either is NaN.
  static M lt(Scalar a, Scalar b) { return a.v < b.v; }
  static M le(Scalar a, Scalar b) { return a.v <= b.v; }
  static M gt(Scalar a, Scalar b) { return a.v > b.v; }
  static M is_nan(Scalar a) { return a.v != a.v; }
  static M m_and(M a, M b) { return a && b; }
  static M m_or(M a, M b) { return a || b; }
  static M m_not(M a) { return !a; }
  // Any lane set (lanes past a partial load included: they hold what load_n put there).
  static bool any(M m) { return m; }
  // Bit-level: lanes as unsigned integers of T's width (logical shifts).
  template <int S>
  static Scalar shl(Scalar a) { return {of_bits(U(bits_of(a.v) << S))}; }
  template <int S>
  static Scalar shr(Scalar a) { return {of_bits(U(bits_of(a.v) >> S))}; }
  static Scalar band(Scalar a, Scalar b) { return {of_bits(bits_of(a.v) & bits_of(b.v))}; }
  static Scalar bor(Scalar a, Scalar b) { return {of_bits(bits_of(a.v) | bits_of(b.v))}; }
  static Scalar from_bits(U u) { return {of_bits(u)}; }
};
