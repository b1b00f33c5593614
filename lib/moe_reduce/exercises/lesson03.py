"""Lesson 03's exercises, checked against the committed runs in results/ (chosen by the GPU and dtype in their
metadata, not by folder name, so a re-measured run changes the expected answers with it)."""
from __future__ import annotations

from typing import Any

from .. import results
from ..explorer import PRESETS
from ..traffic import bytes_moved
from .verdict import Verdict, failed, passed, unattempted

GPU, IMPL, H, TOP_K = "NVIDIA H200", "kernel_vec_k", 2048, 8
PREDICT_TOKENS = 4096


def committed_run(gpu: str = GPU, dtype: str = "float32") -> results.Run | None:
    """The newest committed run on that GPU holding that dtype, or None."""
    return results.newest(results.load_runs(results.find_results()), gpu, dtype)


def no_run(dtype: str) -> Verdict:
    """The verdict when results/ holds no run to check against."""
    return failed(f"no committed {GPU} run in {dtype} under results/: this exercise reads one (see results/README.md).")


def ceiling_gbps(run: results.Run) -> float:
    """The run's ceiling on its GPU (its best traffic kernel), in GB/s."""
    return run.meta["ceiling_gbps"]["gpu"]


def call_bytes(run: results.Run, n_tokens: int) -> int:
    """Minimum bytes of one call at the exercise's shape, gates in the run's gate dtype."""
    return bytes_moved(n_tokens, TOP_K, H, "float32", residual=True, gate_dtype=run.meta["gate_dtype"])


def measured(run: results.Run, n_tokens: int, impl: str = IMPL) -> results.Row:
    """The run's row of impl at (n_tokens, H, TOP_K) in float32, residual and shared expert on."""
    (row,) = run.select(impl=impl, dtype="float32", n_tokens=n_tokens, h=H, top_k=TOP_K, residual=True, shared=True)
    return row


# ------------------------------------------------------------------ predict a time from the bandwidth

def predict_solution() -> float:
    """µs per call at the run's ceiling: minimum bytes / ceiling."""
    run = committed_run()
    return call_bytes(run, PREDICT_TOKENS) / (ceiling_gbps(run) * 1e9) * 1e6


def check_predict(answer: Any) -> Verdict:
    """A predicted µs per call within 1% of bytes / measured ceiling; then the measured time beside it."""
    if answer is None:
        return unattempted("set my_time_us to your prediction in µs.")
    run = committed_run()
    if run is None:
        return no_run("float32")
    if not isinstance(answer, (int, float)) or answer <= 0:
        return failed(f"expected a positive time in µs, got {answer!r}")
    right, nbytes, ceiling = predict_solution(), call_bytes(run, PREDICT_TOKENS), ceiling_gbps(run)
    datasheet = next(d.gbps for d in PRESETS if d.label.startswith(GPU))
    slips = {f"the datasheet bandwidth ({datasheet:,.0f} GB/s) instead of the measured ceiling": nbytes / datasheet / 1e3,
             "seconds, not µs": right / 1e6, "ms, not µs": right / 1e3,
             "GiB/s (2^30 bytes) for GB/s": nbytes / (ceiling * 2**30) * 1e6,
             "bfloat16 bytes (2 per activation)": bytes_moved(PREDICT_TOKENS, TOP_K, H, "bfloat16", gate_dtype="float32")
             / (ceiling * 1e9) * 1e6}
    if abs(answer - right) <= 0.01 * right:
        row = measured(run, PREDICT_TOKENS)
        return passed(f"{nbytes:,} bytes at {ceiling:,.1f} GB/s ({run.source}, {run.meta['date']}) take {right:.1f} µs. "
                      f"Measured in that run: {row.median_us:.1f} µs per call, {right / row.median_us:.0%} of the "
                      f"speed the ceiling predicts.")
    slip = next((what for what, value in slips.items() if abs(answer - value) <= 0.01 * value), None)
    if slip:
        return failed(f"{answer:g} µs is what you get with {slip}.")
    return failed(f"{answer:g} µs is {100 * (answer - right) / right:+.0f}% off. Bytes: traffic.bytes_moved at this shape "
                  f"({nbytes:,}); bandwidth: the run's ceiling, ceiling_gbps in bench.json (GB/s = 10^9 B/s).")


