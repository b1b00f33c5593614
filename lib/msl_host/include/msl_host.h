// msl_host.h: the Metal Shading Language's types and math as C++17, so that
// the kernels MLX generates for mx.fast.metal_kernel compile for a CPU.
//
// Covered: address-space qualifiers, scalar types (half is the compiler's
// _Float16 where it has one, with IEEE rounding after every operation; bfloat
// is a class with float-ranked conversions), 2/3/4-element vectors and their
// swizzles (msl_host rewrites `v.xy` into a call of a member template here),
// Metal's type traits, math, integer and relational functions (metal::precise::
// and metal::fast:: are the exact functions here), as_type and numeric_limits.
// msl_matrix.h adds matrices and packed vectors; msl_check.h (bounds
// checking), msl_sync.h (threads, barriers, SIMD groups, atomics) and
// mlx_utils.h (what MLX puts in front of every kernel) build on it;
// msl_prelude.h includes them all.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;  // 64 bits, as in MSL, on LP64 hosts

namespace metal {

// ---------------------------------------------------------------- 16-bit floats

// Bit conversions, all rounding to nearest even and keeping NaN a NaN.
struct half_bits {
  static uint16_t from_float(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | ((ax >> 13) & 0x3ff);  // NaN
    if (ax >= 0x477ff000u) return sign | 0x7c00;  // >= 65520: infinity
    if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
      const float scaled = std::fabs(f) * 16777216.0f;  // in units of 2^-24
      return sign | static_cast<uint16_t>(std::nearbyint(scaled));
    }
    const uint32_t rebased = ax - 0x38000000u;  // exponent bias 127 -> 15
    return sign | static_cast<uint16_t>((rebased + 0x0fffu + ((rebased >> 13) & 1u)) >> 13);
  }
  static float to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t x;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24
      const float f = float(mant) * (1.0f / 16777216.0f);
      std::memcpy(&x, &f, 4);
      x |= sign;
    } else if (exp == 31) {
      x = sign | 0x7f800000u | (mant << 13);
    } else {
      x = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
  }
};

struct bfloat_bits {
  static uint16_t from_float(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (x >> 16) | 0x40;  // quiet NaN
    return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  }
  static float to_float(uint16_t b) {
    const uint32_t x = uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
  }
};

template <class Bits> struct small_float;

#ifdef __FLT16_MAX__
typedef _Float16 half;  // the compiler rounds to half after every operation
#else
typedef small_float<half_bits> half;
#endif
typedef small_float<bfloat_bits> bfloat;

// C++'s own floating-point and arithmetic types (not _Float16, whatever the
// standard library says about it).
template <class T>
struct is_cxx_float : std::integral_constant<bool, std::is_same<T, float>::value ||
                                                       std::is_same<T, double>::value ||
                                                       std::is_same<T, long double>::value> {};
template <class T>
struct is_cxx_arith : std::integral_constant<bool, std::is_integral<T>::value || is_cxx_float<T>::value> {};

// Floating-point types as MSL ranks them: half and bfloat below float.
template <class T> struct is_float : is_cxx_float<T> {};
template <> struct is_float<half> : std::true_type {};
template <class B> struct is_float<small_float<B>> : std::true_type {};

// A scalar as MSL knows it: an integer, bool or floating-point type.
template <class T>
struct is_scalar : std::integral_constant<bool, std::is_integral<T>::value || is_float<T>::value> {};

// The type in which math functions compute for T (half, bfloat -> float).
template <class T>
using calc_t = std::conditional_t<std::is_same<T, double>::value, double, float>;

// A 16-bit float stored as bits; arithmetic is done in float and rounded back,
// which is exact IEEE half/bfloat arithmetic for + - * / (float has > 2p+2 bits).
// Conversions: implicit from integers and float/double, implicit to float and
// double, explicit to integers, bool and the other 16-bit float. So `c ? x : 0`
// is a small_float, while `c ? x : 0.0f` is ambiguous (each converts to the other).
template <class Bits>
struct small_float {
  uint16_t bits;

  small_float() = default;
  template <class T, std::enable_if_t<is_cxx_arith<T>::value, int> = 0>
  constexpr small_float(T v) : bits(Bits::from_float(static_cast<float>(v))) {}
  template <class T, std::enable_if_t<is_float<T>::value && !is_cxx_float<T>::value &&
                                          !std::is_same<T, small_float>::value, int> = 0>
  explicit small_float(T v) : bits(Bits::from_float(static_cast<float>(v))) {}

  template <class F, std::enable_if_t<is_cxx_float<F>::value, int> = 0>
  constexpr operator F() const { return F(Bits::to_float(bits)); }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  explicit operator I() const { return I(Bits::to_float(bits)); }
  template <class F, std::enable_if_t<is_float<F>::value && !is_cxx_float<F>::value &&
                                          !std::is_same<F, small_float>::value, int> = 0>
  explicit operator F() const { return F(Bits::to_float(bits)); }

  static constexpr small_float from_bits(uint16_t b) { return small_float(bits_tag{}, b); }
  constexpr small_float operator-() const { return from_bits(bits ^ 0x8000); }
  constexpr small_float operator+() const { return *this; }
  small_float& operator++() { return *this = small_float(float(*this) + 1.0f); }
  small_float& operator--() { return *this = small_float(float(*this) - 1.0f); }
  small_float operator++(int) { small_float old = *this; ++*this; return old; }
  small_float operator--(int) { small_float old = *this; --*this; return old; }

