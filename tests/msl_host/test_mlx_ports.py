"""What MLX's own kernels rely on: the math mode's __FAST_MATH__ (MLX's test_custom_metal_kernel_math_mode),
Metal's type traits as MLX's reduction ops use them (enable_if_t on is_integral_v), and Limits<U> as
constant expressions (MLX's ArgMax: `static constexpr constant U init = Limits<U>::min;`). The kernels are
written for these tests in the shape of MLX's, checked against NumPy on random data."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

MATH_MODE = """
    uint elem = thread_position_in_grid.x;
    #if defined(__FAST_MATH__) && __FAST_MATH__
    out[elem] = inp[elem] + 1.0f;
    #else
    out[elem] = inp[elem];
    #endif
"""


def test_fast_math_mode_defines_fast_math():
    """As MLX's test: the same kernel name in each mode, so a library built for another mode is not reused."""
    x = mx.random.normal((4,), key=mx.random.key(0))
    for mode, offset in (("safe", 0.0), ("fast", 1.0), ("safe", 0.0)):
        k = host.metal_kernel("math_mode", ["inp"], ["out"], MATH_MODE, compile_options={"math_mode": mode})
        (out,) = k(inputs=[x], grid=(4, 1, 1), threadgroup=(4, 1, 1), output_shapes=[(4,)],
                   output_dtypes=[mx.float32])
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x) + np.float32(offset))


# A reduction op in the style of MLX's reduction/ops.h: NaN-propagating for floats, chosen with enable_if_t.
MAX_OP = """
template <typename U>
struct MaxOp {
  static constexpr constant U init = Limits<U>::min;

  template <typename T>
  metal::enable_if_t<metal::is_integral_v<T>, T> simd_reduce(T v) {
    return simd_max(v);
  }
  template <typename T>
  metal::enable_if_t<!metal::is_integral_v<T>, T> simd_reduce(T v) {
    return simd_any(v != v) ? static_cast<T>(NAN) : simd_max(v);
  }
  template <typename T>
  metal::enable_if_t<metal::is_integral_v<T>, T> operator()(T a, T b) {
    return a > b ? a : b;
  }
  template <typename T>
  metal::enable_if_t<!metal::is_integral_v<T>, T> operator()(T a, T b) {
    return metal::isnan(a) || metal::isnan(b) ? static_cast<T>(NAN) : (a > b ? a : b);
  }
};
"""

# One SIMD group per row: each lane folds a strided part of the row, then the group reduces.
ROW_MAX = """
    const uint row = threadgroup_position_in_grid.y;
    const uint lane = thread_index_in_simdgroup;
    const uint n = uint(x_shape[1]);
    MaxOp<T> op;
    T acc = MaxOp<T>::init;
    for (uint j = lane; j < n; j += 32) {
        acc = op(acc, x[row * n + j]);
    }
    acc = op.simd_reduce(acc);
    if (lane == 0) {
        out[row] = acc;
    }
"""


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int32, mx.uint8])
def test_reduction_op_with_type_traits(dtype):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(6, 77)) * 50
    if dtype in (mx.float32, mx.float16, mx.bfloat16):
        values[2, 40] = np.nan
    else:
        values = rng.integers(0, 200, size=(6, 77)) * (1 if dtype == mx.uint8 else -1)
    x = mx.array(values).astype(dtype)
    k = host.metal_kernel("row_max", ["x"], ["out"], ROW_MAX, header=MAX_OP)
    (out,) = k(inputs=[x], template=[("T", dtype)], grid=(32, 6, 1), threadgroup=(32, 1, 1),
               output_shapes=[(6,)], output_dtypes=[dtype])
    want = np.max(np.asarray(x.astype(mx.float32)), axis=1)  # np.max propagates NaN, as the op does
    np.testing.assert_array_equal(np.asarray(out.astype(mx.float32)), want)


