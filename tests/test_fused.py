"""The combine fused with the next RMSNorm (lesson 04) against its float64 oracle and against the two-step
version, on every backend present: awkward sizes, every dtype, poisoned outputs, rows whose mean square
overflows or underflows in half precision; bad input is refused before any kernel is built."""
from __future__ import annotations


import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import kernels
from moe_reduce.backends import available_backends
from moe_reduce.check import differing, rel_error, tolerance
from moe_reduce.inputs import CombineArgs, make_fused_inputs
from moe_reduce.reference import reference_combine_rmsnorm_f64
from moe_reduce.validate import Problem, validate_rmsnorm

BACKENDS = list(available_backends())
NAN = float("nan")
EPS = 1e-6
# (n_tokens, h, top_k): every h of the issue with n_tokens 1 and 3 and top_k 1, 8, 10 spread over them
SHAPES = [(1, 1, 1), (3, 31, 8), (1, 257, 10), (3, 1000, 1), (1, 4099, 8), (3, 16384, 10), (3, 2048, 8)]


def check(args, backend: str, dtype: str, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Run the fused kernel on NaN-poisoned outputs; assert both outputs against the oracle of the same rounded
    inputs; return them as float32 NumPy arrays."""
    hidden, normed = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, init_value=NAN, **kw)
    ref_h, ref_n = reference_combine_rmsnorm_f64(*args, EPS)
    for name, out, ref in (("hidden", hidden, ref_h), ("normed", normed, ref_n)):
        err = rel_error(out, ref)
        assert err < tolerance(dtype), f"{backend}/{dtype} {name}: relative error {err}"
    return np.array(hidden.astype(mx.float32)), np.array(normed.astype(mx.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_tokens,h,top_k", SHAPES)
def test_awkward_sizes_float32(backend, n_tokens, h, top_k):
    for shared in (True, False):
        args = make_fused_inputs(n_tokens, h, top_k, shared=shared, seed=n_tokens * 101 + h + top_k).mlx()
        check(args, backend, "float32")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm_rounding", kernels.NORM_ROUNDINGS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("n_tokens,h,top_k", [(3, 257, 10), (1, 2048, 8), (3, 1000, 1)])
def test_half_precision(backend, norm_rounding, dtype, n_tokens, h, top_k):
    args = make_fused_inputs(n_tokens, h, top_k, seed=h).mlx(dtype)
    check(args, backend, dtype, norm_rounding=norm_rounding)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [300.0, 1e-4])
def test_mean_square_out_of_half_range(backend, scale):
    """Rows of size ~300 (x^2 ~ 9e4 > 65504, float16's largest) and ~1e-4 (x^2 ~ 1e-8, below float16's smallest
    subnormal 6e-8): the kernel sums squares in float32, so the norm stays right in float16."""
    base = make_fused_inputs(2, 1000, 8, seed=7)
    args = base._replace(y_expert=base.y_expert * scale, y_shared=base.y_shared * scale,
                         residual=base.residual * scale).mlx("float16")
    hidden16 = reference_combine_rmsnorm_f64(*args, EPS)[0].astype(np.float16)
    with np.errstate(over="ignore", under="ignore"):
        naive = np.mean(hidden16 * hidden16, axis=-1, dtype=np.float16)  # the mean square taken in float16
    assert (np.isinf(naive) if scale > 1 else naive == 0).all()
    _, normed = check(args, backend, "float16")
    assert np.isfinite(normed).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_agrees_with_the_two_step_version(backend):
    """Our combine, then mx.fast.rms_norm: the same hidden bit for bit, and normed within float32 rounding."""
    args = make_fused_inputs(3, 2048, 8, seed=9).mlx()
    hidden, normed = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend)
    hidden2, normed2 = kernels.combine_then_rmsnorm(*args, EPS, backend=backend)
    assert rel_error(hidden, hidden2) < 1e-6 and rel_error(normed, normed2) < 1e-6


def ulps(a: mx.array, b: mx.array) -> np.ndarray:
    """|a - b| in units in the last place of their dtype (counting representable values between them)."""
    bits = 8 * a.dtype.size
    def ordered(x: mx.array) -> np.ndarray:
        i = np.array(x.view(mx.uint32 if bits == 32 else mx.uint16)).astype(np.int64)
        return np.where(i >> (bits - 1), -(i & ((1 << (bits - 1)) - 1)), i)
    return np.abs(ordered(a) - ordered(b))


def mlx_rms_norm(backend: str, hidden: mx.array, weight: mx.array) -> mx.array:
    """mx.fast.rms_norm of our hidden on the device the backend compares with: MLX's CPU fallback for the host
    runner (both compute the scale as 1 / sqrt(x)), MLX's CUDA kernel for ours on CUDA (both use rsqrtf)."""
    if backend == "metal":
        pytest.skip("not compared on Metal: mx.fast.rms_norm takes precise::rsqrt, our kernel metal::rsqrt")
    return mx.fast.rms_norm(hidden, weight, EPS, stream=mx.cpu if backend == "host" else mx.gpu)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n_tokens,h,top_k", [(1, 1, 1), (3, 256, 4), (2, 2048, 8), (2, 16384, 10)])
def test_before_weight_is_mx_fast_rms_norm_bit_for_bit(backend, dtype, n_tokens, h, top_k):
    """With the sum of squares exact in float32 whatever the order (every hidden value a multiple of 1/4 below 4
    in size, h a power of two, so the mean is exact too), norm_rounding="before_weight" gives mx.fast.rms_norm's
    output bit for bit; "once" differs from it in half precision (weights of 1 + N(0, 0.1^2))."""
    rng = np.random.default_rng(h + top_k)
    quarters = lambda *shape: (rng.integers(-7, 8, shape) / 4).astype(np.float32)  # noqa: E731
    args = make_fused_inputs(n_tokens, h, top_k, shared=False, seed=h)
    args = args._replace(expert_w=np.eye(top_k, dtype=np.float32)[[0] * n_tokens],  # weight 1 on expert 0
                         y_expert=quarters(n_tokens * top_k, h), residual=quarters(n_tokens, h)).mlx(dtype)
    results = {r: kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, norm_rounding=r)
               for r in kernels.NORM_ROUNDINGS}
    hidden, normed = results["before_weight"]
    assert np.all(np.abs(np.array(hidden.astype(mx.float32))) < 4)
    ref = mlx_rms_norm(backend, hidden, args.weight)
    assert ulps(normed, ref).max() == 0
    if dtype != "float32" and h > 1:
        assert (ulps(results["once"][1], ref) > 0).mean() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, most_ulps, share_off", [("float16", 2, 0.005), ("bfloat16", 2, 0.001)])
