"""Swizzles (reads, writes, through pointers, in function arguments), matrices (float and half, 2x2 to 4x4,
times vectors and matrices, transpose, determinant) and packed vectors (sizes, loads, stores, arithmetic),
against NumPy on random data; writes Metal refuses (a component named twice) do not compile."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

SWIZZLES = """
    const uint i = thread_position_in_grid.x;
    const device float4* p = (const device float4*)x;
    float4 v = p[i];
    device float* o = out + 16 * i;
    const float2 xy = v.xy;
    const float4 rev = v.wzyx;
    const float3 rgb = v.rgb;
    const float4 doubled = v.xxyy;
    o[0] = xy.x + 10.0f * xy.y;
    o[1] = rev.x + 10.0f * rev.w;
    o[2] = dot(rgb, float3(1.0f, 10.0f, 100.0f));
    o[3] = dot(doubled, float4(1.0f, 10.0f, 100.0f, 1000.0f));
    o[4] = metal::max(v.xy, v.zw).y + p[i].zw.x + (p + i)->ab.x - v.xyz.zy.x;  // ab: (w, z)
    float4 w = v;
    w.xy = v.yx;                 // a write
    w.zyxw = w;                  // a permuting write of all four
    w.rgb += float3(1.0f);       // compound
    w.wx = float2(v.w * 2.0f, v.x * 2.0f);
    o[5] = w.x;
    o[6] = w.y;
    o[7] = w.z;
    o[8] = w.w;
    half4 h = half4(v);
    h.yz = h.zy * half(2);
    o[9] = float(h.y) + 10.0f * float(h.z);
    o[10] = length(v.xyz) + distance(v.xy, v.zw);
"""


def test_swizzle_reads_and_writes():
    n = 50
    x = mx.random.normal((n, 4), key=mx.random.key(7))
    k = host.metal_kernel("swizzles", ["x"], ["out"], SWIZZLES)
    (out,) = k(inputs=[x], grid=(n, 1, 1), threadgroup=(16, 1, 1), output_shapes=[(n, 16)], output_dtypes=[mx.float32])
    got, v = np.asarray(out), np.asarray(x).astype(np.float64)
    X, Y, Z, W = v.T
    np.testing.assert_allclose(got[:, 0], X + 10 * Y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], W + 10 * X, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[:, 2], X + 10 * Y + 100 * Z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 3], X + 10 * X + 100 * Y + 1000 * Y, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[:, 4], np.maximum(Y, W) + Z + W - Z, rtol=1e-6, atol=1e-6)
    # w = v; w.xy = (Y, X): (Y, X, Z, W); w.zyxw = w: z=Y, y=X, x=Z, w=W: (Z, X, Y, W); rgb += 1; wx = (2W, 2X)
    np.testing.assert_allclose(got[:, 5:9], np.stack([2 * X, X + 1, Y + 1, 2 * W], 1), rtol=1e-6, atol=1e-6)
    h = v.astype(np.float16)
    np.testing.assert_allclose(got[:, 9], (h[:, 2] * 2).astype(np.float32) + 10 * (h[:, 1] * 2).astype(np.float32),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(got[:, 10], np.sqrt(X**2 + Y**2 + Z**2) + np.hypot(X - Z, Y - W), rtol=1e-5)


def test_a_structs_own_members_named_like_swizzles():
    header = "struct Bar { float xy; float bar; };\n"
    source = """
        uint i = thread_position_in_grid.x;
        Bar b;
        b.xy = x[i];
        b.bar = 2.0f * b.xy;
        out[i] = b.bar + float2(x[i], 1.0f).yx.x;
    """
    x = mx.random.normal((8,), key=mx.random.key(8))
    k = host.metal_kernel("members", ["x"], ["out"], source, header=header)
    (out,) = k(inputs=[x], grid=(8, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(8,)], output_dtypes=[mx.float32])
    np.testing.assert_allclose(np.asarray(out), 2 * np.asarray(x) + 1, rtol=1e-6)


@pytest.mark.parametrize("source, message", [
    ("float2 v = float2(x[0]); v.xx = float2(1.0f, 2.0f); out[0] = v.x;", "names a component twice"),
    ("float2 v = float2(x[0]); out[0] = v.xyz.x;", "component the vector lacks"),
    ("float4 v = float4(x[0]); (v.xy) = float2(1.0f); out[0] = v.x;", "error"),
])
def test_swizzles_metal_rejects_do_not_compile(source, message):
    k = host.metal_kernel("bad_swizzle", ["x"], ["out"], source)
    with pytest.raises(host.HostCompileError, match=message):
        k(inputs=[mx.ones((4,))], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
          output_dtypes=[mx.float32])


# Matrices C x R (C columns of R elements) built from the input's floats in column order.
MATRICES = """
    const uint i = thread_position_in_grid.x;
    const device T* a = m + i * 32;
    matrix<T, C, R> A;
    for (int j = 0; j < C; ++j) {
        for (int r = 0; r < R; ++r) {
            A[j][r] = a[j * R + r];
        }
    }
    matrix<T, R, C> B = transpose(A);
    vec<T, C> v;
    for (int j = 0; j < C; ++j) {
        v[j] = a[16 + j];
    }
    vec<T, R> w;
    for (int r = 0; r < R; ++r) {
        w[r] = a[20 + r];
    }
    const vec<T, R> Av = A * v;
    const vec<T, C> wA = w * A;
    const matrix<T, R, R> AB = A * B;
    const matrix<T, C, R> S = A * T(2) + A - T(0.5) * A;
    device T* o = out + i * 64;
    for (int r = 0; r < R; ++r) o[r] = Av[r];
    for (int j = 0; j < C; ++j) o[4 + j] = wA[j];
    for (int j = 0; j < R; ++j) for (int r = 0; r < R; ++r) o[8 + 4 * j + r] = AB[j][r];
    for (int j = 0; j < C; ++j) for (int r = 0; r < R; ++r) o[24 + 4 * j + r] = S[j][r];
    o[40] = sizeof(A);