TRAITS = """
    uint i = 0;
    out[i++] = metal::is_same_v<metal::conditional_t<true, half, float>, half>;
    out[i++] = metal::is_same_v<metal::remove_cv_t<const volatile int>, int>;
    out[i++] = metal::is_integral_v<bool> && metal::is_integral_v<ushort> && !metal::is_integral_v<half>;
    out[i++] = metal::is_floating_point_v<half> && metal::is_floating_point_v<bfloat> && metal::is_floating_point_v<float>;
    out[i++] = metal::is_floating_point_v<int>;
    out[i++] = metal::is_signed_v<half> && metal::is_signed_v<int> && !metal::is_signed_v<uint>;
    out[i++] = metal::is_convertible_v<half, float> && !metal::is_convertible_v<float4, float>;
    out[i++] = metal::is_same_v<metal::enable_if_t<true, char>, char>;
    out[i++] = metal::is_arithmetic_v<bfloat> && metal::is_unsigned_v<uchar> && metal::is_vector_v<float3>;
"""


def test_type_traits():
    k = host.metal_kernel("traits", ["inp"], ["out"], TRAITS)
    (out,) = k(inputs=[mx.zeros((1,))], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(9,)],
               output_dtypes=[mx.int32])
    np.testing.assert_array_equal(np.asarray(out), [1, 1, 1, 1, 0, 1, 1, 1, 1])


# ArgMax in the shape of MLX's arg_reduce: an op with a constexpr init from Limits, an index-value pair,
# and an overload of simd_shuffle_down for the pair.
ARG_HEADER = """
template <typename U>
struct IndexValue {
  uint32_t index;
  U val;
};

template <typename U>
struct ArgMax {
  static constexpr constant U init = Limits<U>::min;

  IndexValue<U> reduce(IndexValue<U> best, IndexValue<U> other) {
    const bool better = other.val > best.val || (other.val == best.val && other.index < best.index);
    return better ? other : best;
  }
};

template <typename U>
struct ArgMin {
  static constexpr constant U init = Limits<U>::max;

  IndexValue<U> reduce(IndexValue<U> best, IndexValue<U> other) {
    const bool better = other.val < best.val || (other.val == best.val && other.index < best.index);
    return better ? other : best;
  }
};

template <typename U>
IndexValue<U> simd_shuffle_down(IndexValue<U> data, ushort delta) {
  return IndexValue<U>{simd_shuffle_down(data.index, delta), simd_shuffle_down(data.val, delta)};
}
"""

ARG_REDUCE = """
    const uint row = threadgroup_position_in_grid.y;
    const uint lane = thread_index_in_simdgroup;
    const uint n = uint(x_shape[1]);
    typedef metal::conditional_t<MAX, ArgMax<T>, ArgMin<T>> Op;
    Op op;
    IndexValue<T> best{0u, Op::init};
    for (uint j = lane; j < n; j += 32) {
        best = op.reduce(best, IndexValue<T>{j, x[row * n + j]});
    }
    for (ushort delta = 16; delta > 0; delta /= 2) {
        best = op.reduce(best, simd_shuffle_down(best, delta));
    }
    if (lane == 0) {
        out[row] = best.index;
    }
"""


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int16])
@pytest.mark.parametrize("largest", [True, False])
def test_arg_reduce_with_constexpr_limits(dtype, largest):
    rng = np.random.default_rng(2)
    x = mx.array(rng.normal(size=(5, 300)) * 1000).astype(dtype)
    k = host.metal_kernel("arg_reduce", ["x"], ["out"], ARG_REDUCE, header=ARG_HEADER)
    (out,) = k(inputs=[x], template=[("T", dtype), ("MAX", largest)], grid=(32, 5, 1), threadgroup=(32, 1, 1),
               output_shapes=[(5,)], output_dtypes=[mx.uint32])
    values = np.asarray(x.astype(mx.float32))
    want = np.argmax(values, axis=1) if largest else np.argmin(values, axis=1)  # the first of equal ones
    np.testing.assert_array_equal(np.asarray(out), want)