 private:
  struct bits_tag {};
  constexpr small_float(bits_tag, uint16_t b) : bits(b) {}
};

// Result type of a binary operation with a small_float operand: C++'s usual
// arithmetic conversions with the small_float ranked just below float.
template <class A, class B, class = void> struct sf_result {};
template <class B>
struct sf_result<small_float<B>, small_float<B>> { using type = small_float<B>; };
template <class B, class U>
struct sf_result<small_float<B>, U, std::enable_if_t<is_cxx_arith<U>::value>> {
  using type = std::conditional_t<is_cxx_float<U>::value, U, small_float<B>>;
};
template <class U, class B>
struct sf_result<U, small_float<B>, std::enable_if_t<is_cxx_arith<U>::value>>
    : sf_result<small_float<B>, U> {};

#define MSL_SF_ARITH(op)                                                \
  template <class A, class B, class R = typename sf_result<A, B>::type> \
  inline R operator op(A a, B b) {                                      \
    return R(calc_t<R>(R(a)) op calc_t<R>(R(b)));                       \
  }                                                                     \
  template <class Bits, class B>                                        \
  inline small_float<Bits>& operator op##=(small_float<Bits>& a, B b) { \
    return a = small_float<Bits>(a op b);                               \
  }
#define MSL_SF_COMPARE(op)                                              \
  template <class A, class B, class R = typename sf_result<A, B>::type> \
  inline bool operator op(A a, B b) {                                   \
    return calc_t<R>(R(a)) op calc_t<R>(R(b));                          \
  }
MSL_SF_ARITH(+)
MSL_SF_ARITH(-)
MSL_SF_ARITH(*)
MSL_SF_ARITH(/)
MSL_SF_COMPARE(==)
MSL_SF_COMPARE(!=)
MSL_SF_COMPARE(<)
MSL_SF_COMPARE(>)
MSL_SF_COMPARE(<=)
MSL_SF_COMPARE(>=)
#undef MSL_SF_ARITH
#undef MSL_SF_COMPARE

// ---------------------------------------------------------------- vectors

template <class T, int N> struct vec_members;
template <class T> struct vec_members<T, 2> { T x, y; };
template <class T> struct vec_members<T, 3> { T x, y, z; };
template <class T> struct vec_members<T, 4> { T x, y, z, w; };

template <class T> struct vec_size : std::integral_constant<int, 1> {};
template <class T, int N> struct vec;
template <class V, int... I> struct swizzle_ref;

// Element i of a vector (x, y, z, w members).
template <int N, class V>
inline auto& component(V& v, int i) {
  if constexpr (N > 2) if (i == 2) return v.z;
  if constexpr (N > 3) if (i == 3) return v.w;
  return i == 0 ? v.x : v.y;
}

// Swizzles. msl_host rewrites a read of `v.zyx` into `v.msl_swizzle<2, 1, 0>()`,
// a new vector, and a write (`v.xy = ...`, `v.xy += ...`) into
// `v.msl_swizzle_ref<0, 1>() = ...`, which assigns the named components.
#define MSL_SWIZZLE_MEMBERS(Self)                                                        \
  template <int... I>                                                                    \
  vec<T, int(sizeof...(I))> msl_swizzle() const {                                       \
    static_assert(((I < N) && ...), "the swizzle names a component the vector lacks"); \
    return vec<T, int(sizeof...(I))>((*this)[I]...);                                     \
  }                                                                                      \
  template <int... I>                                                                    \
  swizzle_ref<Self, I...> msl_swizzle_ref() {                                           \
    return {*this};                                                                      \
  }

template <int... I> struct all_distinct : std::true_type {};
template <int A, int... R>
struct all_distinct<A, R...> : std::integral_constant<bool, ((A != R) && ...) && all_distinct<R...>::value> {};

// Metal layout: a 3-vector takes the size and alignment of a 4-vector.
template <class T, int N>
struct alignas(sizeof(T) * (N == 3 ? 4 : N)) vec : vec_members<T, N> {
  typedef T value_type;
  vec() = default;
  vec(const vec&) = default;
  // Assigning to a temporary (such as a swizzle read) is an error, as in Metal.
  vec& operator=(const vec&) & = default;
  vec(T s) {  // a scalar converts implicitly, replicated into every element
    for (int i = 0; i < N; ++i) (*this)[i] = s;
  }
  // Elements from scalars and smaller vectors, e.g. float4(float2(a, b), c, d).
  template <class... A, std::enable_if_t<(sizeof...(A) > 1) &&
                                             (vec_size<A>::value + ...) == N, int> = 0>
  vec(const A&... a) {
    int i = 0;
    (put(i, a), ...);
  }
  template <class U>
  explicit vec(const vec<U, N>& o) {
    for (int i = 0; i < N; ++i) (*this)[i] = T(o[i]);
  }
  T& operator[](int i) { return component<N>(*this, i); }
  const T& operator[](int i) const { return component<N>(*this, i); }
  MSL_SWIZZLE_MEMBERS(vec)

