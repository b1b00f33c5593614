"""Tests of msl_host: Metal kernels compiled as C++ and run on the CPU."""

import math

import mlx.core as mx
import numpy as np
import pytest

from msl_host import runner as host

EXP_SOURCE = """
    uint elem = thread_position_in_grid.x;
    T tmp = inp[elem];
    out[elem] = metal::exp(tmp);
"""


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Give every test its own, empty library cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def compiles(monkeypatch):
    """Count compiler invocations."""
    calls = []
    real = host.subprocess.run

    def counting_run(cmd, **kwargs):
        calls.append(cmd)
        return real(cmd, **kwargs)

    monkeypatch.setattr(host.subprocess, "run", counting_run)
    return calls


def run_exp(source=EXP_SOURCE, dtype=mx.float32, n=1000, **kwargs):
    """Run the elementwise-exp kernel of MLX's guide on n values."""
    k = host.metal_kernel("myexp", ["inp"], ["out"], source, **kwargs)
    a = mx.linspace(-4, 4, n).astype(dtype)
    (out,) = k(inputs=[a], template=[("T", dtype)], grid=(n, 1, 1), threadgroup=(256, 1, 1),
               output_shapes=[a.shape], output_dtypes=[dtype])
    return a, out


@pytest.mark.parametrize("dtype, tol", [(mx.float32, 1e-6), (mx.float16, 1e-3)])
def test_exp_matches_numpy(dtype, tol):
    a, out = run_exp(dtype=dtype)
    assert out.dtype == dtype and out.shape == (1000,)
    expected = np.exp(np.asarray(a.astype(mx.float32), np.float64))
    np.testing.assert_allclose(np.asarray(out.astype(mx.float32)), expected, rtol=tol)


def test_thread_attributes_with_edge_threadgroups():
    source = """
        uint3 p = thread_position_in_grid;
        uint i = 8 * (p.y * threads_per_grid.x + p.x);
        out[i + 0] = threadgroup_position_in_grid.x;
        out[i + 1] = threadgroup_position_in_grid.y;
        out[i + 2] = thread_position_in_threadgroup.x;
        out[i + 3] = thread_position_in_threadgroup.y;
        out[i + 4] = threads_per_threadgroup.x;
        out[i + 5] = threads_per_threadgroup.y;
        out[i + 6] = thread_index_in_threadgroup;
        out[i + 7] = dispatch_threads_per_threadgroup.x * 100 + threadgroups_per_grid.x;
    """
    k = host.metal_kernel("attrs", ["inp"], ["out"], source)
    gx, gy, tx, ty = 10, 3, 4, 2
    (out,) = k(inputs=[mx.zeros((1,))], output_shapes=[(gy, gx, 8)], output_dtypes=[mx.uint32],
               grid=(gx, gy, 1), threadgroup=(tx, ty, 1), init_value=0)
    got = np.asarray(out)
    for y in range(gy):
        for x in range(gx):
            size_x = min(tx, gx - x // tx * tx)  # edge threadgroups are smaller
            size_y = min(ty, gy - y // ty * ty)
            expected = [x // tx, y // ty, x % tx, y % ty, size_x, size_y,
                        (y % ty) * size_x + x % tx, tx * 100 + 3]
            assert got[y, x].tolist() == expected, (x, y)


def test_threadgroup_is_clipped_to_grid():
    source = "out[thread_position_in_grid.x] = threads_per_threadgroup.x + 10 * threadgroups_per_grid.x;"
    k = host.metal_kernel("clip", ["inp"], ["out"], source)
    (out,) = k(inputs=[mx.zeros((1,))], output_shapes=[(5,)], output_dtypes=[mx.int32],
               grid=(5, 1, 1), threadgroup=(256, 1, 1))
    assert np.asarray(out).tolist() == [15] * 5


def test_2d_grid_with_shape_strides_ndim():
    source = """
        uint2 p = uint2(thread_position_in_grid.x, thread_position_in_grid.y);
        uint elem = p.y * inp_shape[1] + p.x;
        out[elem] = inp[elem_to_loc(elem, inp_shape, inp_strides, inp_ndim)] + 1000 * inp_ndim;
    """
    x = mx.arange(12 * 7, dtype=mx.float32).reshape(7, 12).T  # (12, 7), not row-contiguous
    for contiguous in (True, False):
        k = host.metal_kernel("strided", ["inp"], ["out"], source, ensure_row_contiguous=contiguous)
        (out,) = k(inputs=[x], output_shapes=[x.shape], output_dtypes=[mx.float32],
                   grid=(7, 12, 1), threadgroup=(4, 4, 1))
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x) + 2000)


