"""Lesson 01's exercises: the stable sigmoid, the bytes one call moves, the float32 rounding bound."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs import make_inputs
from ..models import MODELS
from ..reference import reference_f64, reference_kernel_order, sigmoid
from ..traffic import bytes_moved
from .harness import fresh_seed, term_scale
from .verdict import Verdict, call_learner, check_count, failed, passed, unattempted

# ------------------------------------------------------------------ the stable sigmoid

SIGMOID_X = np.array([-1000, -100, -88.8, -20, -1, -1e-3, 0, 1e-3, 1, 20, 88.8, 100, 1000])


def check_sigmoid(answer: Any) -> Verdict:
    """The learner's sigmoid on float32 and float64 arrays, far and near 0, with every overflow raising."""
    if answer is None:
        return unattempted("pass your function, e.g. check(\"sigmoid\", my_sigmoid).")
    rng = np.random.default_rng()
    for dtype in (np.float32, np.float64):
        x = np.concatenate([SIGMOID_X, 30 * rng.standard_normal(20)]).astype(dtype)
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                got = answer(x.copy())
        except FloatingPointError as e:
            bad = next((f" at x = {v:g}" for v in x if _raises(answer, v, dtype)), "")
            return failed(f"in {np.dtype(dtype).name}, {e}{bad}: some step overflows or divides by zero. "
                          "Compute only e^-|x|, which never exceeds 1, and pick the formula by the sign of x.")
        except Exception as e:  # the learner's code may raise anything; report it
            return failed(f"your function raised {type(e).__name__}: {e}")
        if got is None:
            return unattempted("your function returns None: write its body and run the cell again.")
        got = np.asarray(got)
        if got.shape != x.shape or got.dtype != dtype:
            return failed(f"sigmoid of a {np.dtype(dtype).name} array of shape {x.shape} should keep both; got "
                          f"dtype {got.dtype}, shape {got.shape}")
        want = sigmoid(x.astype(np.float64))
        err = np.abs(got - want) / np.maximum(want, np.finfo(dtype).tiny)
        limit = 8 * np.finfo(dtype).eps
        if np.isnan(got).any() or (err > limit).any():
            i = int(np.argmax(np.isnan(got) | (err > limit)))
            return failed(f"in {np.dtype(dtype).name}, sigmoid({x[i]:g}): expected {want[i]:.6g}, got {got[i]:.6g}"
                          f" (relative error {err[i]:.2g}, allowed {limit:.1g}).")
    return passed("right to a few units in the last place for |x| up to 1000 in float32 and float64, "
                  "with no overflow even when NumPy raises on one.")


def _raises(fn: Any, v: float, dtype: type) -> bool:
    """Whether fn overflows (or divides by zero) on the single value v."""
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            fn(np.array([v], dtype))
        return False
    except Exception:  # FloatingPointError, or anything else the learner's code raises
        return True


def sigmoid_solution(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) from z = e^-|x| ≤ 1: 1/(1+z) for x ≥ 0, z/(1+z) for x < 0."""
    z = np.exp(-np.abs(x))
    one = np.ones_like(z)
    return np.where(x >= 0, one / (one + z), z / (one + z))


# ------------------------------------------------------------------ bytes one call moves

BYTES_MODEL, BYTES_TOKENS, BYTES_DTYPE = "Qwen3-Next-80B-A3B", 16, "bfloat16"


def bytes_solution() -> int:
    """traffic.bytes_moved at the question's preset: activations in bfloat16, gates in float32, residual on."""
    m = MODELS[BYTES_MODEL]
    return bytes_moved(BYTES_TOKENS, m.top_k, m.h, BYTES_DTYPE, residual=True, gate_dtype="float32",
                       shared=m.gated_shared)