 private:
  template <class U, std::enable_if_t<vec_size<U>::value == 1, int> = 0>
  void put(int& i, const U& s) { (*this)[i++] = T(s); }
  template <class U, std::enable_if_t<(vec_size<U>::value > 1), int> = 0>
  void put(int& i, const U& v) {
    for (int j = 0; j < vec_size<U>::value; ++j) (*this)[i++] = T(v[j]);
  }
};
template <class T, int N> struct vec_size<vec<T, N>> : std::integral_constant<int, N> {};

// Metal's packed vectors: the elements only, aligned as one element (a
// packed_float3 takes 12 bytes). They convert to and from vectors; arithmetic
// converts them to vectors first.
template <class T, int N>
struct packed_vec : vec_members<T, N> {
  typedef T value_type;
  packed_vec() = default;
  packed_vec(const vec<T, N>& v) {
    for (int i = 0; i < N; ++i) (*this)[i] = v[i];
  }
  template <class... A, std::enable_if_t<(sizeof...(A) > 1) && (vec_size<A>::value + ...) == N, int> = 0>
  packed_vec(const A&... a) : packed_vec(vec<T, N>(a...)) {}
  operator vec<T, N>() const { return msl_swizzle_all(std::make_integer_sequence<int, N>()); }
  T& operator[](int i) { return component<N>(*this, i); }
  const T& operator[](int i) const { return component<N>(*this, i); }
  MSL_SWIZZLE_MEMBERS(packed_vec)

 private:
  template <int... I>
  vec<T, N> msl_swizzle_all(std::integer_sequence<int, I...>) const { return msl_swizzle<I...>(); }
};
template <class T, int N> struct vec_size<packed_vec<T, N>> : std::integral_constant<int, N> {};
template <class T> struct is_packed : std::false_type {};
template <class T, int N> struct is_packed<packed_vec<T, N>> : std::true_type {};
template <class T> inline const T& unpacked(const T& v) { return v; }
template <class T, int N> inline vec<T, N> unpacked(const packed_vec<T, N>& p) { return p; }

template <class T> struct is_vec : std::false_type {};
template <class T, int N> struct is_vec<vec<T, N>> : std::true_type {};

// The components a swizzle names, as an assignable whole (v.xy = ..., v.xy += ...).
template <class V, int... I>
struct swizzle_ref {
  typedef typename V::value_type T;
  typedef vec<T, int(sizeof...(I))> value_type;
  static_assert(((I < vec_size<V>::value) && ...), "the swizzle names a component the vector lacks");
  static_assert(all_distinct<I...>::value, "a swizzle that names a component twice cannot be assigned to, as in Metal");
  V& v;

  swizzle_ref& operator=(const value_type& x) {
    int j = 0;
    ((v[I] = x[j++]), ...);
    return *this;
  }
  swizzle_ref& operator=(const swizzle_ref& o) { return *this = value_type(o); }
  operator value_type() const { return value_type(v[I]...); }
#define MSL_SWIZZLE_ASSIGN(op) \
  template <class B>           \
  swizzle_ref& operator op##=(const B& b) { return *this = value_type(value_type(*this) op b); }
  MSL_SWIZZLE_ASSIGN(+)
  MSL_SWIZZLE_ASSIGN(-)
  MSL_SWIZZLE_ASSIGN(*)
  MSL_SWIZZLE_ASSIGN(/)
  MSL_SWIZZLE_ASSIGN(%)
  MSL_SWIZZLE_ASSIGN(&)
  MSL_SWIZZLE_ASSIGN(|)
  MSL_SWIZZLE_ASSIGN(^)
  MSL_SWIZZLE_ASSIGN(<<)
  MSL_SWIZZLE_ASSIGN(>>)
#undef MSL_SWIZZLE_ASSIGN
};
template <class V, int... I> struct vec_size<swizzle_ref<V, I...>> : std::integral_constant<int, sizeof...(I)> {};

// Element-wise operators; a scalar operand is converted to the element type.
#define MSL_VEC_OP(op, R)                                                           \
  template <class T, int N>                                                         \
  inline vec<R, N> operator op(const vec<T, N>& a, const vec<T, N>& b) {            \
    vec<R, N> r;                                                                    \
    for (int i = 0; i < N; ++i) r[i] = R(a[i] op b[i]);                             \
    return r;                                                                       \
  }                                                                                 \
  template <class T, int N, class S, std::enable_if_t<is_scalar<S>::value, int> = 0> \
  inline vec<R, N> operator op(const vec<T, N>& a, S s) {                           \
    return a op vec<T, N>(T(s));                                                    \
  }                                                                                 \
  template <class T, int N, class S, std::enable_if_t<is_scalar<S>::value, int> = 0> \
  inline vec<R, N> operator op(S s, const vec<T, N>& a) {                           \
    return vec<T, N>(T(s)) op a;                                                    \
  }
#define MSL_VEC_ASSIGN(op)                                          \
  template <class T, int N, class B>                                \
  inline vec<T, N>& operator op##=(vec<T, N>& a, const B& b) {      \
    return a = a op b;                                              \
  }
