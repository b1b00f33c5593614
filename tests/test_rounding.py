"""rounding="per_op": our kernels round where a model's separate MLX ops round, so in half precision they give
what those ops give, bit for bit, on every backend present (the ops run on the matching MLX device: the CPU for
the host runner, the GPU for cuda). "once", the default, is checked against the float64 oracle elsewhere."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import kernels
from moe_reduce.arrays import to_numpy
from moe_reduce.backends import available_backends
from moe_reduce.check import differing, rel_error, tolerance
from moe_reduce.inputs import make_fused_inputs, make_inputs
from moe_reduce.model_bench import mlx_lm_combine
from moe_reduce.reference import every_finite, reference_f64, rounded_to, sigmoid_per_op
from test_fused import ulps

BACKENDS = list(available_backends())
NAN = float("nan")
EPS = 1e-6
# (n_tokens, h, top_k): a decode call at a model's width, odd token counts, top_k 1, 8, 10, the smallest even row
SHAPES = [(1, 2048, 8), (3, 256, 10), (5, 2, 1), (3, 1000, 8)]
TERMS = [(False, False), (True, True), (True, False)]  # (shared, residual)


def ops_stream(backend: str) -> mx.Device:
    """The MLX device whose ops a backend's kernel is compared with."""
    if backend == "metal":
        pytest.skip("not compared on Metal here: no Apple GPU on the machines this suite was checked on")
    return mx.cpu if backend == "host" else mx.gpu


def mlx_ops(args, stream: mx.Device) -> mx.array:
    """The combine as mlx-lm's MoE blocks write it (model_bench.mlx_lm_combine), then its decoder layer's residual
    add, one MLX op at a time on `stream`."""
    *terms, residual = args
    with mx.stream(stream):
        out = mlx_lm_combine(*terms)
        return out if residual is None else residual + out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("n_tokens,h,top_k", SHAPES)
def test_per_op_is_mlx_ops_bit_for_bit(backend, dtype, n_tokens, h, top_k):
    """Every element equal to MLX's ops on NaN-poisoned outputs, with and without the gated shared expert and
    the residual; rounding once differs from them in some elements of the full-width call."""
    stream = ops_stream(backend)
    for shared, residual in TERMS:
        args = make_inputs(n_tokens, h, top_k, shared=shared, residual=residual, seed=h + top_k).mlx(dtype, dtype)
        out = kernels.moe_weighted_reduce(*args, backend=backend, rounding="per_op", init_value=NAN)
        ref = mlx_ops(args, stream)
        assert differing(out, ref) == 0, f"{backend}/{dtype} shared={shared} residual={residual}"
    once = kernels.moe_weighted_reduce(*args, backend=backend, init_value=NAN)
    if h >= 256:
        assert differing(once, ref) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("shared", [True, False])
def test_fused_per_op_hidden_is_mlx_ops_and_normed_is_rms_norm(backend, dtype, shared):
    """The fused kernel rounding per op: hidden equal to MLX's ops bit for bit; normed within 2 units in the last
    place of mx.fast.rms_norm of it (the sums of squares are added in another order; see test_fused.py)."""
    stream = ops_stream(backend)
    args = make_fused_inputs(3, 2048, 8, shared=shared, seed=7).mlx(dtype, dtype)
    hidden, normed = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, rounding="per_op",
                                                 norm_rounding="before_weight", init_value=NAN)
    ref = mlx_ops(args[:5], stream)
    assert differing(hidden, ref) == 0
    assert ulps(normed, mx.fast.rms_norm(ref, args.weight, EPS, stream=stream)).max() <= 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("h", [2048, 1536, 16384])
