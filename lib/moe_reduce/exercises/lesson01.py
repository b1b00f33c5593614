"""Lesson 01's exercises: a log-sigmoid right for every x, the bytes one call moves, the float32 rounding bound,
and the combine's place on the roofline."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs import CombineArgs, make_inputs
from ..machine import DATASHEET_PEAKS
from ..models import MODELS
from ..reference import reference_f64, reference_kernel_order
from ..traffic import bytes_moved, flops
from .harness import fresh_seed, term_scale
from .verdict import Verdict, call_learner, check_count, check_fraction, failed, passed, unattempted

# ------------------------------------------------------------------ log σ(x), where the stable form matters

LOG_SIGMOID_X = np.array([-1000, -200, -100, -88.8, -40, -20, -1, -1e-3, 0, 1e-3, 1, 20, 40, 88.8, 100, 200, 1000])
ULPS = 8  # allowed error, in units in the last place of the dtype at the exact value


def exact_log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x) = −log(1 + e^−x) in float64, by NumPy's logaddexp (which never overflows)."""
    return -np.logaddexp(0.0, -x.astype(np.float64))


def ulps_off(got: np.ndarray, want: np.ndarray, dtype: type) -> np.ndarray:
    """|got − want| in units in the last place of `dtype` at want (subnormal steps below the normal range);
    NaN and a wrong infinity count as infinitely far."""
    step = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        off = np.abs(got.astype(np.float64) - want) / step
    return np.where(np.isnan(off), np.inf, off)


def relative_words(got: float, want: float) -> str:
    """The relative error in words (1 for a 0 where the value is tiny but not 0); none for a NaN or an infinity."""
    if not np.isfinite(got):
        return "not a finite number"
    if want == 0:
        return f"absolute error {abs(got):.2g}"
    return f"relative error {abs(got - want) / abs(want):.2g}"


def check_log_sigmoid(answer: Any) -> Verdict:
    """The learner's log σ on float32 and float64 arrays, |x| up to 1000, within ULPS units in the last place of
    the float64 value (overflow along the way is allowed: only the results count)."""
    if answer is None:
        return unattempted("pass your function, e.g. check(\"log_sigmoid\", my_log_sigmoid).")
    rng = np.random.default_rng()
    for dtype in (np.float32, np.float64):
        x = np.concatenate([LOG_SIGMOID_X, 30 * rng.standard_normal(20)]).astype(dtype)
        with np.errstate(all="ignore"):
            got, error = call_learner(answer, x.copy())
        if error:
            return error
        if got is None:
            return unattempted("your function returns None: write its body and run the cell again.")
        got = np.asarray(got)
        if got.shape != x.shape or got.dtype != dtype:
            return failed(f"log_sigmoid of a {np.dtype(dtype).name} array of shape {x.shape} should keep both; got "
                          f"dtype {got.dtype}, shape {got.shape}")
        want = exact_log_sigmoid(x)
        off = ulps_off(got, want, dtype)
        if (off > ULPS).any():
            i = int(np.argmax(off > ULPS))
            far = "" if np.isinf(off[i]) else f", {off[i]:.3g} units in the last place"
            return failed(f"in {np.dtype(dtype).name}, log_sigmoid({x[i]:g}): expected {want[i]:.6g}, got {got[i]:.6g} "
                          f"({relative_words(got[i], want[i])}{far}; allowed {ULPS} units in the last place).")
    return passed(f"within {ULPS} units in the last place for |x| up to 1000 in float32 and float64.")


def log_sigmoid_solution(x: np.ndarray) -> np.ndarray:
    """log σ(x) = min(x, 0) − log(1 + e^−|x|): e^−|x| ≤ 1 never overflows, and log1p keeps the tiny values."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


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
        "the write of out left out": right - t * m.h * 2,  # the same count as the residual left out
        "top_k taken as 8 (this model routes each token to 10 experts)": count(top_k=8),
        "bits instead of bytes": 8 * right,
    }


def check_bytes(answer: Any) -> Verdict:
    """An integer count of bytes, against traffic.bytes_moved; names the slip when the answer matches one."""
    right = bytes_solution()
    return check_count(answer, "my_bytes", right, bytes_mistakes(),
                       f"{right:,} bytes, as traffic.bytes_moved counts them.",
                       "Count, per token: top_k expert rows, y_shared, residual and out (h activations each), then "
                       "top_k router weights and one gate logit.")


# ------------------------------------------------------------------ the float32 rounding bound

U = 2.0**-24  # float32 unit roundoff
BOUND_CASES = ((3, 255, 8), (3, 257, 10), (1, 1000, 8), (1, 1, 1))  # n_tokens, h, top_k


def bound_solution(top_k: int) -> float:
    """γ_K = K·u / (1 − K·u): the first term's product is rounded once, then K − 1 additions round it again."""
    return top_k * U / (1 - top_k * U)


