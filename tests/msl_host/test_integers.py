"""Metal's integer functions on scalars and 4-vectors of 8- to 64-bit integers, signed and unsigned, against
exact Python integer arithmetic on random values and the extremes of each type."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

FUNCTIONS = ["clz", "ctz", "popcount", "reverse_bits", "rotate", "extract_bits", "insert_bits", "hadd", "rhadd",
             "addsat", "subsat", "mul_hi", "mad_hi", "mad_sat"]
N = 200

# Each thread: every function on its scalars a, b, c, then on 4-vectors whose lanes are (a, b, c, a ^ b),
# (b, c, a, b), (c, a, b, c). absdiff goes to its own (unsigned 64-bit) output.
SOURCE = """
    const uint i = thread_position_in_grid.x;
    const T a = x[i], b = y[i], c = z[i];
    const uint off = offsets[i], bits = widths[i];
    const vec<T, 4> va(a, b, c, T(a ^ b)), vb(b, c, a, b), vc(c, a, b, c);
    device T* o = out + i * 70;
#define BOTH(k, scalar, vector) o[k] = scalar; { const vec<T, 4> r = vector; for (int l = 0; l < 4; ++l) o[14 + 4 * k + l] = r[l]; }
    BOTH(0, clz(a), clz(va))
    BOTH(1, ctz(a), ctz(va))
    BOTH(2, popcount(a), popcount(va))
    BOTH(3, reverse_bits(a), reverse_bits(va))
    BOTH(4, rotate(a, b), rotate(va, vb))
    BOTH(5, extract_bits(a, off, bits), extract_bits(va, off, bits))
    BOTH(6, insert_bits(a, b, off, bits), insert_bits(va, vb, off, bits))
    BOTH(7, hadd(a, b), hadd(va, vb))
    BOTH(8, rhadd(a, b), rhadd(va, vb))
    BOTH(9, addsat(a, b), addsat(va, vb))
    BOTH(10, subsat(a, b), subsat(va, vb))
    BOTH(11, mul_hi(a, b), mul_hi(va, vb))
    BOTH(12, mad_hi(a, b, c), mad_hi(va, vb, vc))
    BOTH(13, mad_sat(a, b, c), mad_sat(va, vb, vc))
    ad[i] = ulong(absdiff(a, b));
    const auto vad = absdiff(va, vb);
    ad[N + i] = ulong(vad.w);