def bytes_mistakes() -> dict[str, int]:
    """Answers that typical slips give, by what was slipped."""
    m, t = MODELS[BYTES_MODEL], BYTES_TOKENS
    right = bytes_solution()
    count = lambda **kw: bytes_moved(t, kw.pop("top_k", m.top_k), m.h, kw.pop("dtype", BYTES_DTYPE),  # noqa: E731
                                     **{"residual": True, "gate_dtype": "float32", "shared": True, **kw})
    return {
        "activations counted in float32 (4 bytes) instead of bfloat16 (2)": count(dtype="float32"),
        "router weights and gate logits counted in bfloat16 instead of float32": count(gate_dtype="bfloat16"),
        "the residual left out": count(residual=False),
        "the shared expert (y_shared and sh_logit) left out": count(shared=False),
        "the write of out left out": right - t * m.h * 2,
        "top_k taken as 8 (this model routes each token to 10 experts)": count(top_k=8),
        "bits instead of bytes": 8 * right,
    }


def check_bytes(answer: Any) -> Verdict:
    """An integer count of bytes, against traffic.bytes_moved; names the slip when the answer matches one."""
    right = bytes_solution()
    return check_count(answer, "my_bytes", right, bytes_mistakes(),
                       f"{right:,} bytes, as traffic.bytes_moved counts them.",
                       "Count, per token: top_k expert rows, y_shared, residual and out (h activations each), then "
                       "top_k router weights and one gate logit.", digits=1, every_slip=False)


# ------------------------------------------------------------------ the float32 rounding bound

U = 2.0**-24  # float32 unit roundoff
BOUND_CASES = ((3, 255, 8), (3, 257, 10), (1, 1000, 8), (1, 1, 1))  # n_tokens, h, top_k


def bound_solution(top_k: int) -> float:
    """γ_K = K·u / (1 − K·u): the first term's product is rounded once, then K − 1 additions round it again."""
    return top_k * U / (1 - top_k * U)


def observed_ratio(n_tokens: int, h: int, top_k: int) -> tuple[float, tuple[int, int], int]:
    """Largest |kernel order − oracle| / Σ_k|w·y| of the routed sum on fresh inputs; (ratio, element, seed)."""
    seed = fresh_seed()
    x = make_inputs(n_tokens, h, top_k, residual=False, shared=False, seed=seed)
    err = np.abs(reference_kernel_order(*x).astype(np.float64) - reference_f64(*x))
    ratio = err / term_scale(x)  # Σ_k|w·y| in float64: no residual, no shared expert here
    i = int(np.argmax(ratio))
    return float(ratio.flat[i]), divmod(i, h), seed


def check_bound(answer: Any) -> Verdict:
    """A function top_k -> γ with |float32 routed sum − exact| ≤ γ·Σ|w·y|: it must hold on fresh inputs and be
    at least the worst case K·u, and at most twice γ_K (a bound that loose says little)."""
    if answer is None:
        return unattempted("pass your function, e.g. check(\"error_bound\", my_bound).")
    for n_tokens, h, top_k in BOUND_CASES:
        gamma, error = call_learner(answer, top_k)
        if error:
            return error
        if gamma is None:
            return unattempted("your function returns None: write its body and run the cell again.")
        ratio, (t, col), seed = observed_ratio(n_tokens, h, top_k)
        if not gamma >= ratio:
            return failed(f"at top_k = {top_k} your bound {gamma:.3g} is below an error that happened: out[{t}, {col}] "
                          f"of make_inputs({n_tokens}, {h}, {top_k}, residual=False, shared=False, seed={seed}) is off by "
                          f"{ratio:.3g}·Σ|w·y|.")
        if gamma < top_k * U:
            return failed(f"at top_k = {top_k} your bound is {gamma / U:.3g}·u, less than the worst case: some inputs "
                          "make every rounding on one term's path go the same way. Count the roundings of the first "
                          "term w[t,0]·y: its product, then every addition after it.")
        if gamma > 2 * bound_solution(top_k):
            return failed(f"at top_k = {top_k} your bound {gamma / U:.3g}·u holds but is more than twice the worst case: "
                          "count only the roundings on one term's path (its product, then each addition after it).")
    return passed("holds on fresh inputs at every size tried and is within 2× of the worst case γ_K = K·u/(1 − K·u).")
