"""The kernels against the float64 oracle on every backend present (host always; cuda/metal when there)."""
from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moe_reduce import kernels
from moe_reduce.backends import SHADERS, available_backends, make_kernel, read_source, without_comments
from moe_reduce.check import rel_error, tolerance
from moe_reduce.inputs import make_inputs, model_inputs
from moe_reduce.reference import reference_f64
from moe_reduce.validate import validate

BACKENDS = list(available_backends())
VARIANTS = list(kernels.VARIANTS)
RUNTIME_K = [v for v in VARIANTS if not kernels.VARIANTS[v].unroll_k]  # the bodies with top_k read at run time
NAN = float("nan")


def run_checked(x, backend: str, variant: str, dtype: str = "float32") -> np.ndarray:
    """Run on poisoned (NaN) outputs, assert against the oracle of the same rounded inputs, return out."""
    args = x.mlx(dtype)
    out = kernels.moe_weighted_reduce(*args, backend=backend, variant=variant, init_value=NAN)
    ref = reference_f64(*args)
    err = rel_error(out, ref)
    assert err < tolerance(dtype), f"{backend}/{variant}/{dtype}: rel error {err}"
    return np.array(out.astype(mx.float32))


AWKWARD = list(itertools.product([1, 3], [1, 255, 257, 1000], [1, 8, 10]))
# The _k variants are the same bodies with top_k fixed when compiled (one kernel per top_k value): every top_k
# and both row alignments, with fewer shapes, so the suite does not compile each body 24 more times.
AWKWARD_K = [(1, 1, 1), (3, 255, 1), (3, 1000, 8), (1, 257, 8), (3, 257, 10), (1, 1000, 10)]
AWKWARD_CASES = [(v, *s) for v in RUNTIME_K for s in AWKWARD] + [(v, *s) for v in VARIANTS if v not in RUNTIME_K
                                                                  for s in AWKWARD_K]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant,n_tokens,h,top_k", AWKWARD_CASES)
def test_awkward_sizes_f32(backend, variant, n_tokens, h, top_k):
    both = itertools.product((True, False), repeat=2)
    for residual, shared in both if variant in RUNTIME_K else ((True, True), (False, False)):
        x = make_inputs(n_tokens, h, top_k, residual=residual, shared=shared, seed=n_tokens * 7919 + h * 31 + top_k)
        run_checked(x, backend, variant)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("n_tokens,h,top_k", [(1, 2048, 8), (3, 257, 10), (2, 8, 2)])
def test_half_precision(backend, variant, dtype, n_tokens, h, top_k):
    for residual, shared in ((True, True), (False, False)):  # the float32 tests cover the other two
        x = make_inputs(n_tokens, h, top_k, residual=residual, shared=shared, seed=h + top_k)
        run_checked(x, backend, variant, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["scalar", "vec"])
@pytest.mark.parametrize("n_tokens", [1, 3])
def test_ungated_shared_expert(backend, variant, n_tokens):
    """DeepSeek-V3's shared expert, not gated: gate logits of +inf give it weight exactly 1 in the kernel."""
    x = model_inputs("DeepSeek-V3", n_tokens, seed=n_tokens)
    out = run_checked(x, backend, variant)
    routed = run_checked(x._replace(sh_logit=None, y_shared=None), backend, variant)
    np.testing.assert_allclose(out - routed, x.y_shared, rtol=1e-5, atol=1e-5)  # y_shared added as is


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_large_gate_logits(backend, variant):
    x = make_inputs(4, 64, 8, seed=5)
    x.sh_logit[:] = [100.0, -100.0, 1000.0, -1000.0]
    out = run_checked(x, backend, variant)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_inputs_propagate(backend, variant):
    x = make_inputs(3, 40, 8, seed=6)
    x.y_expert[1 * 8 + 3, 17] = np.nan  # token 1, slot 3, h 17: only out[1, 17]
    x.sh_logit[2] = np.nan  # token 2: its whole row
    out = np.array(kernels.moe_weighted_reduce(*x.mlx(), backend=backend, variant=variant))
    expected = np.zeros_like(out, dtype=bool)
    expected[1, 17] = True
    expected[2, :] = True
    np.testing.assert_array_equal(np.isnan(out), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", RUNTIME_K)  # random top_k would compile a _k kernel per example
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_tokens=st.integers(1, 9), h=st.integers(1, 700), top_k=st.integers(1, 12), residual=st.booleans(),
       shared=st.booleans(), seed=st.integers(0, 2**31))