"""

DTYPES = {mx.int8: np.int8, mx.uint8: np.uint8, mx.int16: np.int16, mx.uint16: np.uint16, mx.int32: np.int32,
          mx.uint32: np.uint32, mx.int64: np.int64, mx.uint64: np.uint64}


def reference(name, a, b, c, off, bits, width, signed):
    """One function on Python ints, as Metal defines it."""
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    mask = (1 << width) - 1
    wrap = lambda v: (v & mask) - ((v & mask) >> (width - 1) << width if signed else 0)  # noqa: E731
    clamp = lambda v: min(max(v, lo), hi)  # noqa: E731
    u = a & mask
    if name == "clz":
        return width - u.bit_length()
    if name == "ctz":
        return width if u == 0 else (u & -u).bit_length() - 1
    if name == "popcount":
        return bin(u).count("1")
    if name == "reverse_bits":
        return wrap(int(format(u, f"0{width}b")[::-1], 2))
    if name == "rotate":
        s = b & (width - 1)
        return wrap(u << s | u >> (width - s))
    if name == "extract_bits":
        field = (u >> off) & ((1 << bits) - 1)
        return field - (1 << bits) if signed and bits and field >> (bits - 1) else field
    if name == "insert_bits":
        field = ((1 << bits) - 1) << off
        return wrap((u & ~field) | ((b << off) & field))
    return {"hadd": (a + b) >> 1, "rhadd": (a + b + 1) >> 1, "addsat": clamp(a + b), "subsat": clamp(a - b),
            "mul_hi": (a * b) >> width, "mad_hi": wrap(((a * b) >> width) + c), "mad_sat": clamp(a * b + c)}[name]


def operands(np_dtype, rng):
    """Random values of the type, and its extremes, 0, 1 and -1, in every combination with each other."""
    info = np.iinfo(np_dtype)
    special = np.array(sorted({info.min, info.max, 0, 1, info.max // 2, info.min // 2 + 1} |
                              ({-1} if info.min < 0 else set())), dtype=np_dtype)
    values = rng.integers(info.min, info.max, size=(3, N), dtype=np_dtype, endpoint=True)
    s = len(special)
    values[0, :s * s] = np.repeat(special, s)[:N]
    values[1, :s * s] = np.tile(special, s)[:N]
    return values


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_integer_functions(dtype):
    np_dtype = DTYPES[dtype]
    width, signed = 8 * np.dtype(np_dtype).itemsize, np.issubdtype(np_dtype, np.signedinteger)
    rng = np.random.default_rng(width + signed)
    x, y, z = operands(np_dtype, rng)
    offsets = rng.integers(0, width, N).astype(np.uint32)
    widths = np.array([rng.integers(0, width - o, endpoint=True) for o in offsets], np.uint32)
    k = host.metal_kernel("integers", ["x", "y", "z", "offsets", "widths"], ["out", "ad"], SOURCE)
    out, ad = k(inputs=[mx.array(v) for v in (x, y, z, offsets, widths)], template=[("T", dtype), ("N", N)],
                grid=(N, 1, 1), threadgroup=(64, 1, 1), output_shapes=[(N, 70), (2 * N,)],
                output_dtypes=[dtype, mx.uint64])
    got = np.asarray(out).astype(object)
    for i in range(N):
        a, b, c = int(x[i]), int(y[i]), int(z[i])
        lanes = [(a, b, c), (b, c, a), (c, a, b), (int(x[i] ^ y[i]), b, c)]
        for f, name in enumerate(FUNCTIONS):
            args = (int(offsets[i]), int(widths[i]), width, signed)
            assert got[i, f] == reference(name, a, b, c, *args), (name, a, b, c)
            want = [reference(name, *lane, *args) for lane in lanes]
            assert list(got[i, 14 + 4 * f:18 + 4 * f]) == want, (name, lanes)
    # absdiff: |a - b| (tested where it fits the signed type too: not sure Metal's result is unsigned)
    diffs = np.array([abs(int(a) - int(b)) for a, b in zip(x, y)], dtype=object)
    fits = diffs <= np.iinfo(np_dtype).max
    np.testing.assert_array_equal(np.asarray(ad)[:N][fits].astype(object), diffs[fits])
    lane_w = np.array([abs(int(a ^ b) - int(b)) for a, b in zip(x, y)], dtype=object)
    fits = lane_w <= np.iinfo(np_dtype).max
    np.testing.assert_array_equal(np.asarray(ad)[N:][fits].astype(object), lane_w[fits])


def test_24_bit_multiplies():
    source = """
        const uint i = thread_position_in_grid.x;
        out[2 * i] = mul24(a[i], b[i]);
        out[2 * i + 1] = mad24(a[i], b[i], a[i]);
        uout[i] = mad24(uint(i) * 1000u, 4000u, 7u) + mul24(uint2(3u, 5u), uint2(7u, 11u)).y;
    """
    rng = np.random.default_rng(24)
    a, b = rng.integers(-(1 << 23), 1 << 23, size=(2, 300), dtype=np.int32)  # the 24-bit range
    k = host.metal_kernel("mul24", ["a", "b"], ["out", "uout"], source)
    out, uout = k(inputs=[mx.array(a), mx.array(b)], grid=(300, 1, 1), threadgroup=(64, 1, 1),
                  output_shapes=[(300, 2), (300,)], output_dtypes=[mx.int32, mx.uint32])
    wrap32 = lambda v: ((v + 2**31) % 2**32) - 2**31  # noqa: E731
    product = [wrap32(int(p) * int(q)) for p, q in zip(a, b)]
    np.testing.assert_array_equal(np.asarray(out)[:, 0], product)
    np.testing.assert_array_equal(np.asarray(out)[:, 1], [wrap32(p + int(q)) for p, q in zip(product, a)])
    np.testing.assert_array_equal(np.asarray(uout), [(i * 1000 * 4000 + 7 + 55) % 2**32 for i in range(300)])


def test_the_old_name_mulhi_is_gone():
    k = host.metal_kernel("mulhi", ["a"], ["out"], "out[0] = mulhi(a[0], a[0]);")
    with pytest.raises(host.HostCompileError, match="mulhi"):
        k(inputs=[mx.array([3, 4], mx.int32)], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
          output_dtypes=[mx.int32])