def test_scalar_small_input_and_int_bool_template_args():
    source = """
        uint i = thread_position_in_grid.x;
        float v = inp[i] * scale + small[i % 3];
        out[i] = NEGATE ? -v * N : v * N;
    """
    k = host.metal_kernel("args", ["inp", "scale", "small"], ["out"], source)
    inp = mx.arange(20, dtype=mx.float32)
    scale = mx.array(0.5)
    small = mx.array([1.0, 2.0, 3.0])
    text = host.generated_source(k, inputs=[inp, scale, small], output_shapes=[(20,)],
                                 output_dtypes=[mx.float32], template=[("N", 3), ("NEGATE", True)])
    assert "const constant float& scale" in text and "const constant float* small" in text
    assert "template <int N, bool NEGATE>" in text
    for negate in (True, False):
        (out,) = k(inputs=[inp, scale, small], output_shapes=[(20,)], output_dtypes=[mx.float32],
                   grid=(20, 1, 1), threadgroup=(8, 1, 1), template=[("N", 3), ("NEGATE", negate)])
        expected = (np.arange(20) * 0.5 + np.array([1, 2, 3])[np.arange(20) % 3]) * 3
        np.testing.assert_array_equal(np.asarray(out), -expected if negate else expected)


def test_bfloat16_round_trip():
    source = """
        uint i = thread_position_in_grid.x;
        out[i] = static_cast<bfloat16_t>(float(inp[i]) * 3.0f + 0.1f);
    """
    k = host.metal_kernel("bf16", ["inp"], ["out"], source)
    x = mx.random.normal((300,), key=mx.random.key(0)).astype(mx.bfloat16)
    (out,) = k(inputs=[x], output_shapes=[x.shape], output_dtypes=[mx.bfloat16],
               grid=(300, 1, 1), threadgroup=(64, 1, 1))
    assert out.dtype == mx.bfloat16
    reference = mx.array(np.asarray(x.astype(mx.float32)) * np.float32(3) + np.float32(0.1))
    assert mx.array_equal(out, reference.astype(mx.bfloat16))


def test_float_to_half_and_bfloat_conversions_round_to_nearest_even():
    source = """
        uint i = thread_position_in_grid.x;
        as_half[i] = static_cast<half>(inp[i]);
        as_bfloat[i] = static_cast<bfloat>(inp[i]);
        back[i] = float(as_half[i]) + float(as_bfloat[i]);
    """
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 65504.0, 65519.99, 65520.0, 1e6,
               2.0**-24, 2.0**-25, 2.0**-25 * 1.0001, 3 * 2.0**-25, 2.0**-14, 1 + 2.0**-11,
               1 + 3 * 2.0**-11, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 3.4e38, -1e-30]
    rng = np.random.default_rng(0)
    values = np.concatenate([np.array(special, np.float32),
                             rng.standard_normal(2000, np.float32) * 10.0 ** rng.integers(-9, 6, 2000)])
    x = mx.array(values.astype(np.float32))
    k = host.metal_kernel("convert", ["inp"], ["as_half", "as_bfloat", "back"], source)
    h, b, back = k(inputs=[x], output_shapes=[x.shape] * 3,
                   output_dtypes=[mx.float16, mx.bfloat16, mx.float32],
                   grid=(x.size, 1, 1), threadgroup=(256, 1, 1))
    for got, dtype in ((h, mx.float16), (b, mx.bfloat16)):
        expected = x.astype(dtype)
        assert mx.array_equal(mx.view(got, mx.uint16), mx.view(expected, mx.uint16)) or \
            mx.array_equal(got, expected, equal_nan=True)
        assert bool(mx.isnan(got[4]))
    expected_back = np.asarray(x.astype(mx.float16).astype(mx.float32)
                               + x.astype(mx.bfloat16).astype(mx.float32))
    np.testing.assert_array_equal(np.asarray(back), expected_back)


def test_init_value_fills_unwritten_outputs():
    source = "out[thread_position_in_grid.x] = 1.0f;"
    k = host.metal_kernel("partial", ["inp"], ["out"], source)
    for dtype in (mx.float32, mx.float16, mx.bfloat16):
        (out,) = k(inputs=[mx.zeros((1,))], output_shapes=[(10,)], output_dtypes=[dtype],
                   grid=(6, 1, 1), threadgroup=(4, 1, 1), init_value=float("nan"))
        got = np.asarray(out.astype(mx.float32))
        np.testing.assert_array_equal(got[:6], 1.0)
        assert np.isnan(got[6:]).all()


def test_libraries_are_cached(compiles, cache_home):
    run_exp()
    run_exp()
    assert len(compiles) == 1
    libraries = list((cache_home / "msl-host").glob("*.so"))
    assert len(libraries) == 1
    host._library_cache.clear()  # a new process: reuses the file on disk
    run_exp()
    assert len(compiles) == 1
    run_exp(source=EXP_SOURCE + "\n// another kernel")
    assert len(compiles) == 2
    assert len(list((cache_home / "msl-host").glob("*.so"))) == 2