MSL_VEC_OP(+, T)
MSL_VEC_OP(-, T)
MSL_VEC_OP(*, T)
MSL_VEC_OP(/, T)
MSL_VEC_OP(%, T)
MSL_VEC_OP(&, T)
MSL_VEC_OP(|, T)
MSL_VEC_OP(^, T)
MSL_VEC_OP(<<, T)
MSL_VEC_OP(>>, T)
MSL_VEC_OP(==, bool)
MSL_VEC_OP(!=, bool)
MSL_VEC_OP(<, bool)
MSL_VEC_OP(>, bool)
MSL_VEC_OP(<=, bool)
MSL_VEC_OP(>=, bool)
MSL_VEC_OP(&&, bool)
MSL_VEC_OP(||, bool)
MSL_VEC_ASSIGN(+)
MSL_VEC_ASSIGN(-)
MSL_VEC_ASSIGN(*)
MSL_VEC_ASSIGN(/)
MSL_VEC_ASSIGN(%)
MSL_VEC_ASSIGN(&)
MSL_VEC_ASSIGN(|)
MSL_VEC_ASSIGN(^)
MSL_VEC_ASSIGN(<<)
MSL_VEC_ASSIGN(>>)
#undef MSL_VEC_OP
#undef MSL_VEC_ASSIGN

#define MSL_VEC_UNARY(op, R)                          \
  template <class T, int N>                           \
  inline vec<R, N> operator op(const vec<T, N>& a) {  \
    vec<R, N> r;                                      \
    for (int i = 0; i < N; ++i) r[i] = R(op a[i]);    \
    return r;                                         \
  }
MSL_VEC_UNARY(-, T)
MSL_VEC_UNARY(~, T)
MSL_VEC_UNARY(!, bool)
#undef MSL_VEC_UNARY

// Operators with a packed vector operand: on the unpacked vectors.
#define MSL_PACKED_BINARY(op)                                                                          \
  template <class A, class B, std::enable_if_t<is_packed<A>::value || is_packed<B>::value, int> = 0>  \
  inline auto operator op(const A& a, const B& b) {                                                   \
    return unpacked(a) op unpacked(b);                                                                \
  }
#define MSL_PACKED_OP(op)                                                    \
  MSL_PACKED_BINARY(op)                                                      \
  template <class T, int N, class B>                                         \
  inline packed_vec<T, N>& operator op##=(packed_vec<T, N>& a, const B& b) { \
    return a = packed_vec<T, N>(vec<T, N>(vec<T, N>(a) op unpacked(b)));     \
  }
MSL_PACKED_OP(+)
MSL_PACKED_OP(-)
MSL_PACKED_OP(*)
MSL_PACKED_OP(/)
MSL_PACKED_OP(%)
MSL_PACKED_OP(&)
MSL_PACKED_OP(|)
MSL_PACKED_OP(^)
MSL_PACKED_OP(<<)
MSL_PACKED_OP(>>)
MSL_PACKED_BINARY(==)
MSL_PACKED_BINARY(!=)
MSL_PACKED_BINARY(<)
MSL_PACKED_BINARY(>)
MSL_PACKED_BINARY(<=)
MSL_PACKED_BINARY(>=)
#undef MSL_PACKED_OP
#undef MSL_PACKED_BINARY
template <class T, int N> inline vec<T, N> operator-(const packed_vec<T, N>& a) { return -vec<T, N>(a); }

#define MSL_VEC_TYPES(T)              \
  typedef vec<T, 2> T##2;              \
  typedef vec<T, 3> T##3;              \
  typedef vec<T, 4> T##4;              \
  typedef packed_vec<T, 2> packed_##T##2; \
  typedef packed_vec<T, 3> packed_##T##3; \
  typedef packed_vec<T, 4> packed_##T##4;
MSL_VEC_TYPES(float)
MSL_VEC_TYPES(half)
MSL_VEC_TYPES(bfloat)
MSL_VEC_TYPES(int)
MSL_VEC_TYPES(uint)
MSL_VEC_TYPES(short)
MSL_VEC_TYPES(ushort)
MSL_VEC_TYPES(char)
MSL_VEC_TYPES(uchar)
MSL_VEC_TYPES(long)
MSL_VEC_TYPES(ulong)
MSL_VEC_TYPES(bool)
#undef MSL_VEC_TYPES

// ---------------------------------------------------------------- functions

// Each function takes scalars (float, half, bfloat, integers) or vectors.
#define MSL_UNARY(name, expr)                                        \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0> \
  inline T name(T v) {                                               \
    const calc_t<T> x = calc_t<T>(v);                                \
    return T(expr);                                                  \
  }                                                                  \
  template <class T, int N>                                          \
  inline vec<T, N> name(vec<T, N> v) {                               \
    for (int i = 0; i < N; ++i) v[i] = name(v[i]);                   \
    return v;                                                        \
  }
