"""msl_host basics: the guide's elementwise kernel, arguments, outputs, refusals, math."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host
from msl_testing import rel_err

EXP_SOURCE = """
    uint elem = thread_position_in_grid.x;
    T tmp = inp[elem];
    out[elem] = metal::exp(tmp);
"""


def run_exp(source=EXP_SOURCE, dtype=mx.float32, n=1000, seed=0, **kwargs):
    """Run the elementwise-exp kernel of MLX's guide on n random values."""
    k = host.metal_kernel("myexp", ["inp"], ["out"], source, **kwargs)
    a = mx.random.normal((n,), key=mx.random.key(seed)).astype(dtype)
    (out,) = k(inputs=[a], template=[("T", dtype)], grid=(n, 1, 1), threadgroup=(256, 1, 1),
               output_shapes=[a.shape], output_dtypes=[dtype])
    return a, out


@pytest.mark.parametrize("dtype, tol, bounds_check", [(mx.float32, 1e-6, True), (mx.float32, 1e-6, False),
                                                     (mx.float16, 1e-3, True)])
def test_exp_matches_numpy(dtype, tol, bounds_check):
    a, out = run_exp(dtype=dtype, bounds_check=bounds_check)
    assert out.dtype == dtype and out.shape == (1000,)
    expected = np.exp(np.asarray(a.astype(mx.float32), np.float64))
    np.testing.assert_allclose(np.asarray(out.astype(mx.float32)), expected, rtol=tol)


def test_scalar_small_input_and_int_bool_template_args():
    source = """
        uint i = thread_position_in_grid.x;
        float v = inp[i] * scale + small[i % 3];
        out[i] = NEGATE ? -v * N : v * N;
    """
    k = host.metal_kernel("args", ["inp", "scale", "small"], ["out"], source)
    inp = mx.random.normal((20,), key=mx.random.key(1))
    scale = mx.array(0.5)
    small = mx.random.normal((3,), key=mx.random.key(2))
    text = host.generated_source(k, inputs=[inp, scale, small], output_shapes=[(20,)],
                                 output_dtypes=[mx.float32], template=[("N", 3), ("NEGATE", True)])
    assert "const constant float& scale" in text and "const constant float* small" in text
    assert "template <int N, bool NEGATE>" in text
    for negate in (True, False):
        (out,) = k(inputs=[inp, scale, small], output_shapes=[(20,)], output_dtypes=[mx.float32],
                   grid=(20, 1, 1), threadgroup=(8, 1, 1), template=[("N", 3), ("NEGATE", negate)])
        v = np.asarray(inp) * np.float32(0.5) + np.asarray(small)[np.arange(20) % 3]
        expected = v * 3
        np.testing.assert_allclose(np.asarray(out), -expected if negate else expected, rtol=1e-6)


def test_init_value_fills_unwritten_outputs():
    source = """
        uint i = thread_position_in_grid.x;
        f32[i] = inp[i];
        f16[i] = inp[i];
        bf16[i] = inp[i];
    """
    k = host.metal_kernel("partial", ["inp"], ["f32", "f16", "bf16"], source)
    x = mx.random.normal((10,), key=mx.random.key(3))
    dtypes = [mx.float32, mx.float16, mx.bfloat16]
    outs = k(inputs=[x], output_shapes=[(10,)] * 3, output_dtypes=dtypes, grid=(6, 1, 1), threadgroup=(4, 1, 1),
             init_value=float("nan"))
    for out, dtype in zip(outs, dtypes):
        assert out.dtype == dtype
        got = np.asarray(out.astype(mx.float32))
        np.testing.assert_array_equal(got[:6], np.asarray(x[:6].astype(dtype).astype(mx.float32)))
        assert np.isnan(got[6:]).all()


def test_several_outputs_and_a_header():
    header = "template <typename T> T twice(T v) { return v + v; }\n"
    source = """
        uint i = thread_position_in_grid.x;
        doubled[i] = twice(a[i]);
        summed[i] = a[i] + b[i];
    """
    k = host.metal_kernel("two_out", ["a", "b"], ["doubled", "summed"], source, header=header)
    a, b = (mx.random.normal((50,), key=mx.random.key(s)) for s in (4, 5))
    doubled, summed = k(inputs=[a, b], output_shapes=[(50,), (50,)], output_dtypes=[mx.float32, mx.float32],
                        grid=(50, 1, 1), threadgroup=(16, 1, 1))
    np.testing.assert_array_equal(np.asarray(doubled), 2 * np.asarray(a))
    np.testing.assert_array_equal(np.asarray(summed), np.asarray(a) + np.asarray(b))


@pytest.mark.parametrize("source, feature", [
    ("simdgroup_float8x8 m; out[0] = inp[0];", "simdgroup matrices"),
    ("texture2d<float> t; out[0] = inp[0];", "textures"),
    ("sampler s; out[0] = inp[0];", "samplers"),
    ("threadgroup_imageblock float* b; out[0] = inp[0];", "imageblocks"),
    ("raster_order_group r; out[0] = inp[0];", "raster order groups"),
])
def test_unfaithful_features_are_refused(source, feature, compiles):
    k = host.metal_kernel("bad", ["inp"], ["out"], source)
    with pytest.raises(host.UnsupportedKernelError, match=feature):
        k(inputs=[mx.ones((16,))], output_shapes=[(16,)], output_dtypes=[mx.float32],
          grid=(16, 1, 1), threadgroup=(16, 1, 1))
    assert compiles == []


