// msl_host.h: just enough of the Metal Shading Language, as C++17, to compile
// the kernels MLX generates for mx.fast.metal_kernel on a CPU (see host.py).
//
// Covered: address-space qualifiers, scalar types (uint, half/float16_t,
// bfloat/bfloat16_t), 2/3/4-element vectors, the common metal:: math
// functions (metal::precise:: and metal::fast:: are the same functions here),
// as_type, numeric_limits, and MLX's elem_to_loc helper. Attributes such as
// [[kernel]] or [[buffer(0)]] are left to the compiler, run with
// -Wno-attributes. threadgroup memory, barriers, SIMD-group functions and
// atomics are deliberately absent: host.py refuses kernels that use them.
// host.py pastes this file at the top of each kernel's translation unit.

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
    return sign | static_cast<uint16_t>(
                      (rebased + 0x0fffu + ((rebased >> 13) & 1u)) >> 13);
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

// A 16-bit float stored as bits; arithmetic is done in float and rounded back,
// which is exact IEEE half/bfloat arithmetic for + - * / (float has > 2p+2 bits).
template <class Bits>
struct small_float {
  uint16_t bits;

  small_float() = default;
  template <class T, std::enable_if_t<std::is_arithmetic<T>::value, int> = 0>
  small_float(T v) : bits(Bits::from_float(static_cast<float>(v))) {}
  template <class Other>
  explicit small_float(small_float<Other> v) : small_float(float(v)) {}
  operator float() const { return Bits::to_float(bits); }

  static constexpr small_float from_bits(uint16_t b) { return {bits_tag{}, b}; }
  small_float operator-() const { return from_bits(bits ^ 0x8000); }

 private:
  struct bits_tag {};
  constexpr small_float(bits_tag, uint16_t b) : bits(b) {}
};

typedef small_float<half_bits> half;
typedef small_float<bfloat_bits> bfloat;

template <class T> struct is_small_float : std::false_type {};
template <class B> struct is_small_float<small_float<B>> : std::true_type {};

// A scalar as MSL knows it: a C++ arithmetic type or a 16-bit float.
template <class T>
struct is_scalar
    : std::integral_constant<bool, std::is_arithmetic<T>::value ||
                                       is_small_float<T>::value> {};

// The type in which a math function computes for T (half, bfloat -> float).
template <class T>
using calc_t = std::conditional_t<std::is_same<T, double>::value, double, float>;

// Result type of a binary operation with a 16-bit float operand (C++ usual
// arithmetic conversions with half/bfloat ranked just below float).
template <class A, class B, class = void> struct sf_result {};
template <class B>
struct sf_result<small_float<B>, small_float<B>> { using type = small_float<B>; };
template <class B, class U>
struct sf_result<small_float<B>, U, std::enable_if_t<std::is_arithmetic<U>::value>> {
  using type = std::conditional_t<std::is_floating_point<U>::value, U, small_float<B>>;
};
template <class U, class B>
struct sf_result<U, small_float<B>, std::enable_if_t<std::is_arithmetic<U>::value>>
    : sf_result<small_float<B>, U> {};

#define MSL_SF_ARITH(op)                                                  \
  template <class A, class B, class R = typename sf_result<A, B>::type>   \
  inline R operator op(A a, B b) {                                        \
    return R(calc_t<R>(R(a)) op calc_t<R>(R(b)));                         \
  }                                                                       \
  template <class Bits, class B>                                          \
  inline small_float<Bits>& operator op##=(small_float<Bits>& a, B b) {   \
    return a = small_float<Bits>(a op b);                                 \
  }