MSL_UNARY(exp, std::exp(x))
MSL_UNARY(exp2, std::exp2(x))
MSL_UNARY(exp10, std::pow(calc_t<T>(10), x))
MSL_UNARY(log, std::log(x))
MSL_UNARY(log2, std::log2(x))
MSL_UNARY(log10, std::log10(x))
MSL_UNARY(sqrt, std::sqrt(x))
MSL_UNARY(rsqrt, 1 / std::sqrt(x))
MSL_UNARY(cbrt, std::cbrt(x))
MSL_UNARY(sin, std::sin(x))
MSL_UNARY(cos, std::cos(x))
MSL_UNARY(tan, std::tan(x))
MSL_UNARY(asin, std::asin(x))
MSL_UNARY(acos, std::acos(x))
MSL_UNARY(atan, std::atan(x))
MSL_UNARY(sinh, std::sinh(x))
MSL_UNARY(cosh, std::cosh(x))
MSL_UNARY(tanh, std::tanh(x))
MSL_UNARY(asinh, std::asinh(x))
MSL_UNARY(acosh, std::acosh(x))
MSL_UNARY(atanh, std::atanh(x))
MSL_UNARY(sinpi, std::sin(x * calc_t<T>(M_PI)))
MSL_UNARY(cospi, std::cos(x * calc_t<T>(M_PI)))
MSL_UNARY(tanpi, std::tan(x * calc_t<T>(M_PI)))
MSL_UNARY(floor, std::floor(x))
MSL_UNARY(ceil, std::ceil(x))
MSL_UNARY(trunc, std::trunc(x))
MSL_UNARY(round, std::round(x))
MSL_UNARY(rint, std::rint(x))
MSL_UNARY(fabs, std::fabs(x))
MSL_UNARY(fract, std::fmin(x - std::floor(x), calc_t<T>(0x1.fffffep-1)))
MSL_UNARY(saturate, std::fmin(std::fmax(x, calc_t<T>(0)), calc_t<T>(1)))
MSL_UNARY(sign, x > 0 ? calc_t<T>(1) : x < 0 ? calc_t<T>(-1) : x)
#undef MSL_UNARY

template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T abs(T v) {
  if constexpr (std::is_integral<T>::value) return v < 0 ? T(-v) : v;
  else return fabs(v);
}
template <class T, int N>
inline vec<T, N> abs(vec<T, N> v) {
  for (int i = 0; i < N; ++i) v[i] = abs(v[i]);
  return v;
}

#define MSL_BINARY(name, expr)                                       \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0> \
  inline T name(T a, T b) {                                          \
    const calc_t<T> x = calc_t<T>(a), y = calc_t<T>(b);              \
    return T(expr);                                                  \
  }                                                                  \
  template <class T, int N>                                          \
  inline vec<T, N> name(vec<T, N> a, const vec<T, N>& b) {           \
    for (int i = 0; i < N; ++i) a[i] = name(a[i], b[i]);             \
    return a;                                                        \
  }
// For floats, max/min return the other operand when one is NaN, like fmax;
// integers compare exactly.
MSL_BINARY(max, std::is_integral<T>::value ? T(a < b ? b : a) : T(std::fmax(x, y)))
MSL_BINARY(min, std::is_integral<T>::value ? T(b < a ? b : a) : T(std::fmin(x, y)))
MSL_BINARY(fmax, std::fmax(x, y))
MSL_BINARY(fmin, std::fmin(x, y))
MSL_BINARY(pow, std::pow(x, y))
MSL_BINARY(powr, std::pow(x, y))
MSL_BINARY(atan2, std::atan2(x, y))
MSL_BINARY(fmod, std::fmod(x, y))
MSL_BINARY(copysign, std::copysign(x, y))
MSL_BINARY(fdim, std::fdim(x, y))
MSL_BINARY(step, y < x ? 0 : 1)
MSL_BINARY(divide, x / y)
#undef MSL_BINARY

template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T fma(T a, T b, T c) {
  return T(std::fma(calc_t<T>(a), calc_t<T>(b), calc_t<T>(c)));
}
template <class T, int N>
inline vec<T, N> fma(vec<T, N> a, const vec<T, N>& b, const vec<T, N>& c) {
  for (int i = 0; i < N; ++i) a[i] = fma(a[i], b[i], c[i]);
  return a;
}
template <class T> inline T mix(T x, T y, T a) { return x + (y - x) * a; }
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T smoothstep(T lo, T hi, T x) {
  const calc_t<T> t = saturate((calc_t<T>(x) - calc_t<T>(lo)) / (calc_t<T>(hi) - calc_t<T>(lo)));
  return T(t * t * (3 - 2 * t));
}
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
template <class T, int N>
inline vec<T, N> clamp(vec<T, N> x, const vec<T, N>& lo, const vec<T, N>& hi) {
  return min(max(x, lo), hi);
}
template <class T> inline T max3(T a, T b, T c) { return max(a, max(b, c)); }
template <class T> inline T min3(T a, T b, T c) { return min(a, min(b, c)); }
template <class T> inline T median3(T a, T b, T c) { return max(min(a, b), min(max(a, b), c)); }
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T ldexp(T x, int e) { return T(std::ldexp(calc_t<T>(x), e)); }
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T frexp(T x, int& e) { return T(std::frexp(calc_t<T>(x), &e)); }
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T modf(T x, T& whole) {
  calc_t<T> w;
  const calc_t<T> f = std::modf(calc_t<T>(x), &w);
  whole = T(w);
  return T(f);
}
template <class T> inline T sincos(T x, T& c) { c = cos(x); return sin(x); }

