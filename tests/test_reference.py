"""The plain implementations agree with the float64 oracle; the sigmoid is stable; NaN goes where it should;
the input helpers and the byte count are right."""
from __future__ import annotations

import itertools
import warnings

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce.check import rel_error, tolerance
from moe_reduce.inputs import MODELS, make_inputs, model_inputs, route
from moe_reduce.reference import mlx_reference, reference_f64, reference_kernel_order, sigmoid
from moe_reduce.traffic import arithmetic_intensity, bytes_moved, bytes_two_step, flops, fusion_saving

N_TOKENS = (1, 3, 17)
HS = (1, 255, 257, 1000)
TOP_KS = (1, 2, 8, 10)
# The full product is 48 shapes; keep every n_tokens, h and top_k value (and every pair of them) but
# only half the triples, so the suite stays fast.
SHAPES = [
    (t, h, k)
    for (i, t), (j, h), (m, k) in itertools.product(enumerate(N_TOKENS), enumerate(HS), enumerate(TOP_KS))
    if (i + j + m) % 2 == 0
]
IMPLS = {
    "kernel_order": reference_kernel_order,
    "mlx": lambda *a: mlx_reference(*a, compiled=False),
    "mlx_compiled": lambda *a: mlx_reference(*a, compiled=True),
}


def _seed(*xs: int) -> int:
    """A distinct seed per test case, so every case draws fresh inputs."""
    return int(np.ravel_multi_index(xs, (64, 2048, 16, 2)))


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("residual", [False, True], ids=["nores", "res"])
@pytest.mark.parametrize("n_tokens,h,top_k", SHAPES)
def test_float32_matches_oracle(impl, residual, n_tokens, h, top_k):
    inp = make_inputs(n_tokens, h, top_k, residual=residual, seed=_seed(n_tokens, h, top_k, residual))
    ref = reference_f64(*inp)
    out = IMPLS[impl](*inp)
    assert tuple(out.shape) == (n_tokens, h)
    err = rel_error(out, ref)
    assert err < tolerance("float32"), f"{impl}: relative error {err:.3e}"


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("n_tokens,h,top_k", [(1, 257, 8), (3, 255, 10), (17, 1, 1)])
def test_no_shared_expert(impl, n_tokens, h, top_k):
    """Without sh_logit and y_shared the op is the routed sum plus the residual; the oracle says so by hand."""
    inp = make_inputs(n_tokens, h, top_k, shared=False, seed=_seed(n_tokens, h, top_k, 0) + 3)
    ref = reference_f64(*inp)
    by_hand = np.einsum("tk,tkh->th", inp.expert_w.astype(np.float64),
                        inp.y_expert.reshape(n_tokens, top_k, h).astype(np.float64)) + inp.residual
    np.testing.assert_allclose(ref, by_hand, rtol=1e-12, atol=1e-12)
    assert rel_error(IMPLS[impl](*inp), ref) < tolerance("float32")