#define MSL_SF_COMPARE(op)                                                \
  template <class A, class B, class R = typename sf_result<A, B>::type>   \
  inline bool operator op(A a, B b) {                                     \
    return calc_t<R>(R(a)) op calc_t<R>(R(b));                            \
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

// Metal layout: a 3-vector takes the size and alignment of a 4-vector.
template <class T, int N>
struct alignas(sizeof(T) * (N == 3 ? 4 : N)) vec : vec_members<T, N> {
  vec() = default;
  vec(T s) {  // a scalar converts implicitly, replicated into every element
    for (int i = 0; i < N; ++i) (*this)[i] = s;
  }
  template <class... A, std::enable_if_t<sizeof...(A) == N, int> = 0>
  vec(A... a) : vec_members<T, N>{T(a)...} {}
  template <class U>
  explicit vec(const vec<U, N>& o) {
    for (int i = 0; i < N; ++i) (*this)[i] = T(o[i]);
  }
  T& operator[](int i) { return at(*this, i); }
  const T& operator[](int i) const { return at(*this, i); }

 private:
  template <class Self>
  static auto& at(Self& v, int i) {
    if constexpr (N > 2) if (i == 2) return v.z;
    if constexpr (N > 3) if (i == 3) return v.w;
    return i == 0 ? v.x : v.y;
  }
};

// Element-wise operators; a scalar operand is converted to the element type.
#define MSL_VEC_OP(op, R)                                                  \
  template <class T, int N>                                                \
  inline vec<R, N> operator op(const vec<T, N>& a, const vec<T, N>& b) {   \
    vec<R, N> r;                                                           \
    for (int i = 0; i < N; ++i) r[i] = R(a[i] op b[i]);                    \
    return r;                                                              \
  }                                                                        \
  template <class T, int N, class S,                                       \
            std::enable_if_t<is_scalar<S>::value, int> = 0>                \
  inline vec<R, N> operator op(const vec<T, N>& a, S s) {                  \
    return a op vec<T, N>(T(s));                                           \
  }                                                                        \
  template <class T, int N, class S,                                       \
            std::enable_if_t<is_scalar<S>::value, int> = 0>                \
  inline vec<R, N> operator op(S s, const vec<T, N>& a) {                  \
    return vec<T, N>(T(s)) op a;                                           \
  }
MSL_VEC_OP(+, T)
MSL_VEC_OP(-, T)
MSL_VEC_OP(*, T)
MSL_VEC_OP(/, T)
MSL_VEC_OP(==, bool)
MSL_VEC_OP(!=, bool)
MSL_VEC_OP(<, bool)
MSL_VEC_OP(>, bool)
MSL_VEC_OP(<=, bool)
MSL_VEC_OP(>=, bool)
#undef MSL_VEC_OP

template <class T, int N, class B>
inline vec<T, N>& operator+=(vec<T, N>& a, const B& b) { return a = a + b; }
template <class T, int N, class B>
inline vec<T, N>& operator-=(vec<T, N>& a, const B& b) { return a = a - b; }
template <class T, int N, class B>
inline vec<T, N>& operator*=(vec<T, N>& a, const B& b) { return a = a * b; }
template <class T, int N, class B>
inline vec<T, N>& operator/=(vec<T, N>& a, const B& b) { return a = a / b; }
template <class T, int N>
inline vec<T, N> operator-(vec<T, N> a) {
  for (int i = 0; i < N; ++i) a[i] = T(-a[i]);
  return a;
}

#define MSL_VEC_TYPES(T) \
  typedef vec<T, 2> T##2;   \
  typedef vec<T, 3> T##3;   \
  typedef vec<T, 4> T##4;
MSL_VEC_TYPES(float)
MSL_VEC_TYPES(half)
MSL_VEC_TYPES(bfloat)
MSL_VEC_TYPES(int)
MSL_VEC_TYPES(uint)
MSL_VEC_TYPES(short)
MSL_VEC_TYPES(ushort)
MSL_VEC_TYPES(char)
MSL_VEC_TYPES(uchar)
MSL_VEC_TYPES(bool)
#undef MSL_VEC_TYPES

// ---------------------------------------------------------------- functions

// Each function takes scalars (float, half, bfloat, integers) or vectors.
#define MSL_UNARY(name, expr)                                              \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>       \
  inline T name(T v) {                                                     \
    const calc_t<T> x = calc_t<T>(v);                                      \
    return T(expr);                                                        \
  }                                                                        \
  template <class T, int N>                                                \
  inline vec<T, N> name(vec<T, N> v) {                                     \
    for (int i = 0; i < N; ++i) v[i] = name(v[i]);                         \
    return v;                                                              \
  }
MSL_UNARY(exp, std::exp(x))
MSL_UNARY(exp2, std::exp2(x))
MSL_UNARY(log, std::log(x))
MSL_UNARY(log2, std::log2(x))
MSL_UNARY(sqrt, std::sqrt(x))
MSL_UNARY(rsqrt, 1 / std::sqrt(x))
MSL_UNARY(tanh, std::tanh(x))
MSL_UNARY(sin, std::sin(x))
MSL_UNARY(cos, std::cos(x))
MSL_UNARY(floor, std::floor(x))
MSL_UNARY(ceil, std::ceil(x))
MSL_UNARY(trunc, std::trunc(x))
MSL_UNARY(round, std::round(x))
MSL_UNARY(rint, std::rint(x))
MSL_UNARY(fabs, std::fabs(x))
#undef MSL_UNARY

template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T abs(T v) {
  if constexpr (std::is_integral<T>::value) return v < 0 ? T(-v) : v;
  else return fabs(v);
}

#define MSL_BINARY(name, expr)                                             \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>       \
  inline T name(T a, T b) {                                                \
    const calc_t<T> x = calc_t<T>(a), y = calc_t<T>(b);                    \
    return T(expr);                                                        \
  }                                                                        \
  template <class T, int N>                                                \
  inline vec<T, N> name(vec<T, N> a, const vec<T, N>& b) {                 \
    for (int i = 0; i < N; ++i) a[i] = name(a[i], b[i]);                   \
    return a;                                                              \
  }
// For floats, max/min return the other operand when one is NaN, like fmax;
// integers compare exactly.
MSL_BINARY(max, std::is_integral<T>::value ? T(a < b ? b : a) : T(std::fmax(x, y)))
MSL_BINARY(min, std::is_integral<T>::value ? T(b < a ? b : a) : T(std::fmin(x, y)))
MSL_BINARY(fmax, std::fmax(x, y))
MSL_BINARY(fmin, std::fmin(x, y))
MSL_BINARY(pow, std::pow(x, y))
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

template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
template <class T, int N>
inline vec<T, N> clamp(vec<T, N> x, const vec<T, N>& lo, const vec<T, N>& hi) {
  return min(max(x, lo), hi);
}

#define MSL_PREDICATE(name)                                                \
  template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>       \
  inline bool name(T v) { return std::name(calc_t<T>(v)); }                \
  template <class T, int N>                                                \
  inline vec<bool, N> name(const vec<T, N>& v) {                           \
    vec<bool, N> r;                                                        \
    for (int i = 0; i < N; ++i) r[i] = name(v[i]);                         \
    return r;                                                              \
  }
MSL_PREDICATE(isnan)
MSL_PREDICATE(isinf)
MSL_PREDICATE(isfinite)
MSL_PREDICATE(signbit)
#undef MSL_PREDICATE

// select(a, b, c): c ? b : a, element-wise for vectors.
template <class T, std::enable_if_t<is_scalar<T>::value, int> = 0>
inline T select(T a, T b, bool c) { return c ? b : a; }
template <class T, int N>
inline vec<T, N> select(vec<T, N> a, const vec<T, N>& b, const vec<bool, N>& c) {
  for (int i = 0; i < N; ++i) a[i] = c[i] ? b[i] : a[i];
  return a;
}
template <class T, int N>
inline vec<T, N> select(const vec<T, N>& a, const vec<T, N>& b, bool c) {
  return c ? b : a;
}

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
template <class T, int N>
inline T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T r = a[0] * b[0];
  for (int i = 1; i < N; ++i) r = T(r + a[i] * b[i]);
  return r;
}

