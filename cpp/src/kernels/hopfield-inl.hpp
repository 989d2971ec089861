// Hopfield pooling: y[n, q] = sum_j softmax_j(beta <Q_q, X_j>) X_j over the positions j
// of sample n, and its gradients, fused as flash attention is: positions are visited in
// tiles with an online softmax (running maximum and sum), so only a (Q x tile) block of
// scores exists at a time.
//
// Dot products over C accumulate in 16 partial sums (lane k takes elements k mod 16)
// combined by a fixed tree, whatever the vector width: every path gives the same bits.
// channels_first tiles are transposed into (tile x C) rows first (N x N vector
// transposes), so both layouts run the same loops. Work units are samples.
// Included inside an ISA namespace after common-inl.hpp and math-inl.hpp.

namespace hopfield {

constexpr int kPartials = 16;
constexpr std::size_t kTileBytes = std::size_t(128) << 10;  // a tile of positions (x C) stays in L2

template <class T>
inline T dot(const T* a, const T* b, index_t n) {
  using V = Vec<T>;
  constexpr int U = kPartials / V::N;
  V acc[U];
  for (int u = 0; u < U; ++u) acc[u] = V::zero();
  index_t i = 0;
  for (; i + kPartials <= n; i += kPartials)
    for (int u = 0; u < U; ++u) acc[u] = V::add(acc[u], V::mul(V::load(a + i + u * V::N), V::load(b + i + u * V::N)));
  alignas(64) T p[kPartials];
  for (int u = 0; u < U; ++u) V::store(p + u * V::N, acc[u]);
  for (index_t k = 0; i + k < n; ++k) p[k] += a[i + k] * b[i + k];
  for (int w = kPartials / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) p[k] += p[k + w];
  return p[0];
}

// y += a x (element-wise: the same bits on every path).
template <class T>
inline void axpy(T* y, T a, const T* x, index_t n) {
  using V = Vec<T>;
  const V av = V::set1(a);
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, V::add(V::load(y + i), V::mul(av, V::load(x + i))));
  for (; i < n; ++i) y[i] += a * x[i];
}

template <class T>
inline void scale(T* y, T a, index_t n) {
  using V = Vec<T>;
  const V av = V::set1(a);
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, V::mul(V::load(y + i), av));
  for (; i < n; ++i) y[i] *= a;
}

// One exp / log with the vector paths' own functions (the kernels call no libm).
template <class T>
inline T exp1(T v) {
  T r;
  Scalar<T>::store(&r, vexp(Scalar<T>::set1(v)));
  return r;
}
template <class T>
inline T log1(T v) {
  T r;
  Scalar<T>::store(&r, vlog(Scalar<T>::set1(v)));
  return r;
}

// e[j] = exp((d[j] - dm) beta - shift) for j < n, 0 up to the padded length: logits
// relative to the row's best raw score dm, so beta d itself never overflows.
template <class T>
inline void exp_row(const T* d, T dm, T beta, T shift, T* e, index_t n, index_t padded) {
  using V = Vec<T>;
  const V dv = V::set1(dm), bv = V::set1(beta), sv = V::set1(shift);
  for (index_t j = 0; j < padded; j += V::N)
    V::store(e + j, vexp(V::sub(V::mul(V::sub(V::load(d + j), dv), bv), sv)));
  for (index_t j = n; j < padded; ++j) e[j] = T(0);
}

// Whether raw score a has a larger logit than b (beta a > beta b), NaN winning.
template <class T>
inline bool better(T a, T b, T beta) {
  return a != a || (beta > T(0) ? a > b : beta < T(0) ? a < b : false);
}

// (rows x cols) block of src (row stride ss) into dst transposed (row stride ds): N x N
// vector transposes, the ragged edges element by element.
template <class T>
inline void transpose(const T* src, index_t ss, T* dst, index_t ds, index_t rows, index_t cols) {
  using V = Vec<T>;
  const index_t r_full = rows / V::N * V::N, c_full = cols / V::N * V::N;
  for (index_t r = 0; r < r_full; r += V::N)
    for (index_t c = 0; c < c_full; c += V::N) V::transpose_block(src + r * ss + c, ss, dst + c * ds + r, ds);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = r < r_full ? c_full : 0; c < cols; ++c) dst[c * ds + r] = src[r * ss + c];
}

