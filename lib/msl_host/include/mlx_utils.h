// mlx_utils.h: the utilities MLX puts in front of every mx.fast.metal_kernel
// source on a Mac (mlx/backend/metal/kernels/utils.h and what it includes),
// written for msl_host from what they mean: same names, same results.
//
// Covered: float16_t/bfloat16_t and the bfloat16 bit helpers, METAL_FUNC and
// MLX's defines, WorkPerThread, Limits<T>, the elem_to_loc family and
// LoopedElemToLoc, ceildiv, log1p, ConditionalType, cast_to. The 64-bit and
// bool overloads MLX adds to simd_shuffle* are covered by msl_sync.h's
// functions, which take any type. Not covered: complex64_t.
// Pointer parameters are templates, so plain and checked pointers both work.
#pragma once

#include "msl_sync.h"

typedef half float16_t;
typedef bfloat bfloat16_t;

#define METAL_FUNC inline
#define MTL_CONST constant
#define MLX_MTL_PRAGMA_UNROLL

static constexpr int MAX_REDUCE_SPECIALIZED_DIMS = 4;
static constexpr int REDUCE_N_READS = 4;
static constexpr int REDUCE_N_WRITES = 4;
static constexpr int SOFTMAX_N_READS = 4;
static constexpr int RMS_N_READS = 4;
static constexpr int RMS_LOOPED_LIMIT = 4096;

inline uint16_t bfloat16_to_uint16(bfloat16_t x) { return as_type<uint16_t>(x); }
inline bfloat16_t uint16_to_bfloat16(uint16_t x) { return as_type<bfloat16_t>(x); }

// Elements one thread handles in MLX's elementwise kernels: 8 bytes' worth.
template <typename U>
struct WorkPerThread {
  static_assert(sizeof(U) <= 8, "Type too large");
  static constexpr int n = 8 / int(sizeof(U));
};

// Limits<T>: max/min are the extreme values, infinities for floating-point
// types; finite_max/finite_min the extreme finite ones. All are constant
// expressions, as in MLX (`static constexpr constant U init = Limits<U>::min;`).
template <typename U, bool Float = metal::is_float<U>::value>
struct Limits {
  static constexpr U max = metal::numeric_limits<U>::max();
  static constexpr U min = metal::numeric_limits<U>::min();
  static constexpr U finite_max = metal::numeric_limits<U>::max();
  static constexpr U finite_min = metal::numeric_limits<U>::min();
};
template <typename U>
struct Limits<U, true> {
  static constexpr U max = metal::numeric_limits<U>::infinity();
  static constexpr U min = -metal::numeric_limits<U>::infinity();
  static constexpr U finite_max = metal::numeric_limits<U>::max();
  static constexpr U finite_min = -metal::numeric_limits<U>::max();
};
template <>
struct Limits<bool, false> {
  static constexpr bool max = true;
  static constexpr bool min = false;
};

// ---------------------------------------------------------------- indexing

// Memory offset of element `elem` (row-major numbering) of an ndim-dimensional
// array with these shape and strides (in elements).
template <typename IdxT = int64_t, typename ShapeP, typename StridesP,
          std::enable_if_t<std::is_integral<IdxT>::value, int> = 0>
METAL_FUNC IdxT elem_to_loc(IdxT elem, ShapeP shape, StridesP strides, int ndim) {
  IdxT loc = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    loc += IdxT(elem % IdxT(shape[d]) * IdxT(strides[d]));
    elem /= IdxT(shape[d]);
  }
  return loc;
}

// The same for a 3-D position: x along the last dimension, y the one before,
// z numbering the remaining ones in row-major order.
template <typename IdxT = int64_t, typename ShapeP, typename StridesP>
METAL_FUNC IdxT elem_to_loc(uint3 elem, ShapeP shape, StridesP strides, int ndim) {
  IdxT loc = IdxT(elem.x) * IdxT(strides[ndim - 1]) + IdxT(elem.y) * IdxT(strides[ndim - 2]);
  for (int d = ndim - 3; d >= 0; --d) {
    loc += IdxT(elem.z % uint(shape[d])) * IdxT(strides[d]);
    elem.z /= uint(shape[d]);
  }
  return loc;
}