def test_threadgroup_variable_with_initializer_is_refused():
    k = host.metal_kernel("init_tg", ["inp"], ["out"], "threadgroup float s = 0; out[0] = inp[0];")
    with pytest.raises(host.UnsupportedKernelError, match="initializer"):
        k(inputs=[mx.ones((16,))], output_shapes=[(16,)], output_dtypes=[mx.float32],
          grid=(16, 1, 1), threadgroup=(16, 1, 1))


def test_compile_options_are_checked_like_mlx():
    for options in ({"math_mode": "safe"}, {"math_mode": "relaxed"}, {"math_mode": "fast"}, {}, None):
        host.metal_kernel("opts", ["inp"], ["out"], EXP_SOURCE, compile_options=options)
    _, fast = run_exp(compile_options={"math_mode": "fast"})
    _, safe = run_exp()
    assert mx.array_equal(fast, safe)  # every math mode is exact on the host
    for bad, message in (({"math_mode": "sloppy"}, "math_mode"), ({"speed": 1}, "Unknown compile option"),
                         ([("math_mode", "fast")], "dict")):
        with pytest.raises(ValueError, match=message) as ours:
            host.metal_kernel("opts", ["inp"], ["out"], EXP_SOURCE, compile_options=bad)
        with pytest.raises(ValueError) as theirs:
            mx.fast.metal_kernel("opts", ["inp"], ["out"], EXP_SOURCE, compile_options=bad)
        assert str(ours.value) == str(theirs.value)


def test_mlx_argument_errors():
    with pytest.raises(ValueError, match="at least one output"):
        host.metal_kernel("none", ["inp"], [], EXP_SOURCE)
    k = host.metal_kernel("myexp", ["inp"], ["out"], EXP_SOURCE)
    a = mx.ones((8,))
    with pytest.raises(ValueError, match="output_shapes"):
        k(inputs=[a], template=[("T", mx.float32)], grid=(8, 1, 1), threadgroup=(8, 1, 1),
          output_shapes=[(8,), (8,)], output_dtypes=[mx.float32])
    with pytest.raises(ValueError, match="Thread group size"):
        k(inputs=[a], template=[("T", mx.float32)], grid=(8, 1, 1), threadgroup=(2048, 1, 1),
          output_shapes=[(8,)], output_dtypes=[mx.float32])


def test_verbose_prints_the_generated_source(capsys):
    k = host.metal_kernel("myexp", ["inp"], ["out"], EXP_SOURCE)
    a = mx.random.normal((1000,), key=mx.random.key(6))
    k(inputs=[a], template=[("T", mx.float32)], grid=(1000, 1, 1), threadgroup=(256, 1, 1),
      output_shapes=[a.shape], output_dtypes=[a.dtype], verbose=True)
    printed = capsys.readouterr().out
    assert "Generated source code for `myexp`:" in printed
    assert "[[kernel]] void custom_kernel_myexp__float_float_float(" in printed


def test_math_vectors_and_limits():
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
                    && metal::numeric_limits<half>::max() == 65504.0f && Limits<half>::finite_max == 65504.0f
                    && Limits<float>::min == -INFINITY && Limits<int>::max == 2147483647 ? 1.0f : 0.0f;
        float4 g = float4(float2(x, 1.0f), float2(2.0f, 3.0f));
        out[8 * i + 0] = m.x + m[1] + m.z + m[3];
        out[8 * i + 1] = metal::clamp(metal::precise::tanh(x), -0.5f, 0.5f);
        out[8 * i + 2] = metal::fast::exp(x) + metal::log(metal::abs(x) + 1.0f) + metal::rsqrt(x * x + 1.0f);
        out[8 * i + 3] = metal::fma(x, 2.0f, 1.0f) + metal::max(x, 0.0f) + metal::min(int(x), 0);
        out[8 * i + 4] = float(h);
        out[8 * i + 5] = lim + (isnan(x / 0.0f) ? 10.0f : 0.0f) + float(as_type<uint>(x) == as_type<uint>(inp[i]));
        out[8 * i + 6] = metal::sqrt(metal::fabs(x)) + metal::pow(2.0f, metal::floor(x)) + ceildiv(7, 2);
        out[8 * i + 7] = dot(f, float4(1.0f)) + (all(f == f) ? 100.0f : 0.0f) + g.x * g.w;
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
        np.sqrt(np.abs(x)) + 2.0 ** np.floor(x) + 4,
        f.sum(1) + 100 + x * 3,
    ], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_large_grid_of_small_work_runs_every_thread():
    a, out = run_exp(n=300_001, seed=7)
    assert rel_err(out, mx.exp(a)) < 1e-6
