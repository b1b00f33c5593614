"""half and bfloat: IEEE rounding after every operation, the usual arithmetic conversions with int,
float and bool operands and literals (ternaries included), conversions from float."""

import math

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

N = 4000

# Per-operation results, each stored as T, plus the sizes of mixed expressions' types.
ARITHMETIC = """
    const uint i = thread_position_in_grid.x;
    const T x = a[i], y = b[i], z = c[i];
    T* o = nullptr; (void)o;
    out[i * 12 + 0] = x * y + z;
    out[i * 12 + 1] = (x + y) * z - x / (y + z);
    out[i * 12 + 2] = x > y ? x : 0;              // T and an int literal: T
    out[i * 12 + 3] = T(x < 0 ? -x : x) + 1;      // T + int: T
    out[i * 12 + 4] = x + true;                   // T + bool: T
    T acc = x;
    acc += 2;
    acc *= y;
    acc -= z;
    acc /= 3;
    out[i * 12 + 5] = acc;
    out[i * 12 + 6] = -x * 2 - y;
    out[i * 12 + 7] = x == y || x != z ? T(x >= 1) + T(y <= 1.5f) : T(7);
    T inc = x;
    inc++;
    ++inc;
    out[i * 12 + 8] = inc;
    out[i * 12 + 9] = T(float(x) * 0.1f);         // through float
    out[i * 12 + 10] = x * T(0.5) + T(1.5f);
    out[i * 12 + 11] = metal::max(x, y) + metal::abs(z);
    sizes[i * 8 + 0] = sizeof(x > y ? x : 0);
    sizes[i * 8 + 1] = sizeof(x * 2.0f);
    sizes[i * 8 + 2] = sizeof(x + 1);
    sizes[i * 8 + 3] = sizeof(x * y);
    sizes[i * 8 + 4] = sizeof(true ? x : false);
    sizes[i * 8 + 5] = sizeof(x + 1u);
    sizes[i * 8 + 6] = sizeof(float(x) + x);
    sizes[i * 8 + 7] = sizeof(x < 1.0f);
"""


def round_to(values, dtype):
    """float32 values rounded to `dtype` (to nearest even), back in float32."""
    return np.asarray(mx.array(np.asarray(values, np.float32)).astype(dtype).astype(mx.float32))


def model(x, y, z, dtype):
    """NumPy model: every operation in float32, rounded to dtype after each (exact for + - * /)."""
    r = lambda v: round_to(v, dtype)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack(columns(x, y, z, r), 1)


def columns(x, y, z, r):
    """The kernel's twelve results, `r` rounding to its type."""
    acc = r(r(r(r(x + 2) * y) - z) / 3)
    return [
        r(r(x * y) + z), r(r(r(x + y) * z) - r(x / r(y + z))), np.where(x > y, x, 0), r(np.abs(x) + 1), r(x + 1),
        acc, r(r(-x * 2) - y), np.where((x == y) | (x != z), (x >= 1) + r((y <= 1.5).astype(np.float32)), 7),
        r(r(x + 1) + 1), r(x * np.float32(0.1)), r(r(x * 0.5) + 1.5), r(np.maximum(x, y) + np.abs(z)),
    ]


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_arithmetic_rounds_after_every_operation(dtype):
    rng = np.random.default_rng(0)
    scale = rng.choice([0.01, 1.0, 10.0, 100.0], size=(3, N))
    x, y, z = (round_to(rng.standard_normal((3, N)) * scale, dtype))
    k = host.metal_kernel("arith", ["a", "b", "c"], ["out", "sizes"], ARITHMETIC)
    out, sizes = k(inputs=[mx.array(v).astype(dtype) for v in (x, y, z)], template=[("T", dtype)],
                   grid=(N, 1, 1), threadgroup=(256, 1, 1), output_shapes=[(N, 12), (N, 8)],
                   output_dtypes=[dtype, mx.uint32])
    got = np.asarray(out.astype(mx.float32))
    want = model(x, y, z, dtype)
    both_nan = np.isnan(got) & np.isnan(want)
    mismatches = np.argwhere((got != want) & ~both_nan)
    assert len(mismatches) == 0, [(int(i), int(j), got[i, j], want[i, j]) for i, j in mismatches[:5]]
    np.testing.assert_array_equal(np.asarray(sizes)[0], [2, 4, 2, 2, 2, 2, 4, 1])