def test_random_shapes(backend, variant, n_tokens, h, top_k, residual, shared, seed):
    run_checked(make_inputs(n_tokens, h, top_k, residual=residual, shared=shared, seed=seed), backend, variant)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_launches_still_check_every_call(backend):
    """After a good call is cached (plan on the host path, the compiled launch on a GPU), a call with a new
    shape or a non-array is still checked and refused with the argument's name."""
    x = make_inputs(2, 64, 4, seed=11)
    args = x.mlx()
    for _ in range(2):
        kernels.moe_weighted_reduce(*args, backend=backend, variant="vec")
    with pytest.raises(ValueError, match=r"^residual: expected shape \(2, 64\)"):
        kernels.moe_weighted_reduce(*args[:4], args[4][:, :63], backend=backend, variant="vec")
    with pytest.raises(TypeError, match=r"^y_shared: expected dtype float32"):
        kernels.moe_weighted_reduce(*args[:3], args[3].astype(mx.float16), args[4], backend=backend, variant="vec")
    with pytest.raises(TypeError, match=r"^y_expert: expected an array"):
        kernels.moe_weighted_reduce(args[0], [[1.0] * 64] * 8, *args[2:], backend=backend)


GPU_BACKENDS = [b for b in BACKENDS if b != "host"]


@pytest.mark.skipif(not GPU_BACKENDS, reason="compiled launches are used on a GPU backend only")
@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_launch_matches_poisoned_run(variant):
    """The compiled launch (no init_value) gives bit for bit the output of the NaN-poisoned plain launch, so
    it writes every element, and it meets the oracle; new shapes, dtypes and absent inputs retrace it."""
    backend = GPU_BACKENDS[0]
    cases = [((1, 2048, 8), "float32", True, True), ((3, 257, 10), "bfloat16", False, True),
             ((3, 1000, 1), "float16", True, False), ((2, 8, 2), "float32", False, False),
             ((1, 2048, 8), "bfloat16", True, True), ((5, 2048, 10), "float32", True, True)]
    for (t, h, k), dtype, residual, shared in cases:
        args = make_inputs(t, h, k, residual=residual, shared=shared, seed=t * h + k).mlx(dtype)
        fast = kernels.moe_weighted_reduce(*args, backend=backend, variant=variant)
        poisoned = kernels.moe_weighted_reduce(*args, backend=backend, variant=variant, init_value=NAN)
        assert rel_error(fast, reference_f64(*args)) < tolerance(dtype)
        np.testing.assert_array_equal(np.array(fast.astype(mx.float32)), np.array(poisoned.astype(mx.float32)))


def test_three_d_y_expert_accepted():
    x = make_inputs(3, 33, 4, seed=8)
    w, y, s, ys, r = x.mlx()
    out = kernels.moe_weighted_reduce(w, y.reshape(3, 4, 33), s, ys, r, init_value=NAN)
    assert rel_error(out, reference_f64(*x)) < tolerance("float32")