#define MSL_PREDICATE(name, expr)                                    \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0> \
  inline bool name(T v) {                                            \
    const calc_t<T> x = calc_t<T>(v);                                \
    return expr;                                                     \
  }                                                                  \
  template <class T, int N>                                          \
  inline vec<bool, N> name(const vec<T, N>& v) {                     \
    vec<bool, N> r;                                                  \
    for (int i = 0; i < N; ++i) r[i] = name(v[i]);                   \
    return r;                                                        \
  }
MSL_PREDICATE(isnan, std::isnan(x))
MSL_PREDICATE(isinf, std::isinf(x))
MSL_PREDICATE(isfinite, std::isfinite(x))
MSL_PREDICATE(isnormal, std::isnormal(x))
MSL_PREDICATE(signbit, std::signbit(x))
#undef MSL_PREDICATE

// Integer functions (scalars and vectors of char, short, int, long and their
// unsigned types). Results that need more bits (hadd, addsat, mul_hi, ...) are
// computed in a wider type first, so nothing overflows on the way.
template <class T>
struct is_int : std::integral_constant<bool, std::is_integral<T>::value && !std::is_same<T, bool>::value> {};
#define MSL_INT_SCALAR template <class T, std::enable_if_t<is_int<T>::value, int> = 0>
template <class T> using unsigned_t = std::make_unsigned_t<T>;
// A signed type holding every sum and difference of two T; one holding every
// product of two T plus a third (unsigned for unsigned 64-bit values).
template <class T> using wide_t = std::conditional_t<(sizeof(T) < 8), int64_t, __int128>;
template <class T>
using product_t = std::conditional_t<(sizeof(T) < 4), int64_t,
                                     std::conditional_t<(sizeof(T) < 8 || std::is_signed<T>::value), __int128,
                                                        unsigned __int128>>;
constexpr int bits_of(size_t bytes) { return int(8 * bytes); }

template <class T, class W>
inline T saturated(W v) {
  const W lo = W(std::numeric_limits<T>::min()), hi = W(std::numeric_limits<T>::max());
  return T(v < lo ? lo : v > hi ? hi : v);
}
// Wrapping arithmetic in T's width (signed overflow wraps, as on the GPU).
template <class T, class W> inline T wrapped(W v) { return T(unsigned_t<T>(v)); }

MSL_INT_SCALAR inline T popcount(T v) { return T(__builtin_popcountll((unsigned long long)unsigned_t<T>(v))); }
MSL_INT_SCALAR inline T clz(T v) {
  const auto u = (unsigned long long)unsigned_t<T>(v);
  return T(u == 0 ? bits_of(sizeof(T)) : __builtin_clzll(u) - bits_of(sizeof(long long) - sizeof(T)));
}
MSL_INT_SCALAR inline T ctz(T v) {
  const auto u = (unsigned long long)unsigned_t<T>(v);
  return T(u == 0 ? bits_of(sizeof(T)) : __builtin_ctzll(u));
}
MSL_INT_SCALAR inline T reverse_bits(T v) {
  unsigned long long u = unsigned_t<T>(v), r = 0;
  for (int i = 0; i < bits_of(sizeof(T)); ++i, u >>= 1) r = r << 1 | (u & 1);
  return wrapped<T>(r);
}
// v rotated left by i bits (i modulo the width).
MSL_INT_SCALAR inline T rotate(T v, T i) {
  const int width = bits_of(sizeof(T)), s = int(unsigned_t<T>(i) & unsigned(width - 1));
  const unsigned long long u = unsigned_t<T>(v);
  return wrapped<T>(u << s | u >> ((width - s) & (width - 1)));
}
// Bits offset .. offset + bits - 1 of x, right-justified (sign-extended for a
// signed T); 0 when bits is 0. Undefined in Metal when offset + bits > width.
MSL_INT_SCALAR inline T extract_bits(T x, uint offset, uint bits) {
  if (bits == 0 || offset >= 64) return T(0);
  const unsigned long long mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
  unsigned long long field = ((unsigned long long)unsigned_t<T>(x) >> offset) & mask;
  if (std::is_signed<T>::value && bits < 64 && (field >> (bits - 1) & 1)) field |= ~mask;
  return wrapped<T>(field);
}
// base with bits offset .. offset + bits - 1 replaced by the low bits of insert.
MSL_INT_SCALAR inline T insert_bits(T base, T insert, uint offset, uint bits) {
  if (bits == 0 || offset >= 64) return base;
  const unsigned long long mask = (bits >= 64 ? ~0ull : (1ull << bits) - 1) << offset;
  const unsigned long long b = unsigned_t<T>(base), i = unsigned_t<T>(insert);
  return wrapped<T>((b & ~mask) | (i << offset & mask));
}
MSL_INT_SCALAR inline T hadd(T x, T y) { return T((wide_t<T>(x) + wide_t<T>(y)) >> 1); }
MSL_INT_SCALAR inline T rhadd(T x, T y) { return T((wide_t<T>(x) + wide_t<T>(y) + 1) >> 1); }
MSL_INT_SCALAR inline T addsat(T x, T y) { return saturated<T>(wide_t<T>(x) + wide_t<T>(y)); }
MSL_INT_SCALAR inline T subsat(T x, T y) { return saturated<T>(wide_t<T>(x) - wide_t<T>(y)); }
// |x - y| as the unsigned type, so that it always fits (OpenCL's abs_diff
// returns the unsigned type; not sure Metal's absdiff does).
MSL_INT_SCALAR inline unsigned_t<T> absdiff(T x, T y) {
  const wide_t<T> d = wide_t<T>(x) - wide_t<T>(y);
  return unsigned_t<T>(d < 0 ? -d : d);
}
// The high half of the full product x * y.
MSL_INT_SCALAR inline T mul_hi(T x, T y) {
  return wrapped<T>((product_t<T>(x) * product_t<T>(y)) >> bits_of(sizeof(T)));
}
MSL_INT_SCALAR inline T mad_hi(T a, T b, T c) { return wrapped<T>(unsigned_t<T>(mul_hi(a, b)) + unsigned_t<T>(c)); }
MSL_INT_SCALAR inline T mad_sat(T a, T b, T c) {
  return saturated<T>(product_t<T>(a) * product_t<T>(b) + product_t<T>(c));
}
// 32-bit integers of which only the low 24 bits (sign-extended for int) are multiplied.
template <class T, std::enable_if_t<is_int<T>::value && sizeof(T) == 4, int> = 0>
inline T mul24(T x, T y) {
  const auto low = [](T v) {
    return std::is_signed<T>::value ? int64_t(int32_t(uint32_t(v) << 8) >> 8) : int64_t(uint32_t(v) & 0xffffffu);
  };
  return wrapped<T>(low(x) * low(y));
}
template <class T, std::enable_if_t<is_int<T>::value && sizeof(T) == 4, int> = 0>
inline T mad24(T x, T y, T z) { return wrapped<T>(uint32_t(mul24(x, y)) + uint32_t(z)); }
#undef MSL_INT_SCALAR