def test_mixed_half_and_bfloat_literals_compile_and_convert():
    source = """
        const uint i = thread_position_in_grid.x;
        const half h = half(a[i]);
        const bfloat bf = bfloat(a[i]);
        const bool c = a[i] > 0;
        half hh = c ? h : 0;
        bfloat bb = c ? bf : 0;
        bfloat bt = c ? bf : bfloat(1.5f);
        out[i * 8 + 0] = float(hh);
        out[i * 8 + 1] = float(bb);
#ifdef __FLT16_MAX__
        out[i * 8 + 2] = c ? h : 0.0f;           // half is _Float16: float
#else
        out[i * 8 + 2] = c ? float(h) : 0.0f;    // half is a class, like bfloat: ambiguous without the cast
#endif
        out[i * 8 + 3] = float(bt) + (bf > 0 ? 1 : 0) + (h < 0.5f) + (bf == 0.0f);
        out[i * 8 + 4] = float(bf * 2 + 1) + bf * 0.5f;
        out[i * 8 + 5] = static_cast<int>(bf) + int(h) + float(1.5h);
        out[i * 8 + 6] = float(half(bf)) + float(bfloat(h));
        out[i * 8 + 7] = metal::exp(bf) + float(metal::exp(h));
    """
    x = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    k = host.metal_kernel("literals", ["a"], ["out"], source)
    (out,) = k(inputs=[mx.array(x)], grid=(512, 1, 1), threadgroup=(128, 1, 1), output_shapes=[(512, 8)],
               output_dtypes=[mx.float32])
    h, bf = round_to(x, mx.float16), round_to(x, mx.bfloat16)
    c = x > 0
    want = np.stack([
        np.where(c, h, 0), np.where(c, bf, 0), np.where(c, h, 0),
        np.where(c, bf, 1.5) + (bf > 0) + (h < 0.5) + (bf == 0),
        round_to(round_to(bf * 2, mx.bfloat16) + 1, mx.bfloat16) + bf * 0.5,
        np.trunc(bf) + np.trunc(h) + 1.5, round_to(bf, mx.float16) + round_to(h, mx.bfloat16),
        round_to(np.exp(bf), mx.bfloat16) + round_to(np.exp(h), mx.float16),
    ], 1)
    got = np.asarray(out)
    np.testing.assert_allclose(got[:, :7], want[:, :7], rtol=2e-7)
    np.testing.assert_allclose(got[:, 7], want[:, 7], rtol=8e-3)  # exp is rounded to bfloat and half


def test_float_to_half_and_bfloat_conversions_round_to_nearest_even():
    source = """
        uint i = thread_position_in_grid.x;
        as_half[i] = static_cast<half>(inp[i]);
        as_bfloat[i] = static_cast<bfloat>(inp[i]);
        back[i] = float(as_half[i]) + float(as_bfloat[i]);
        bf_math[i] = static_cast<bfloat16_t>(float(as_bfloat[i]) * 3.0f + 0.1f);
    """
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 65504.0, 65519.99, 65520.0, 1e6,
               2.0**-24, 2.0**-25, 2.0**-25 * 1.0001, 3 * 2.0**-25, 2.0**-14, 1 + 2.0**-11,
               1 + 3 * 2.0**-11, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 3.4e38, -1e-30]
    rng = np.random.default_rng(0)
    values = np.concatenate([np.array(special, np.float32),
                             rng.standard_normal(2000, np.float32) * 10.0 ** rng.integers(-9, 6, 2000)])
    x = mx.array(values.astype(np.float32))
    k = host.metal_kernel("convert", ["inp"], ["as_half", "as_bfloat", "back", "bf_math"], source)
    h, b, back, bf_math = k(inputs=[x], output_shapes=[x.shape] * 4,
                            output_dtypes=[mx.float16, mx.bfloat16, mx.float32, mx.bfloat16],
                            grid=(x.size, 1, 1), threadgroup=(256, 1, 1))
    for got, dtype in ((h, mx.float16), (b, mx.bfloat16)):
        expected = x.astype(dtype)
        assert mx.array_equal(mx.view(got, mx.uint16), mx.view(expected, mx.uint16)) or \
            mx.array_equal(got, expected, equal_nan=True)
        assert bool(mx.isnan(got[4]))
    expected_back = np.asarray(x.astype(mx.float16).astype(mx.float32)
                               + x.astype(mx.bfloat16).astype(mx.float32))
    np.testing.assert_array_equal(np.asarray(back), expected_back)
    bf = np.asarray(x.astype(mx.bfloat16).astype(mx.float32))
    with np.errstate(over="ignore", invalid="ignore"):
        expected_math = mx.array(bf * np.float32(3) + np.float32(0.1)).astype(mx.bfloat16)
    assert bf_math.dtype == mx.bfloat16 and mx.array_equal(bf_math, expected_math, equal_nan=True)