def test_fused_norm_on_cuda_is_mx_fast_rms_norm_bit_for_bit(backend, dtype, h):
    """On cuda, norm_rounding="before_weight" adds the squares in the order of MLX's CUDA RMSNorm (its threads per
    row and block reduce, read from MLX's source), so on random rows normed is mx.fast.rms_norm of our hidden bit
    for bit (h a multiple of 16 bytes: both then read the row in the same 16-byte pieces)."""
    if backend != "cuda":
        pytest.skip("MLX's CUDA order is what is compared; MLX's CPU rms_norm adds the squares one after another")
    args = make_fused_inputs(64, h, 8, seed=h).mlx(dtype, dtype)
    hidden, normed = kernels.moe_combine_rmsnorm(*args, EPS, backend=backend, rounding="per_op",
                                                 norm_rounding="before_weight", init_value=NAN)
    assert differing(normed, mx.fast.rms_norm(hidden, args.weight, EPS, stream=mx.gpu)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_tokens,h,top_k", [(3, 257, 10), (1, 1000, 1), (3, 8, 8)])
def test_per_op_float32_against_the_oracle(backend, n_tokens, h, top_k):
    """In float32 rounding per op rounds nothing the float32 sums do not: the oracle's tolerance holds at odd h."""
    args = make_inputs(n_tokens, h, top_k, seed=n_tokens + h).mlx()
    out = kernels.moe_weighted_reduce(*args, backend=backend, rounding="per_op", init_value=NAN)
    assert rel_error(out, reference_f64(*args)) < tolerance("float32")


def test_run_info_says_per_op_runs_row():
    """"auto" rounding per op runs the row body with ROUNDING set for the backend (1 on the host runner)."""
    args = make_inputs(2, 64, 8, seed=3).mlx("bfloat16")
    _, info = kernels.moe_weighted_reduce(*args, backend="host", rounding="per_op", return_info=True)
    assert info.variant == "row" and info.chosen_by == "rounding per_op: auto"
    assert dict(info.template)["ROUNDING"] == 1
    assert kernels.rounding_level("per_op", "cuda") == 2 and kernels.rounding_level("once", "cuda") == 0


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_gpu_level_on_the_host_runner_is_a_numpy_model_of_mlx_gpu_ops(monkeypatch, name):
    """ROUNDING 2 (what cuda and metal run), run here on the host runner, against NumPy doing what MLX's GPU
    sources do: each product and the running sum over k rounded to the dtype; the sigmoid as e = exp(|x|),
    d = 1 + e, y = 1 / d, and 1 - y for x > 0, each rounded. Every finite logit of the dtype; no GPU needed."""
    monkeypatch.setattr(kernels, "rounding_level", lambda rounding, backend: 0 if rounding == "once" else 2)
    dtype = getattr(mx, name)
    x = every_finite(dtype)
    n = x.size
    gate = kernels.moe_weighted_reduce(mx.zeros((n, 1), dtype), mx.zeros((n, 2), dtype), x, mx.ones((n, 2), dtype),
                                       backend="host", rounding="per_op", init_value=NAN)[:, 0]
    # x = -6.84375: exp|x| = 938.00005, within a float32 ulp of the bfloat16 tie 938: the host's exp and NumPy's
    # float32 exp land on either side of it
    assert differing(gate, sigmoid_per_op(to_numpy(x, np.float32), dtype, 2)) <= 1
    args = make_inputs(64, 2048, 8, shared=False, residual=False, seed=3).mlx(name, name)
    w = to_numpy(args.expert_w, np.float32)
    y_expert = to_numpy(args.y_expert, np.float32).reshape(64, 8, 2048)
    total = np.zeros((64, 2048), np.float32)
    for k in range(8):
        total = rounded_to(total + rounded_to(w[:, k, None] * y_expert[:, k], dtype), dtype)
    out = kernels.moe_weighted_reduce(args.expert_w, args.y_expert, backend="host", rounding="per_op", init_value=NAN)
    assert differing(out, total) == 0


@pytest.mark.parametrize("call, match", [
    (dict(rounding="twice"), r"^rounding: expected one of \['once', 'per_op'\], got 'twice'$"),
    (dict(rounding="per_op", variant="vec"), r"^variant: rounding 'per_op' needs one of \['auto', 'row'\], got 'vec'$"),
    (dict(rounding="per_op", h=257), r"^h: rounding 'per_op' runs the row body, which needs h a multiple of 2 and "
                                     r"n_tokens \* h >= 8, got h=257, n_tokens=3$"),
    (dict(rounding="per_op", h=2), r"^h: .* got h=2, n_tokens=3$"),
])
@pytest.mark.parametrize("fast", [False, True])
def test_per_op_refusals_come_before_any_kernel(monkeypatch, call, match, fast):
    """A bad rounding, a variant that cannot round per op, or a row the row body cannot take: a ValueError
    naming the argument, on the plain path and on the compiled one, before a kernel is built."""
    monkeypatch.setattr(kernels, "build", lambda *_a: pytest.fail("a kernel was built for a bad call"))
    call = dict(call)
    h = call.pop("h", 64)
    args = make_inputs(3, h, 8, seed=1).mlx("bfloat16")
    with pytest.raises(ValueError, match=match):
        kernels.moe_weighted_reduce(*args, backend=BACKENDS[-1] if fast else "host",
                                    init_value=None if fast else NAN, **call)