def worst_inputs(top_k: int) -> CombineArgs:
    """One output whose every rounding goes down: w·y = (1 + 2u)(1 − u) = 1 + u − 2u² rounds to 1, then top_k − 1
    terms of just under u, each lost when added to 1. The float32 sum is 1; the exact one about 1 + top_k·u."""
    w = np.ones((1, top_k), np.float32)
    y = np.full((top_k, 1), np.nextafter(np.float32(U), np.float32(0)), np.float32)
    w[0, 0], y[0, 0] = 1 + 2 * U, 1 - U
    return CombineArgs(w, y, None, None, None)


def error_ratio(x: CombineArgs) -> np.ndarray:
    """|kernel order − oracle| / Σ_k|w·y| for each output of the routed sum (no shared expert, no residual)."""
    return np.abs(reference_kernel_order(*x).astype(np.float64) - reference_f64(*x)) / term_scale(x)


def observed_ratio(n_tokens: int, h: int, top_k: int) -> tuple[float, tuple[int, int], int]:
    """Largest |kernel order − oracle| / Σ_k|w·y| of the routed sum on fresh inputs; (ratio, element, seed)."""
    seed = fresh_seed()
    ratio = error_ratio(make_inputs(n_tokens, h, top_k, residual=False, shared=False, seed=seed))
    i = int(np.argmax(ratio))
    return float(ratio.flat[i]), divmod(i, h), seed


def check_bound(answer: Any) -> Verdict:
    """A function top_k -> γ with |float32 routed sum − exact| ≤ γ·Σ|w·y|: it must hold on fresh inputs and on
    inputs whose every rounding goes the same way, and be at most twice γ_K (a bound that loose says little)."""
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
        worst = float(error_ratio(worst_inputs(top_k))[0, 0])
        if not gamma >= worst:
            return failed(f"at top_k = {top_k} your bound is {gamma / U:.3g}·u, below an error that happens: "
                          f"lesson01.worst_inputs({top_k}) makes every rounding of the sum go down, and its float32 sum "
                          "is off by more than that times Σ|w·y|. Count the roundings on the first term's path.")
        if gamma > 2 * bound_solution(top_k):
            return failed(f"at top_k = {top_k} your bound {gamma / U:.3g}·u holds but is more than twice the worst case: "
                          "count only the roundings on one term's path (its product, then each addition after it).")
    return passed("holds on fresh inputs and on inputs whose every rounding goes down, at every size tried, and is "
                  "within 2× of γ_K = K·u/(1 − K·u).")


# ------------------------------------------------------------------ the roofline

ROOF_CARD, ROOF_TOKENS, ROOF_DTYPE = "H200", 4096, "bfloat16"
ROOF_H, ROOF_K = 2048, 8


def intensity(dtype: str, top_k: int = ROOF_K) -> float:
    """flop/byte of the lesson's call (h = ROOF_H, n_tokens = ROOF_TOKENS, residual on, gates in float32)."""
    return flops(ROOF_TOKENS, top_k, ROOF_H) / bytes_moved(ROOF_TOKENS, top_k, ROOF_H, dtype, gate_dtype="float32")


def attainable_fraction(dtype: str, card: str) -> float:
    """The roofline's attainable throughput, min(peak, intensity × bandwidth), as a fraction of the float32 peak."""
    peak, bandwidth = DATASHEET_PEAKS[card]
    return min(peak, intensity(dtype) * bandwidth) / peak


def roofline_solution() -> float:
    """The fraction of the H200's float32 peak the combine can reach at best: intensity × bandwidth / peak."""
    return attainable_fraction(ROOF_DTYPE, ROOF_CARD)


def check_roofline(answer: Any) -> Verdict:
    """A fraction within 1% of intensity × bandwidth / peak; names the slips it matches."""
    right, (peak, bandwidth) = roofline_solution(), DATASHEET_PEAKS[ROOF_CARD]
    slips = {"float32 activations (4 bytes each)": attainable_fraction("float32", ROOF_CARD),
             "the H100 SXM's bandwidth": attainable_fraction(ROOF_DTYPE, "H100 SXM"),
             "peak over attainable, the inverse": 1 / right,
             "the intensity at top_k = 10": intensity(ROOF_DTYPE, 10) * bandwidth / peak}
    return check_fraction(answer, "my_fraction", right, slips,
                          f"{right:.2%} of the float32 peak: {intensity(ROOF_DTYPE):.3f} flop/byte × "
                          f"{bandwidth / 1e12:g} TB/s = {right * peak / 1e12:.2f} TFLOP/s; the rest of the arithmetic "
                          "units wait on memory.",
                          "Below the balance point the roof is the memory line: bandwidth × intensity.")