def test_compile_error_points_at_the_metal_file_line():
    source = "uint elem = thread_position_in_grid.x;\nT tmp = inp[elem];\nout[elem] = metal::exp(tmpp);\n"
    with pytest.raises(host.HostCompileError) as error:
        run_exp(source=source, source_name="shaders/typo.metal")
    assert "shaders/typo.metal:3:" in str(error.value)
    assert "tmpp" in str(error.value)


@pytest.mark.parametrize("source, kwargs, feature", [
    ("threadgroup float buf[32]; out[0] = inp[0];", {}, "threadgroup memory"),
    ("threadgroup_barrier(mem_flags::mem_threadgroup); out[0] = inp[0];", {}, "barrier"),
    ("out[0] = simd_sum(inp[thread_position_in_grid.x]);", {}, "SIMD"),
    ("out[0] = inp[0];", {"atomic_outputs": True}, "atomic"),
])
def test_unsupported_features_are_refused(source, kwargs, feature, compiles):
    k = host.metal_kernel("bad", ["inp"], ["out"], source, **kwargs)
    with pytest.raises(host.UnsupportedKernelError, match=feature):
        k(inputs=[mx.zeros((16,))], output_shapes=[(16,)], output_dtypes=[mx.float32],
          grid=(16, 1, 1), threadgroup=(16, 1, 1))
    assert compiles == []


def test_verbose_prints_the_generated_source(capsys):
    k = host.metal_kernel("myexp", ["inp"], ["out"], EXP_SOURCE)
    a = mx.zeros((1000,))
    k(inputs=[a], template=[("T", mx.float32)], grid=(1000, 1, 1), threadgroup=(256, 1, 1),
      output_shapes=[a.shape], output_dtypes=[a.dtype], verbose=True)
    printed = capsys.readouterr().out
    assert "Generated source code for `myexp`:" in printed
    assert "[[kernel]] void custom_kernel_myexp__float_float_float(" in printed


def test_header_math_vectors_and_limits():
    source = """
        uint i = thread_position_in_grid.x;
        float x = inp[i];
        half4 h4 = half4(x, -x, 2.0f * x, 0.5f);
        float4 f = float4(h4) * 2.0f + float4(1.0f);
        bfloat4 b4 = bfloat4(f);
        f = f + float4(b4) - float4(b4);
        float4 m = select(f, float4(0.0f), f < 0.0f);
        half h = h4.x * h4.w + half(1);
        h += 1;
        float lim = isinf(metal::numeric_limits<half>::infinity()) && isnan(float(metal::numeric_limits<bfloat>::quiet_NaN()))
                    && metal::numeric_limits<half>::max() == 65504.0f ? 1.0f : 0.0f;
        out[8 * i + 0] = m.x + m[1] + m.z + m[3];
        out[8 * i + 1] = metal::clamp(metal::precise::tanh(x), -0.5f, 0.5f);
        out[8 * i + 2] = metal::fast::exp(x) + metal::log(metal::abs(x) + 1.0f) + metal::rsqrt(x * x + 1.0f);
        out[8 * i + 3] = metal::fma(x, 2.0f, 1.0f) + metal::max(x, 0.0f) + metal::min(int(x), 0);
        out[8 * i + 4] = float(h);
        out[8 * i + 5] = lim + (isnan(x / 0.0f) ? 10.0f : 0.0f) + float(as_type<uint>(x) == as_type<uint>(inp[i]));
        out[8 * i + 6] = metal::sqrt(metal::fabs(x)) + metal::pow(2.0f, metal::floor(x));
        out[8 * i + 7] = dot(f, float4(1.0f)) + (all(f == f) ? 100.0f : 0.0f);
    """
    x = np.array([-3.25, -1.0, 0.0, 0.5, 2.75, 7.0], np.float32)
    k = host.metal_kernel("kitchen_sink", ["inp"], ["out"], source)
    (out,) = k(inputs=[mx.array(x)], output_shapes=[(x.size, 8)], output_dtypes=[mx.float32],
               grid=(x.size, 1, 1), threadgroup=(4, 1, 1))
    got = np.asarray(out)
    f = np.stack([x, -x, 2 * x, np.full_like(x, 0.5)], 1).astype(np.float16).astype(np.float32) * 2 + 1
    half_h = ((x.astype(np.float16) * np.float16(0.5)) + np.float16(1)) + np.float16(1)
    expected = np.stack([
        np.maximum(f, 0).sum(1),
        np.clip(np.tanh(x), -0.5, 0.5),
        np.exp(x) + np.log(np.abs(x) + 1) + 1 / np.sqrt(x * x + 1),
        x * 2 + 1 + np.maximum(x, 0) + np.minimum(x.astype(np.int32), 0),
        half_h.astype(np.float32),
        np.where(x == 0, 10.0, 0.0) + 2,
        np.sqrt(np.abs(x)) + 2.0 ** np.floor(x),
        f.sum(1) + 100,
    ], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