// The tile sizes and per-thread scratch of one call, and the three products of a tile
// of positions, as rows X_j of C: channels_last tiles are read in place, channels_first
// ones transposed into a buffer (and their grad_x rows transposed back).
template <class T>
struct Plan {
  index_t C, L, Q, tile, row;  // row: a tile's scores, padded to whole vectors
  bool cl;
  explicit Plan(const HopfieldProblem& hp)
      : C(hp.channels), L(hp.positions), Q(hp.queries), cl(hp.channels_last) {
    tile = imin(L, imax(16, index_t(kTileBytes / (sizeof(T) * std::size_t(C)))));
    row = (tile + Vec<T>::N - 1) / Vec<T>::N * Vec<T>::N;
  }
  std::size_t bytes() const {
    return Scratch::bytes<T>(cl ? 0 : tile * C) * 2 + Scratch::bytes<T>(Q * row) * 5 + Scratch::bytes<T>(Q * C) +
           Scratch::bytes<T>(Q) * 4 + 256;
  }
  // Positions [t0, t0 + nt) of sample n as rows of C.
  const T* rows(const T* x, index_t n, index_t t0, index_t nt, T* buf) const {
    if (cl) return x + (n * L + t0) * C;
    transpose(x + n * C * L + t0, L, buf, C, C, nt);
    return buf;
  }
  // Where the tile's grad_x rows go: in place, or a buffer for put_rows.
  T* grad_rows(T* gx, index_t n, index_t t0, T* buf) const { return cl ? gx + (n * L + t0) * C : buf; }
  void put_rows(const T* buf, T* gx, index_t n, index_t t0, index_t nt) const {
    if (!cl) transpose(buf, C, gx + n * C * L + t0, L, nt, C);
  }
  // r[q][j] = <a_q, X_j> for the Q rows a_q (C apart): scores (a = queries) or dA (a = G).
  void project(const T* xt, index_t nt, const T* a, T* r) const {
    for (index_t q = 0; q < Q; ++q)
      for (index_t j = 0; j < nt; ++j) r[q * row + j] = dot(a + q * C, xt + j * C, C);
  }
  // o_q += sum_j w[q][j] X_j (o: Q rows of C).
  void gather(const T* xt, index_t nt, const T* w, T* o) const {
    for (index_t q = 0; q < Q; ++q)
      for (index_t j = 0; j < nt; ++j) axpy(o + q * C, w[q * row + j], xt + j * C, C);
  }
  // grad rows gt[j] = sum_q a[q][j] u_q + b[q][j] v_q (u, v: Q rows of C).
  void spread(T* gt, index_t nt, const T* a, const T* u, const T* b, const T* v) const {
    std::memset(static_cast<void*>(gt), 0, sizeof(T) * std::size_t(nt * C));
    for (index_t j = 0; j < nt; ++j)
      for (index_t q = 0; q < Q; ++q) {
        axpy(gt + j * C, a[q * row + j], u + q * C, C);
        axpy(gt + j * C, b[q * row + j], v + q * C, C);
      }
  }
};

// The online softmax over all positions of sample n: o[q] = sum e_j X_j and
// l[q] = sum e_j with e_j = exp(beta (d_j - dm[q])), dm[q] the raw score of the best
// logit so far (o and l rescaled when it changes).
template <class T>
void attend(const Plan<T>& pl, const T* x, index_t n, const T* qs, T beta, T* xbuf, T* s, T* e, T* dm, T* l, T* o) {
  const index_t C = pl.C, Q = pl.Q;
  for (index_t q = 0; q < Q; ++q) l[q] = T(0);
  std::memset(static_cast<void*>(o), 0, sizeof(T) * std::size_t(Q * C));
  for (index_t t0 = 0; t0 < pl.L; t0 += pl.tile) {
    const index_t nt = imin(pl.tile, pl.L - t0);
    const T* xt = pl.rows(x, n, t0, nt, xbuf);
    pl.project(xt, nt, qs, s);
    for (index_t q = 0; q < Q; ++q) {
      T* sq = s + q * pl.row;
      const T old = t0 == 0 ? sq[0] : dm[q];
      T best = old;
      for (index_t j = 0; j < nt; ++j)
        if (better(sq[j], best, beta)) best = sq[j];
      for (index_t j = nt; j < pl.row; ++j) sq[j] = best;
      // rescale what came before to the new best (nothing yet, or no change: factor 1)
      const T f = best == old ? T(1) : exp1((old - best) * beta);
      T* eq = e + q * pl.row;
      exp_row(sq, best, beta, T(0), eq, nt, pl.row);
      T sum = l[q] * f;
      for (index_t j = 0; j < nt; ++j) sum += eq[j];
      l[q] = sum;
      dm[q] = best;
      if (f != T(1)) scale(o + q * C, f, C);
    }
    pl.gather(xt, nt, e, o);
  }
}