// Reinterpret the bits of a value as another type of the same size.
template <class To, class From>
inline To as_type(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs equal sizes");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}

template <class T> struct numeric_limits : std::numeric_limits<T> {};
template <class T, uint16_t Max, uint16_t Min, uint16_t Eps, uint16_t Inf,
          uint16_t NaN>
struct small_float_limits {
  static constexpr bool is_specialized = true;
  static constexpr T max() { return T::from_bits(Max); }
  static constexpr T lowest() { return T::from_bits(Max | 0x8000); }
  static constexpr T min() { return T::from_bits(Min); }
  static constexpr T epsilon() { return T::from_bits(Eps); }
  static constexpr T infinity() { return T::from_bits(Inf); }
  static constexpr T quiet_NaN() { return T::from_bits(NaN); }
};
template <>
struct numeric_limits<half>
    : small_float_limits<half, 0x7bff, 0x0400, 0x1400, 0x7c00, 0x7e00> {};
template <>
struct numeric_limits<bfloat>
    : small_float_limits<bfloat, 0x7f7f, 0x0080, 0x3c00, 0x7f80, 0x7fc0> {};

namespace precise { using namespace ::metal; }
namespace fast { using namespace ::metal; }  // exact here, approximate on GPUs

}  // namespace metal

using namespace metal;

// Names MLX's own Metal utilities give kernels.
typedef half float16_t;
typedef bfloat bfloat16_t;
#define METAL_FUNC inline

// Offset of the elem-th element (row-major order) of a strided array.
template <typename IdxT = int64_t>
inline IdxT elem_to_loc(IdxT elem, const int* shape, const int64_t* strides,
                        int ndim) {
  IdxT loc = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    loc += (elem % shape[d]) * IdxT(strides[d]);
    elem /= shape[d];
  }
  return loc;
}

// MSL address spaces mean nothing on a CPU.
#define device
#define constant
#define thread