def test_before_weight_near_mx_fast_rms_norm(backend, dtype, most_ulps, share_off):
    """On random rows the two sums of squares round differently (MLX's CPU fallback adds them one after another,
    ours in a tree), so a few outputs differ from mx.fast.rms_norm's, by at most 2 units in the last place."""
    off, total = 0, 0
    for n_tokens, h, top_k in [(3, 257, 10), (64, 2048, 8), (16, 4099, 8), (16, 16384, 10)]:
        args = make_fused_inputs(n_tokens, h, top_k, seed=h + n_tokens).mlx(dtype)
        hidden, normed = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, norm_rounding="before_weight")
        u = ulps(normed, mlx_rms_norm(backend, hidden, args.weight))
        assert u.max() <= most_ulps
        off, total = off + (u > 0).sum(), total + u.size
    assert off / total <= share_off


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("n_tokens,h,top_k", SHAPES)
def test_mlx_cuda_sum_order(backend, dtype, n_tokens, h, top_k):
    """The sum of squares in MLX's CUDA order (what before_weight takes on cuda), forced on every backend: at MLX's
    threads per row, both outputs against the oracle, outputs poisoned; same hidden as the default order."""
    args = make_fused_inputs(n_tokens, h, top_k, seed=h * 7 + top_k).mlx(dtype)
    p = validate_rmsnorm(*args, EPS)
    config = kernels.fused_config(p, EPS, None, "before_weight", mlx_sum=True)
    assert dict(config.template)["MLX_CUDA_SUM"] and config.threadgroup[0] == kernels.mlx_cuda_norm_threads(p)
    hidden, normed = kernels.fused_dispatch(kernels.build_fused(backend), config, p, CombineArgs(*args[:5]),
                                            args.weight, init_value=NAN)
    ref_h, ref_n = reference_combine_rmsnorm_f64(*args, EPS)
    for name, out, ref in (("hidden", hidden, ref_h), ("normed", normed, ref_n)):
        assert rel_error(out, ref) < tolerance(dtype), f"{backend}/{dtype} {name}: {rel_error(out, ref)}"
    default_hidden, _ = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, norm_rounding="before_weight")
    assert differing(hidden, default_hidden) == 0