"""


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("shape", [(2, 2), (2, 3), (3, 2), (3, 3), (4, 2), (2, 4), (4, 4)])
def test_matrices(shape, dtype):
    c, r = shape
    n = 20
    data = mx.random.uniform(-1, 1, (n, 32), key=mx.random.key(c * 10 + r)).astype(dtype)
    k = host.metal_kernel("matrices", ["m"], ["out"], MATRICES)
    (out,) = k(inputs=[data], template=[("T", dtype), ("C", c), ("R", r)], grid=(n, 1, 1), threadgroup=(8, 1, 1),
               output_shapes=[(n, 64)], output_dtypes=[dtype], init_value=float("nan"))  # slots not written: NaN
    got, d = (np.asarray(a.astype(mx.float32)).astype(np.float64) for a in (out, data))
    tol = 1e-5 if dtype == mx.float32 else 4e-3
    for i in range(n):
        A = d[i, :c * r].reshape(c, r).T  # rows x columns
        v, w = d[i, 16:16 + c], d[i, 20:20 + r]
        np.testing.assert_allclose(got[i, :r], A @ v, atol=tol * c)
        np.testing.assert_allclose(got[i, 4:4 + c], w @ A, atol=tol * r)
        np.testing.assert_allclose(got[i, 8:8 + 4 * r].reshape(r, 4)[:, :r].T, A @ A.T, atol=tol * c)
        np.testing.assert_allclose(got[i, 24:24 + 4 * c].reshape(c, 4)[:, :r].T, 2.5 * A, atol=tol * 4)
    column = (4 if r == 3 else r) * np.dtype(np.float16 if dtype == mx.float16 else np.float32).itemsize
    assert got[0, 40] == c * column  # Metal's layout: a 3-row column takes 4 elements


def test_matrix_constructors_and_determinant():
    source = """
        const uint i = thread_position_in_grid.x;
        const device float* a = x + 9 * i;
        const float3x3 m(float3(a[0], a[1], a[2]), float3(a[3], a[4], a[5]), float3(a[6], a[7], a[8]));
        const float2x2 s(a[0], a[1], a[2], a[3]);
        const float4x4 id(2.0f);
        const half2x2 h = half2x2(s);
        out[4 * i] = determinant(m);
        out[4 * i + 1] = determinant(s);
        out[4 * i + 2] = (id * float4(1.0f, 2.0f, 3.0f, 4.0f)).w;
        out[4 * i + 3] = float(h[1][0]);
    """
    n = 30
    x = mx.random.normal((n, 9), key=mx.random.key(11))
    k = host.metal_kernel("matrix_ctor", ["x"], ["out"], source)
    (out,) = k(inputs=[x], grid=(n, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(n, 4)], output_dtypes=[mx.float32])
    got, a = np.asarray(out), np.asarray(x).astype(np.float64)
    np.testing.assert_allclose(got[:, 0], np.linalg.det(a.reshape(n, 3, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], np.linalg.det(a[:, :4].reshape(n, 2, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:, 2], 8.0)
    np.testing.assert_array_equal(got[:, 3], a[:, 2].astype(np.float16).astype(np.float32))


PACKED = """
    const uint i = thread_position_in_grid.x;
    const device packed_float3* p = (const device packed_float3*)x;
    const packed_float3 a = p[i];
    const float3 v = a;
    const float4 w = float4(a, 1.0f);
    const float3 s = a + a * 2.0f;
    device packed_half4* q = (device packed_half4*)h;
    q[i] = packed_half4(half4(w));
    q[i].y += half(1);
    out[8 * i] = v.x;
    out[8 * i + 1] = w.z + w.w;
    out[8 * i + 2] = s.y;
    out[8 * i + 3] = a[2] + a.z;
    out[8 * i + 4] = sizeof(packed_float3);
    out[8 * i + 5] = sizeof(packed_half4) + 100 * alignof(packed_half4);
    out[8 * i + 6] = p[i].zx.x;
    out[8 * i + 7] = dot(float3(a), float3(1.0f));