// The same functions on vectors, element by element.
#define MSL_INT_VEC1(name)                                         \
  template <class T, int N>                                        \
  inline vec<T, N> name(vec<T, N> v) {                             \
    for (int i = 0; i < N; ++i) v[i] = name(v[i]);                 \
    return v;                                                      \
  }
#define MSL_INT_VEC2(name, R)                                      \
  template <class T, int N>                                        \
  inline vec<R, N> name(const vec<T, N>& a, const vec<T, N>& b) {  \
    vec<R, N> r;                                                   \
    for (int i = 0; i < N; ++i) r[i] = name(a[i], b[i]);           \
    return r;                                                      \
  }
#define MSL_INT_VEC3(name)                                                            \
  template <class T, int N>                                                           \
  inline vec<T, N> name(vec<T, N> a, const vec<T, N>& b, const vec<T, N>& c) {       \
    for (int i = 0; i < N; ++i) a[i] = name(a[i], b[i], c[i]);                        \
    return a;                                                                         \
  }
MSL_INT_VEC1(popcount)
MSL_INT_VEC1(clz)
MSL_INT_VEC1(ctz)
MSL_INT_VEC1(reverse_bits)
MSL_INT_VEC2(rotate, T)
MSL_INT_VEC2(hadd, T)
MSL_INT_VEC2(rhadd, T)
MSL_INT_VEC2(addsat, T)
MSL_INT_VEC2(subsat, T)
MSL_INT_VEC2(absdiff, unsigned_t<T>)
MSL_INT_VEC2(mul_hi, T)
MSL_INT_VEC2(mul24, T)
MSL_INT_VEC3(mad_hi)
MSL_INT_VEC3(mad_sat)
MSL_INT_VEC3(mad24)
#undef MSL_INT_VEC1
#undef MSL_INT_VEC2
#undef MSL_INT_VEC3
template <class T, int N>
inline vec<T, N> extract_bits(vec<T, N> x, uint offset, uint bits) {
  for (int i = 0; i < N; ++i) x[i] = extract_bits(x[i], offset, bits);
  return x;
}
template <class T, int N>
inline vec<T, N> insert_bits(vec<T, N> base, const vec<T, N>& insert, uint offset, uint bits) {
  for (int i = 0; i < N; ++i) base[i] = insert_bits(base[i], insert[i], offset, bits);
  return base;
}

// select(a, b, c): c ? b : a, element-wise for vectors.
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T select(T a, T b, bool c) { return c ? b : a; }
template <class T, int N>
inline vec<T, N> select(vec<T, N> a, const vec<T, N>& b, const vec<bool, N>& c) {
  for (int i = 0; i < N; ++i) a[i] = c[i] ? b[i] : a[i];
  return a;
}
template <class T, int N>
inline vec<T, N> select(const vec<T, N>& a, const vec<T, N>& b, bool c) { return c ? b : a; }

inline bool all(bool v) { return v; }
inline bool any(bool v) { return v; }
template <int N>
inline bool all(const vec<bool, N>& v) {
  for (int i = 0; i < N; ++i) if (!v[i]) return false;
  return true;
}
template <int N>
inline bool any(const vec<bool, N>& v) {
  for (int i = 0; i < N; ++i) if (v[i]) return true;
  return false;
}