@pytest.mark.parametrize("dtype, h, threads", [
    ("bfloat16", 2048, 128), ("float32", 2048, 128), ("bfloat16", 512, 64), ("bfloat16", 100, 64),
    ("bfloat16", 1536, 64), ("bfloat16", 4099, 128), ("float32", 4608, 1024), ("bfloat16", 16384, 1024)])
def test_mlx_cuda_norm_threads(dtype, h, threads):
    """MLX's CUDA RMSNorm dispatch as read in rms_norm.cu: 64 threads up to 64 16-byte accesses; 128 when the
    accesses are a multiple of 128, else 64 when a multiple of 64 and at most 8 each, else 128; 1024 past 1024."""
    assert kernels.mlx_cuda_norm_threads(Problem(1, 8, h, dtype, dtype, True)) == threads


def test_run_info_and_threads():
    args = make_fused_inputs(2, 2048, 8, seed=3).mlx("bfloat16")
    _, _, info = kernels.moe_combine_rmsnorm(*args, EPS, return_info=True)
    tpl = dict(info.template)
    assert info.threadgroup == (256, 1, 1) and info.grid == (2 * 256, 1, 1)  # 2048 / 8 per access = 256 threads
    assert tpl["W"] == 8 and tpl["ITERS"] == 1 and tpl["TOP_K"] == 8 and tpl["ROUND_BEFORE_WEIGHT"] is False
    _, _, info = kernels.moe_combine_rmsnorm(*args, EPS, threads=64, return_info=True)
    assert info.threadgroup == (64, 1, 1) and dict(info.template)["ITERS"] == 4
    with pytest.raises(ValueError, match=r"threads: expected a multiple of 32 from 32 to 1024, got 48"):
        kernels.moe_combine_rmsnorm(*args, EPS, threads=48)
    _, _, info = kernels.moe_combine_rmsnorm(*args, EPS, norm_rounding="before_weight", return_info=True)
    assert dict(info.template)["ROUND_BEFORE_WEIGHT"] is True
    assert dict(info.template)["MLX_CUDA_SUM"] is (info.backend == "cuda")


@pytest.mark.parametrize("change, error, match", [
    (dict(weight=np.ones(7, np.float32)), ValueError, r"^weight: expected shape \(16,\) = \(h,\), got \(7,\)"),
    (dict(weight=np.ones(16, np.float16)), TypeError, r"^weight: expected dtype float32 \(the dtype of y_expert\)"),
    (dict(eps=0.0), ValueError, r"^eps: expected a finite number > 0, got 0.0"),
    (dict(eps=float("nan")), ValueError, r"^eps: expected a finite number > 0, got nan"),
    (dict(residual=None), ValueError, r"^residual: expected an array of shape \(n_tokens, h\)"),
])
@pytest.mark.parametrize("fn", ["moe_combine_rmsnorm", "combine_then_rmsnorm"])
def test_bad_input_raises_before_any_kernel(monkeypatch, fn, change, error, match):
    """The fused call and its two-step baseline check their arguments before building any kernel."""
    def no_kernel(*_a, **_kw):
        raise AssertionError("a kernel was built for a bad call")

    monkeypatch.setattr(kernels, "compile_shader", no_kernel)
    call = {**make_fused_inputs(2, 16, 4, seed=1)._asdict(), "eps": EPS}
    call.update(change)
    with pytest.raises(error, match=match):
        getattr(kernels, fn)(*[call[k] for k in ("expert_w", "y_expert", "sh_logit", "y_shared", "residual",
                                                      "weight", "eps")], backend=BACKENDS[0])


def test_bad_norm_rounding_raises_before_any_kernel(monkeypatch):
    monkeypatch.setattr(kernels, "compile_shader", lambda *_a, **_kw: pytest.fail("a kernel was built"))
    with pytest.raises(ValueError, match=r"^norm_rounding: expected one of \['once', 'before_weight'\], got 'twice'$"):
        kernels.moe_combine_rmsnorm(*make_fused_inputs(2, 16, 4, seed=1).mlx(), EPS, backend=BACKENDS[0],
                                    norm_rounding="twice")