template <class T>
void forward(const T* x, const T* qs, T beta, T* y, const HopfieldProblem& hp, int threads) {
  const Plan<T> pl(hp);
  int ok = 1;
  parallel_for(hp.batch, threads, hp.batch * pl.L * pl.C * pl.Q, [&](index_t n0, index_t n1) {
    Scratch mem(pl.bytes());
    if (!mem.ok()) return report_failure(ok);
    T* xbuf = mem.take<T>(pl.cl ? 0 : pl.tile * pl.C);
    T* s = mem.take<T>(pl.Q * pl.row);
    T* e = mem.take<T>(pl.Q * pl.row);
    T* dm = mem.take<T>(pl.Q);
    T* l = mem.take<T>(pl.Q);
    for (index_t n = n0; n < n1; ++n) {
      T* yn = y + n * pl.Q * pl.C;
      attend(pl, x, n, qs, beta, xbuf, s, e, dm, l, yn);
      for (index_t q = 0; q < pl.Q; ++q) scale(yn + q * pl.C, T(1) / l[q], pl.C);
    }
  });
  if (!ok) throw std::bad_alloc();
}

// Per sample n: gx[n], gq_part[n] = beta sum_j dS X_j (Q x C) and gb_part[n] = sum dS <Q, X>,
// with A = softmax, dA = G X^T, dS = A (dA - D), D_q = <G_q, y_q>; the caller sums the
// parts over the batch in order.
template <class T>
void backward(const T* x, const T* qs, T beta, const T* g, T* gx, T* gq_part, T* gb_part, const HopfieldProblem& hp,
              int threads) {
  const Plan<T> pl(hp);
  const index_t C = pl.C, Q = pl.Q, L = pl.L;
  int ok = 1;
  parallel_for(hp.batch, threads, 3 * hp.batch * L * C * Q, [&](index_t n0, index_t n1) {
    Scratch mem(pl.bytes());
    if (!mem.ok()) return report_failure(ok);
    T* xbuf = mem.take<T>(pl.cl ? 0 : pl.tile * C);
    T* gbuf = mem.take<T>(pl.cl ? 0 : pl.tile * C);
    T* s = mem.take<T>(Q * pl.row);
    T* e = mem.take<T>(Q * pl.row);
    T* da = mem.take<T>(Q * pl.row);
    T* ds = mem.take<T>(Q * pl.row);
    T* bds = mem.take<T>(Q * pl.row);
    T* dm = mem.take<T>(Q);
    T* l = mem.take<T>(Q);
    T* lse = mem.take<T>(Q);
    T* dd = mem.take<T>(Q);
    T* o = mem.take<T>(Q * C);
    for (index_t n = n0; n < n1; ++n) {
      const T* gn = g + n * Q * C;
      T* gq = gq_part + n * Q * C;
      attend(pl, x, n, qs, beta, xbuf, s, e, dm, l, o);
      for (index_t q = 0; q < Q; ++q) {
        scale(o + q * C, T(1) / l[q], C);
        lse[q] = log1(l[q]);  // log sum exp, relative to beta dm
        dd[q] = dot(gn + q * C, o + q * C, C);
      }
      std::memset(static_cast<void*>(gq), 0, sizeof(T) * std::size_t(Q * C));
      T gb = T(0);
      for (index_t t0 = 0; t0 < L; t0 += pl.tile) {
        const index_t nt = imin(pl.tile, L - t0);
        const T* xt = pl.rows(x, n, t0, nt, xbuf);
        pl.project(xt, nt, qs, s);
        pl.project(xt, nt, gn, da);
        for (index_t q = 0; q < Q; ++q) {
          T *sq = s + q * pl.row, *eq = e + q * pl.row, *dq = da + q * pl.row;
          for (index_t j = nt; j < pl.row; ++j) sq[j] = dm[q];
          exp_row(sq, dm[q], beta, lse[q], eq, nt, pl.row);  // A = exp(beta (s - dm) - lse)
          for (index_t j = 0; j < nt; ++j) {
            const T d = eq[j] * (dq[j] - dd[q]);
            ds[q * pl.row + j] = d;
            bds[q * pl.row + j] = beta * d;
            gb += d * sq[j];
          }
        }
        T* gt = pl.grad_rows(gx, n, t0, gbuf);
        pl.spread(gt, nt, e, gn, bds, qs);  // A^T G + beta dS^T Q
        pl.put_rows(gt, gx, n, t0, nt);
        pl.gather(xt, nt, bds, gq);  // beta dS X
      }
      gb_part[n] = gb;
    }
  });
  if (!ok) throw std::bad_alloc();
}

}  // namespace hopfield
