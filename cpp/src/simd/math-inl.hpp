// Element-wise exp, log and pow written once over a vector type V (placeholder:
// scalar loops until the vector versions land).

template <class T>
void exp_array(const T* x, T* y, index_t n) {
  for (index_t i = 0; i < n; ++i) y[i] = T(__builtin_exp(double(x[i])));
}
template <class T>
void log_array(const T* x, T* y, index_t n) {
  for (index_t i = 0; i < n; ++i) y[i] = T(__builtin_log(double(x[i])));
}
template <class T>
void pow_array(const T* x, const T* p, T* y, index_t n) {
  for (index_t i = 0; i < n; ++i) y[i] = T(__builtin_pow(double(x[i]), double(p[i])));
}