"""


def test_packed_vectors():
    n = 25
    x = mx.random.normal((n * 3,), key=mx.random.key(12))  # n packed float3s back to back: 12 bytes each
    k = host.metal_kernel("packed", ["x"], ["out", "h"], PACKED)
    out, h = k(inputs=[x], grid=(n, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(n, 8), (n * 4,)],
               output_dtypes=[mx.float32, mx.float16])
    got, v = np.asarray(out), np.asarray(x).reshape(n, 3)
    np.testing.assert_array_equal(got[:, 0], v[:, 0])
    np.testing.assert_array_equal(got[:, 1], v[:, 2] + 1)
    np.testing.assert_allclose(got[:, 2], 3 * v[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(got[:, 3], 2 * v[:, 2])
    np.testing.assert_array_equal(got[:, 4:6], [[12, 8 + 200]] * n)
    np.testing.assert_array_equal(got[:, 6], v[:, 2])
    np.testing.assert_allclose(got[:, 7], v.sum(1), rtol=1e-6, atol=1e-6)
    want_h = np.concatenate([v, np.ones((n, 1))], 1).astype(np.float16)
    want_h[:, 1] += np.float16(1)
    np.testing.assert_array_equal(np.asarray(h).reshape(n, 4), want_h)


def test_packed_reads_are_bounds_checked_in_their_own_size():
    source = "uint i = thread_position_in_grid.x;\nout[i] = ((const device packed_float3*)x)[i + 1].x;\n"
    k = host.metal_kernel("packed_overrun", ["x"], ["out"], source)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[mx.ones((12,))], grid=(4, 1, 1), threadgroup=(4, 1, 1), output_shapes=[(4,)],
          output_dtypes=[mx.float32])
    assert (error.value.buffer, error.value.index, error.value.size, error.value.thread) == ("x", 4, 4, (3, 0, 0))