def test_run_info_names_what_ran():
    x = make_inputs(2, 300, 8, seed=9)
    _, info = kernels.moe_weighted_reduce(*x.mlx(), variant="vec", return_info=True)
    assert info.backend == BACKENDS[0] and info.variant == "vec"
    assert info.grid == (150, 1, 1)  # 2 tokens x 300 outputs / 4 per thread
    assert info.threadgroup == (150, 1, 1)
    assert dict(info.template)["TOP_K"] == 0 and dict(info.template)["HAS_SHARED"] is True
    _, info = kernels.moe_weighted_reduce(x.expert_w, x.y_expert, residual=x.residual, variant="vec_k",
                                          return_info=True)
    assert dict(info.template)["TOP_K"] == 8 and dict(info.template)["HAS_SHARED"] is False


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda a: {**a, "y_expert": a["y_expert"][:-1]}, ValueError, r"y_expert: expected shape .* got \(23, 16\)"),
        (lambda a: {**a, "sh_logit": None}, ValueError, r"sh_logit: expected an array because y_shared is given"),
        (lambda a: {**a, "residual": a["residual"][:, :3]}, ValueError, r"residual: expected shape \(3, 16\)"),
        (lambda a: {**a, "y_shared": a["y_shared"].astype(mx.float16)}, TypeError, r"y_shared: expected dtype float32"),
        (lambda a: {k: (v.astype(mx.int32) if k == "y_expert" else v) for k, v in a.items()}, TypeError, "y_expert"),
        (lambda a: {k: np.array(v, np.float64) for k, v in a.items()}, TypeError, r"float64"),
    ],
)
def test_bad_input_raises_before_any_kernel(monkeypatch, change, error, match):
    def no_kernel(*_args, **_kw):
        raise AssertionError("a kernel was built for a bad call")

    monkeypatch.setattr(kernels, "build", no_kernel)
    x = make_inputs(3, 16, 8, seed=10)
    args = dict(zip(["expert_w", "y_expert", "sh_logit", "y_shared", "residual"], x.mlx()))
    with pytest.raises(error, match=match):
        kernels.moe_weighted_reduce(**change(args))


def test_unknown_variant_and_backend():
    x = make_inputs(1, 8, 1)
    with pytest.raises(ValueError, match="variant"):
        kernels.moe_weighted_reduce(*x.mlx(), variant="nope")
    with pytest.raises(ValueError, match="backend"):
        kernels.moe_weighted_reduce(*x.mlx(), backend="opencl")


@pytest.mark.parametrize("variant,dtype,n_tokens,h,runs", [
    ("row", "bfloat16", 3, 256, "row"), ("row", "bfloat16", 3, 257, "scalar_k"), ("row", "float32", 3, 257, "row"),
    ("row", "float32", 1, 7, "scalar_k"), ("vec", "float32", 1, 7, "scalar"), ("vec_k", "float16", 2, 4, "vec_k")])
def test_choose_variant_falls_back_where_rows_cannot_be_cast(variant, dtype, n_tokens, h, runs):
    """row needs h a multiple of its W (2 for 16-bit dtypes) and, as vec, n_tokens*h >= 8; else the scalar body
    with the same TOP_K choice runs, and RunInfo says so."""
    x = make_inputs(n_tokens, h, 8, seed=h)
    out, info = kernels.moe_weighted_reduce(*x.mlx(dtype), backend=BACKENDS[0], variant=variant, init_value=NAN,
                                            return_info=True)
    assert info.variant == runs
    assert rel_error(out, reference_f64(*x.mlx(dtype))) < tolerance(dtype)


@pytest.mark.parametrize("file", sorted(p.name for p in SHADERS.iterdir() if p.name.endswith((".metal", ".cuh"))))
def test_sources_without_comments_keep_the_code_line_for_line(file):
    """What the cuda backend compiles: the same lines, no comment left, the same code tokens on each line."""
    text = read_source(file)
    short = without_comments(text)
    assert "//" not in short and len(short) < len(text)
    assert short.count("\n") == text.count("\n")
    for line, kept in zip(text.splitlines(), short.splitlines()):
        code, _, comment = line.partition("//")
        assert kept.split() == code.split()
        # what makes the cut change what a compiler sees: a // inside a string, a comment continued by a backslash
        assert code.count('"') % 2 == 0 and not comment.rstrip().endswith("\\"), line


def test_a_body_without_comments_computes_the_same():
    """The row variant compiled from its comment-free text (on the host runner) still matches the oracle."""
    args = make_inputs(3, 257, 8, seed=5)
    body = without_comments(read_source("moe_weighted_reduce_row.metal"))
    kernel = make_kernel("row_no_comments", body, kernels.INPUT_NAMES, "host")
    p = validate(*args.mlx())
    out = kernels.dispatch(kernel, kernels.launch_config("row", p, 256), p, args.mlx(), NAN)
    assert rel_error(np.array(out), reference_f64(*args)) < 1e-6