# ------------------------------------------------------------------ where the fixed cost stops dominating

def crossover_solution() -> int:
    """The smallest swept n_tokens whose bytes, at the ceiling, take longer than the measured one-token call."""
    run = committed_run()
    fixed = measured(run, 1).median_us
    swept = sorted(r.n_tokens for r in run.select(impl=IMPL, dtype="float32", h=H, top_k=TOP_K))
    return next(t for t in swept if call_bytes(run, t) / (ceiling_gbps(run) * 1e3) > fixed)


def check_crossover(answer: Any) -> Verdict:
    """A swept n_tokens: the first whose bytes time at the ceiling passes the one-token call's time."""
    if answer is None:
        return unattempted("set my_n_tokens to a swept n_tokens.")
    run = committed_run()
    if run is None:
        return no_run("float32")
    swept = sorted(r.n_tokens for r in run.select(impl=IMPL, dtype="float32", h=H, top_k=TOP_K))
    if answer not in swept:
        return failed(f"{answer!r} is not a swept n_tokens; the run has {swept}.")
    fixed, right = measured(run, 1).median_us, crossover_solution()
    bytes_us = call_bytes(run, answer) / (ceiling_gbps(run) * 1e3)
    if answer == right:
        return passed(f"at n_tokens = {answer} the bytes take {bytes_us:.1f} µs at the ceiling, more than the "
                      f"{fixed:.1f} µs of a one-token call; the run measured {measured(run, answer).median_us:.1f} µs.")
    if answer < right:
        return failed(f"at n_tokens = {answer} the bytes take only {bytes_us:.2f} µs at {ceiling_gbps(run):,.0f} GB/s, "
                      f"less than the {fixed:.1f} µs a one-token call costs: the fixed part still dominates.")
    before = swept[swept.index(answer) - 1]
    return failed(f"at n_tokens = {before}, the swept size before {answer}, the bytes already take "
                  f"{call_bytes(run, before) / (ceiling_gbps(run) * 1e3):.1f} µs, more than the {fixed:.1f} µs "
                  "of a one-token call.")


# ------------------------------------------------------------------ read a plot

PLOT_TOKENS = 16384


def half_ceiling_solution() -> set[str]:
    """The implementations at or above half the ceiling at PLOT_TOKENS in the committed float32 run."""
    return {r.impl for r in committed_run().select(dtype="float32", n_tokens=PLOT_TOKENS, h=H, top_k=TOP_K)
            if r.pct_of_ceiling >= 50}


def check_half_ceiling(answer: Any) -> Verdict:
    """A set of implementation names, against the run's rows."""
    if answer is None:
        return unattempted("set my_impls to a set of implementation names, e.g. {\"mlx\"}.")
    run = committed_run()
    if run is None:
        return no_run("float32")
    rows = {r.impl: r for r in run.select(dtype="float32", n_tokens=PLOT_TOKENS, h=H, top_k=TOP_K)}
    if isinstance(answer, str) or not all(isinstance(a, str) for a in answer):
        return failed(f"expected a set of implementation names, got {answer!r}")
    unknown = set(answer) - set(rows)
    if unknown:
        return failed(f"not in the figure: {sorted(unknown)}; its implementations are {sorted(rows)}.")
    right = half_ceiling_solution()
    pct = lambda names: ", ".join(f"{n} ({rows[n].pct_of_ceiling:.1f}%)" for n in sorted(names))  # noqa: E731
    if set(answer) == right:
        return passed(f"{pct(right)} of the ceiling at n_tokens = {PLOT_TOKENS}.")
    wrong = [f"missing {pct(right - set(answer))}" if right - set(answer) else "",
             f"under half: {pct(set(answer) - right)}" if set(answer) - right else ""]
    return failed("; ".join(w for w in wrong if w) + f" (n_tokens = {PLOT_TOKENS}, h = {H}, top_k = {TOP_K}).")