// Geometric functions.
template <class T, int N>
inline T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T r = a[0] * b[0];
  for (int i = 1; i < N; ++i) r = T(r + a[i] * b[i]);
  return r;
}
template <class T, int N> inline T length(const vec<T, N>& a) { return sqrt(dot(a, a)); }
template <class T, int N> inline T distance(const vec<T, N>& a, const vec<T, N>& b) { return length(a - b); }
template <class T, int N> inline vec<T, N> normalize(const vec<T, N>& a) { return a * rsqrt(dot(a, a)); }
template <class T>
inline vec<T, 3> cross(const vec<T, 3>& a, const vec<T, 3>& b) {
  return vec<T, 3>(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}

// Reinterpret the bits of a value as another type of the same size.
template <class To, class From>
inline To as_type(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs equal sizes");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}

// Metal's type traits (metal_type_traits), as MLX's kernels use them: the
// standard ones, with half and bfloat floating-point (and signed) scalars. For
// vectors, is_vector; the others describe scalars here (not sure Metal's
// is_floating_point and friends say the same for vectors).
using std::bool_constant;
using std::conditional;
using std::conditional_t;
using std::decay;
using std::decay_t;
using std::enable_if;
using std::enable_if_t;
using std::false_type;
using std::integral_constant;
using std::is_const;
using std::is_const_v;
using std::is_convertible;
using std::is_convertible_v;
using std::is_integral;
using std::is_integral_v;
using std::is_pointer;
using std::is_pointer_v;
using std::is_same;
using std::is_same_v;
using std::make_signed;
using std::make_signed_t;
using std::make_unsigned;
using std::make_unsigned_t;
using std::remove_const;
using std::remove_const_t;
using std::remove_cv;
using std::remove_cv_t;
using std::remove_reference;
using std::remove_reference_t;
using std::remove_volatile;
using std::remove_volatile_t;
using std::true_type;
using std::void_t;
template <class T> struct is_floating_point : is_float<std::remove_cv_t<T>> {};
template <class T> inline constexpr bool is_floating_point_v = is_floating_point<T>::value;
template <class T>
struct is_arithmetic : bool_constant<std::is_integral<std::remove_cv_t<T>>::value || is_floating_point<T>::value> {};
template <class T> inline constexpr bool is_arithmetic_v = is_arithmetic<T>::value;
template <class T>
struct is_signed : bool_constant<is_floating_point<T>::value || std::is_signed<std::remove_cv_t<T>>::value> {};
template <class T> inline constexpr bool is_signed_v = is_signed<T>::value;
template <class T> struct is_unsigned : std::is_unsigned<std::remove_cv_t<T>> {};
template <class T> inline constexpr bool is_unsigned_v = is_unsigned<T>::value;
template <class T> inline constexpr bool is_scalar_v = is_scalar<std::remove_cv_t<T>>::value;
template <class T> struct is_vector : is_vec<std::remove_cv_t<T>> {};
template <class T> inline constexpr bool is_vector_v = is_vector<T>::value;

template <class T> struct numeric_limits : std::numeric_limits<T> {};
template <class T, uint16_t Max, uint16_t Min, uint16_t Eps, uint16_t Inf, uint16_t NaN>
struct sf_limits {
  static constexpr bool is_specialized = true;
  static constexpr T max() { return T::from_bits(Max); }
  static constexpr T lowest() { return T::from_bits(Max | 0x8000); }
  static constexpr T min() { return T::from_bits(Min); }
  static constexpr T epsilon() { return T::from_bits(Eps); }
  static constexpr T infinity() { return T::from_bits(Inf); }
  static constexpr T quiet_NaN() { return T::from_bits(NaN); }
};
#ifdef __FLT16_MAX__
template <>
struct numeric_limits<half> {
  static constexpr bool is_specialized = true;
  static constexpr half max() { return __builtin_bit_cast(half, uint16_t(0x7bff)); }
  static constexpr half lowest() { return __builtin_bit_cast(half, uint16_t(0xfbff)); }
  static constexpr half min() { return __builtin_bit_cast(half, uint16_t(0x0400)); }
  static constexpr half epsilon() { return __builtin_bit_cast(half, uint16_t(0x1400)); }
  static constexpr half infinity() { return __builtin_bit_cast(half, uint16_t(0x7c00)); }
  static constexpr half quiet_NaN() { return __builtin_bit_cast(half, uint16_t(0x7e00)); }
};
#else
template <> struct numeric_limits<half> : sf_limits<half, 0x7bff, 0x0400, 0x1400, 0x7c00, 0x7e00> {};
#endif
template <> struct numeric_limits<bfloat> : sf_limits<bfloat, 0x7f7f, 0x0080, 0x3c00, 0x7f80, 0x7fc0> {};

namespace precise { using namespace ::metal; }
namespace fast { using namespace ::metal; }  // exact here, approximate on GPUs

}  // namespace metal

using namespace metal;

// Half literals: 1.5h.
#pragma GCC diagnostic push
#ifdef __clang__
#pragma GCC diagnostic ignored "-Wuser-defined-literals"
#else
#pragma GCC diagnostic ignored "-Wliteral-suffix"
#endif
inline half operator""h(long double v) { return half(float(v)); }
inline half operator""h(unsigned long long v) { return half(float(v)); }
#pragma GCC diagnostic pop
