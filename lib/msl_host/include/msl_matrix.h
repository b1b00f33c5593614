// msl_matrix.h: Metal's matrices. matrix<T, C, R> (floatCxR, halfCxR) has C
// columns of R elements, stored column after column as Metal lays them out
// (a float3x3 takes 48 bytes). Built from one scalar (the diagonal), from its
// C columns, or from C * R scalars in column order; m[j] is column j. `*`
// takes a matrix and a vector (m * v: the columns weighted by v; v * m: v dotted
// with each column), two matrices, or a scalar; `+` and `-` two matrices.
// transpose and determinant. Arithmetic happens in T, rounded after each step.
#pragma once

#include "msl_host.h"

namespace metal {

template <class T, int C, int R>
struct matrix {
  static_assert(C >= 2 && C <= 4 && R >= 2 && R <= 4, "Metal matrices have 2 to 4 columns and rows");
  typedef vec<T, R> column_type;
  column_type columns[C];

  matrix() = default;
  explicit matrix(T diagonal) {
    for (int j = 0; j < C; ++j) {
      columns[j] = column_type(T(0));
      if (j < R) columns[j][j] = diagonal;
    }
  }
  template <class... A, std::enable_if_t<sizeof...(A) == C && (std::is_same<A, column_type>::value && ...), int> = 0>
  matrix(const A&... cols) : columns{cols...} {}
  template <class... A, std::enable_if_t<sizeof...(A) == C * R && (is_scalar<A>::value && ...), int> = 0>
  matrix(const A&... values) {
    const T flat[] = {T(values)...};
    for (int k = 0; k < C * R; ++k) columns[k / R][k % R] = flat[k];
  }
  template <class U>
  explicit matrix(const matrix<U, C, R>& o) {
    for (int j = 0; j < C; ++j) columns[j] = column_type(o[j]);
  }
  column_type& operator[](int j) { return columns[j]; }
  const column_type& operator[](int j) const { return columns[j]; }
};

// m * v: the sum of the columns weighted by v's elements.
template <class T, int C, int R>
inline vec<T, R> operator*(const matrix<T, C, R>& m, const vec<T, C>& v) {
  vec<T, R> r = m[0] * v[0];
  for (int j = 1; j < C; ++j) r = r + m[j] * v[j];
  return r;
}
// v * m: v (a row) dotted with each column.
template <class T, int C, int R>
inline vec<T, C> operator*(const vec<T, R>& v, const matrix<T, C, R>& m) {
  vec<T, C> r;
  for (int j = 0; j < C; ++j) r[j] = dot(v, m[j]);
  return r;
}
template <class T, int K, int C, int R>
inline matrix<T, C, R> operator*(const matrix<T, K, R>& a, const matrix<T, C, K>& b) {
  matrix<T, C, R> r;
  for (int j = 0; j < C; ++j) r[j] = a * b[j];
  return r;
}
// Element-wise: with a scalar (*), or between matrices of one shape (+ -).
template <class T, int C, int R, class F>
inline matrix<T, C, R> each_column(const matrix<T, C, R>& a, F f) {
  matrix<T, C, R> r;
  for (int j = 0; j < C; ++j) r[j] = f(j);
  return r;
}
template <class T, int C, int R, class S, std::enable_if_t<is_scalar<S>::value, int> = 0>
inline matrix<T, C, R> operator*(const matrix<T, C, R>& m, S s) {
  return each_column(m, [&](int j) { return m[j] * T(s); });
}
template <class T, int C, int R, class S, std::enable_if_t<is_scalar<S>::value, int> = 0>
inline matrix<T, C, R> operator*(S s, const matrix<T, C, R>& m) {
  return each_column(m, [&](int j) { return T(s) * m[j]; });
}
template <class T, int C, int R>
inline matrix<T, C, R> operator+(const matrix<T, C, R>& a, const matrix<T, C, R>& b) {
  return each_column(a, [&](int j) { return a[j] + b[j]; });
}
template <class T, int C, int R>
inline matrix<T, C, R> operator-(const matrix<T, C, R>& a, const matrix<T, C, R>& b) {
  return each_column(a, [&](int j) { return a[j] - b[j]; });
}
template <class T, int C, int R>
inline matrix<T, C, R> operator-(const matrix<T, C, R>& a) {
  return each_column(a, [&](int j) { return -a[j]; });
}
#define MSL_MATRIX_ASSIGN(op)                                                \
  template <class T, int C, int R, class B>                                  \
  inline matrix<T, C, R>& operator op##=(matrix<T, C, R>& a, const B& b) {   \
    return a = a op b;                                                       \
  }
MSL_MATRIX_ASSIGN(+)
MSL_MATRIX_ASSIGN(-)
MSL_MATRIX_ASSIGN(*)
#undef MSL_MATRIX_ASSIGN

template <class T, int C, int R>
inline matrix<T, R, C> transpose(const matrix<T, C, R>& m) {
  matrix<T, R, C> t;
  for (int j = 0; j < C; ++j)
    for (int i = 0; i < R; ++i) t[i][j] = m[j][i];
  return t;
}

// Determinants by cofactor expansion along the first column.
template <class T>
inline T determinant(const matrix<T, 2, 2>& m) {
  return m[0][0] * m[1][1] - m[1][0] * m[0][1];
}
template <class T, int N>
inline T determinant(const matrix<T, N, N>& m) {
  T det = T(0);
  for (int i = 0; i < N; ++i) {
    matrix<T, N - 1, N - 1> minor;
    for (int j = 1; j < N; ++j)
      for (int r = 0, k = 0; r < N; ++r)
        if (r != i) minor[j - 1][k++] = m[j][r];
    const T term = m[0][i] * determinant(minor);
    det = i % 2 ? T(det - term) : T(det + term);
  }
  return det;
}

#define MSL_MATRIX_TYPES(T)            \
  typedef matrix<T, 2, 2> T##2x2;      \
  typedef matrix<T, 2, 3> T##2x3;      \
  typedef matrix<T, 2, 4> T##2x4;      \
  typedef matrix<T, 3, 2> T##3x2;      \
  typedef matrix<T, 3, 3> T##3x3;      \
  typedef matrix<T, 3, 4> T##3x4;      \
  typedef matrix<T, 4, 2> T##4x2;      \
  typedef matrix<T, 4, 3> T##4x3;      \
  typedef matrix<T, 4, 4> T##4x4;
MSL_MATRIX_TYPES(float)
MSL_MATRIX_TYPES(half)
#undef MSL_MATRIX_TYPES

}  // namespace metal