def test_shapes_cover_every_value():
    for axis, values in enumerate((N_TOKENS, HS, TOP_KS)):
        assert {s[axis] for s in SHAPES} == set(values)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("gate_dtype", ["float32", "same"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("n_tokens,h,top_k", [(1, 257, 8), (17, 1000, 10), (3, 255, 2)])
def test_half_precision_mlx(dtype, gate_dtype, compiled, n_tokens, h, top_k):
    inp = make_inputs(n_tokens, h, top_k, seed=_seed(n_tokens, h, top_k, 1) + 7)
    args = inp.mlx(dtype, dtype if gate_dtype == "same" else "float32")
    out = mlx_reference(*args, compiled=compiled)
    assert out.dtype == args[1].dtype
    # The oracle sees the same rounded inputs, so the error measured is the computation's alone.
    err = rel_error(out, reference_f64(*args))
    assert err < tolerance(dtype), f"{dtype}: relative error {err:.3e}"


@pytest.mark.parametrize("impl", ["f64", *IMPLS])
def test_y_expert_3d_accepted(impl):
    t, h, k = 3, 257, 8
    inp = make_inputs(t, h, k, seed=11)
    fn = reference_f64 if impl == "f64" else IMPLS[impl]
    flat = np.asarray(fn(*inp))
    y3 = inp.y_expert.reshape(t, k, h)
    if impl.startswith("mlx"):
        y3 = mx.array(y3)
    cube = np.asarray(fn(inp.expert_w, y3, inp.sh_logit, inp.y_shared, inp.residual))
    np.testing.assert_array_equal(cube, flat)


# ---- the stable sigmoid -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes_no_nan_no_warning(dtype):
    x = np.array([100, -100, 1000, -1000], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = sigmoid(x)
    assert s.dtype == dtype
    assert not np.isnan(s).any()
    assert s[0] == 1 and s[2] == 1  # exactly
    assert s[3] == 0  # exactly
    assert s[1] > 0  # e^-100 ≈ 3.7e-44 is not 0, even in float32 (a subnormal there)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_minus_100_is_tiny_not_zero(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = sigmoid(np.array([-100.0], dtype))[0]
    exact = np.exp(-100.0) / (1 + np.exp(-100.0))  # 3.7200759760208e-44 in float64
    assert 3.7e-44 < exact < 3.73e-44
    # float64 holds it to full precision; float32 only as a subnormal (steps of 2^-149 ≈ 1.4e-45, ~4 %).
    rtol = 1e-14 if dtype == np.float64 else 0.04
    assert abs(float(s) - exact) <= rtol * exact
    if dtype == np.float32:
        with np.errstate(under="ignore"):
            z = np.exp(np.float32(-100.0))
        assert s == z / (np.float32(1) + z)  # the same formula in float32, bit for bit


def test_sigmoid_matches_naive_where_naive_is_safe():
    x = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15, atol=0)


# ---- NaN goes to exactly the affected outputs ---------------------------------------------------------


@pytest.mark.parametrize("fn", [reference_f64, reference_kernel_order], ids=["f64", "kernel_order"])
def test_nan_in_y_expert_hits_one_element(fn):
    t, h, k = 4, 33, 3
    inp = make_inputs(t, h, k, seed=5)
    inp.y_expert[2 * k + 1, 7] = np.nan  # token 2, slot 1, column 7
    out = fn(*inp)
    expected = np.zeros((t, h), bool)
    expected[2, 7] = True
    np.testing.assert_array_equal(np.isnan(out), expected)


@pytest.mark.parametrize("fn", [reference_f64, reference_kernel_order], ids=["f64", "kernel_order"])
def test_nan_in_sh_logit_hits_one_row(fn):
    t, h, k = 4, 33, 3
    inp = make_inputs(t, h, k, seed=6)
    inp.sh_logit[1] = np.nan
    out = fn(*inp)
    expected = np.zeros((t, h), bool)
    expected[1, :] = True
    np.testing.assert_array_equal(np.isnan(out), expected)


# ---- routing, presets, traffic -------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 8, 10])
def test_route_renormalised_weights_sum_to_one(top_k):
    logits = np.random.default_rng(top_k).standard_normal((9, 64))
    w, ids = route(logits, top_k, renormalize=True)
    assert w.shape == ids.shape == (9, top_k)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    assert (w > 0).all()
    assert all(len(set(row)) == top_k for row in ids)  # distinct experts
    assert (np.diff(w, axis=1) <= 0).all()  # largest first
    # The chosen experts are the top_k largest logits.
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.sort(np.argsort(-logits, axis=1)[:, :top_k], axis=1))
    w_raw, _ = route(logits, top_k, renormalize=False)
    assert (w_raw.sum(axis=1) <= 1 + 1e-12).all()
    np.testing.assert_allclose(w_raw / w_raw.sum(axis=1, keepdims=True), w, rtol=1e-12)


def test_make_inputs_weights_sum_to_one():
    inp = make_inputs(5, 16, 8, seed=3)
    np.testing.assert_allclose(inp.expert_w.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("residual", [False, True])
def test_model_presets_shapes(name, residual):
    m = MODELS[name]
    t = 3
    inp = model_inputs(name, n_tokens=t, residual=residual)
    assert inp.expert_w.shape == (t, m.top_k)
    assert inp.y_expert.shape == (t * m.top_k, m.h)
    if m.shared:
        assert inp.sh_logit.shape == (t,) and inp.y_shared.shape == (t, m.h)
        assert np.isposinf(inp.sh_logit).all() == m.ungated_shared  # not gated: the gate fixed at sigmoid(+inf) = 1
    else:  # no shared expert: the op is the routed sum (plus the residual)
        assert inp.sh_logit is None and inp.y_shared is None
    assert (inp.residual is None) == (not residual)
    if residual:
        assert inp.residual.shape == (t, m.h)
    assert all(a.dtype == np.float32 for a in inp if a is not None)
    sums = inp.expert_w.sum(axis=1)
    if m.renormalize:
        np.testing.assert_allclose(sums, 1.0, rtol=1e-6)
    else:
        assert (sums < 1).all()


def test_bytes_moved_hand_counted():
    # T=2, K=3, h=4.  Elements: y_expert 24, y_shared 8, residual 8, out 8; expert_w 6, sh_logit 2.
    assert bytes_moved(2, 3, 4, "float32", residual=True) == (24 + 8 + 8 + 8) * 4 + (6 + 2) * 4 == 224
    assert bytes_moved(2, 3, 4, "float32", residual=False) == (24 + 8 + 8) * 4 + (6 + 2) * 4 == 192
    assert bytes_moved(2, 3, 4, "bfloat16", residual=True, gate_dtype="float32") == 48 * 2 + 8 * 4 == 128
    assert bytes_moved(2, 3, 4, "bfloat16", residual=True) == 56 * 2 == 112
    # flops: per output element 3 multiply-adds (routed) + 1 (shared) + 1 add (residual) = 9.
    assert flops(2, 3, 4, residual=True) == 8 * 9 == 72
    assert flops(2, 3, 4, residual=False) == 8 * 8
    # No shared expert: y_shared and sh_logit are not read, and 2 flops per output fewer.
    assert bytes_moved(2, 3, 4, "float32", residual=True, shared=False) == (24 + 8 + 8) * 4 + 6 * 4 == 184
    assert flops(2, 3, 4, residual=False, shared=False) == 8 * 6
    assert arithmetic_intensity(2, 3, 4) == 72 / 224


def test_ungated_shared_expert_is_the_op_with_the_gate_at_one():
    """DeepSeek-V3's shared expert is not gated: model_inputs gives it gate logits of +inf, so the oracle (and the
    kernel, tests/test_kernels.py) adds y_shared with weight exactly 1."""
    assert [m.name for m in MODELS.values() if m.ungated_shared] == ["DeepSeek-V3"]
    assert MODELS["DeepSeek-V3"].shared and not MODELS["DeepSeek-V3"].gated_shared
    inp = model_inputs("DeepSeek-V3", n_tokens=3)
    w, y, r = (a.astype(np.float64) for a in (inp.expert_w, inp.y_expert, inp.residual))
    by_hand = np.einsum("tk,tkh->th", w, y.reshape(3, 8, -1)) + inp.y_shared.astype(np.float64) + r
    np.testing.assert_allclose(reference_f64(*inp), by_hand, rtol=1e-13, atol=1e-13)


def test_fusion_saving_of_each_model():
    """The bytes the fused combine + RMSNorm saves against the two steps (notebook 04's table), bfloat16
    activations and float32 gates: DeepSeek-V3 with its shared expert (ungated, read like a gated one) saves
    7.7% at 4096 tokens, like the other top_k = 8 models with one; without it, it would be 8.3%."""
    saving = {(m.name, t): fusion_saving(t, m.top_k, m.h, "bfloat16", "float32", m.shared)
              for m in MODELS.values() for t in (1, 4096)}
    assert round(100 * saving["DeepSeek-V3", 4096], 1) == 7.7 and round(100 * saving["DeepSeek-V3", 1], 1) == 7.1
    assert round(100 * fusion_saving(4096, 8, 7168, "bfloat16", "float32", shared=False), 1) == 8.3
    for (name, t), share in saving.items():
        m = MODELS[name]
        two = bytes_two_step(t, m.top_k, m.h, "bfloat16", "float32", m.shared)
        assert share == pytest.approx(t * m.h * 2 / two)  # one (n_tokens, h) bfloat16 array: hidden, read back