template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc_1(uint elem, int64_t stride) {
  return IdxT(elem) * IdxT(stride);
}
template <typename IdxT = int64_t, typename StridesP>
METAL_FUNC IdxT elem_to_loc_2(uint2 elem, StridesP strides) {
  return IdxT(elem.x) * IdxT(strides[1]) + IdxT(elem.y) * IdxT(strides[0]);
}
template <typename IdxT = int64_t, typename StridesP>
METAL_FUNC IdxT elem_to_loc_3(uint3 elem, StridesP strides) {
  return IdxT(elem.x) * IdxT(strides[2]) + IdxT(elem.y) * IdxT(strides[1]) + IdxT(elem.z) * IdxT(strides[0]);
}

// Offsets of one 3-D position in two (three) arrays of the same shape.
template <typename IdxT = int64_t, typename ShapeP, typename StridesP>
METAL_FUNC vec<IdxT, 2> elem_to_loc_2_nd(uint3 elem, ShapeP shape, StridesP a_strides, StridesP b_strides,
                                          int ndim) {
  return vec<IdxT, 2>(elem_to_loc<IdxT>(elem, shape, a_strides, ndim), elem_to_loc<IdxT>(elem, shape, b_strides, ndim));
}
template <typename IdxT = int64_t, typename ShapeP, typename StridesP>
METAL_FUNC vec<IdxT, 3> elem_to_loc_3_nd(uint3 elem, ShapeP shape, StridesP a_strides, StridesP b_strides,
                                          StridesP c_strides, int ndim) {
  return vec<IdxT, 3>(elem_to_loc<IdxT>(elem, shape, a_strides, ndim), elem_to_loc<IdxT>(elem, shape, b_strides, ndim),
                      elem_to_loc<IdxT>(elem, shape, c_strides, ndim));
}

// Walks the elements of a `dim`-dimensional array in row-major order:
// location() is the offset of the current one. General = false: the array is
// one-dimensional with stride strides[0] (DIM and dim then say nothing).
template <int DIM, typename OffsetT = size_t, bool General = true>
struct LoopedElemToLoc {
  int dim;
  int64_t index = 0;

  explicit LoopedElemToLoc(int d) : dim(d) {}
  template <typename ShapeP, typename StridesP>
  void next(ShapeP shape, StridesP strides) { next(1, shape, strides); }
  template <typename ShapeP, typename StridesP>
  void next(int n, ShapeP shape, StridesP strides) {
    index += n;
    offset = General ? elem_to_loc<int64_t>(index, shape, strides, dim) : index * int64_t(strides[0]);
  }
  OffsetT location() const { return OffsetT(offset); }

 private:
  int64_t offset = 0;
};

// ---------------------------------------------------------------- arithmetic

template <typename T, typename U>
inline T ceildiv(T n, U m) {
  return (n + m - 1) / m;
}

inline float log1p(float x) { return std::log1p(x); }
inline bfloat16_t log1p(bfloat16_t x) { return bfloat16_t(std::log1p(float(x))); }

template <bool Condition, typename T, typename U>
struct ConditionalType {
  using type = std::conditional_t<Condition, T, U>;
};

// static_cast, except that a float (bfloat16) is true when any bit but the
// sign is set (so -0.0 is false and NaN true).
template <typename U, typename T>
inline U cast_to(T v) {
  if constexpr (std::is_same<U, bool>::value && std::is_same<T, float>::value) {
    return (as_type<uint32_t>(v) & 0x7fffffffu) != 0;
  } else if constexpr (std::is_same<U, bool>::value && std::is_same<T, bfloat16_t>::value) {
    return (as_type<uint16_t>(v) & 0x7fffu) != 0;
  } else {
    return static_cast<U>(v);
  }
}
