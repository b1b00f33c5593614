"""Lesson 03's exercises, checked against the committed runs in results/ (chosen by the GPU and dtype in their
metadata, not by folder name, so a re-measured run changes the expected answers with it). Bytes, predicted and
measured times come from moe_reduce.explorer, as the lesson's explorer shows them."""
from __future__ import annotations

from typing import Any

from .. import explorer, probes, results
from .verdict import Verdict, failed, passed, unattempted

GPU, VARIANT, H, TOP_K = "NVIDIA H200", "vec_k", 2048, 8
IMPL = f"kernel_{VARIANT}"
PREDICT_TOKENS = 4096
H100_DATE = "2026-11-27"  # the H100's one run of every contender (its wall times predate the fixed timer)


def is_full_run(run: results.Run) -> bool:
    """Whether a run is one that notebook 03 reads: every contender (MLX's ops among them), and on the H200 timed
    with the fixed timer; on the H100 the run of H100_DATE."""
    if "mlx" not in run.meta["impls"] or run.meta.get("op", "combine") != "combine":
        return False
    if "H100" in (run.meta.get("gpu") or ""):
        return run.meta["date"] == H100_DATE
    return probes.fixed_timer(run)


def committed_run() -> results.Run | None:
    """The committed float32 run on GPU that notebook 03 prints (is_full_run), or None."""
    runs = [r for r in results.load_runs(results.find_results()) if is_full_run(r)]
    return results.newest(runs, GPU, "float32")


def choice(n_tokens: int, dtype: str = "float32") -> explorer.Choice:
    """The exercise's call at n_tokens: h = H, top_k = TOP_K, residual and shared expert on, the VARIANT kernel."""
    return explorer.Choice(n_tokens=n_tokens, h=H, top_k=TOP_K, dtype=dtype, residual=True, shared=True,
                           variant=VARIANT)


def device(run: results.Run) -> explorer.Device:
    """The run's GPU at its measured ceiling."""
    return explorer.run_device(run, GPU)


def measured(run: results.Run, n_tokens: int) -> results.Row | None:
    """The run's row of IMPL at the exercise's call at n_tokens, or None."""
    return explorer.measured(choice(n_tokens), device(run))


def bytes_us(run: results.Run, n_tokens: int) -> float:
    """µs the call's minimum bytes take at the run's ceiling."""
    return explorer.predicted_us(choice(n_tokens), device(run))


def swept(run: results.Run) -> list[int]:
    """The n_tokens the run measured IMPL at (float32, h = H, top_k = TOP_K), ascending."""
    return sorted(r.n_tokens for r in run.select(impl=IMPL, dtype="float32", h=H, top_k=TOP_K))


def run_to_check(answer: Any, ask: str) -> tuple[results.Run | None, Verdict | None]:
    """(the committed run, None), or (None, the verdict when the answer is still None or there is no run)."""
    if answer is None:
        return None, unattempted(ask)
    run = committed_run()
    if run is None:
        return None, failed(f"no committed {GPU} run in float32 under results/: this exercise reads one (see "
                            "results/README.md).")
    return run, None


# ------------------------------------------------------------------ predict a time from the bandwidth

def predict_solution(run: results.Run | None = None) -> float:
    """µs per call at the run's ceiling: minimum bytes / ceiling."""
    return bytes_us(committed_run() if run is None else run, PREDICT_TOKENS)


def check_predict(answer: Any) -> Verdict:
    """A predicted µs per call within 1% of bytes / measured ceiling; then the measured time beside it."""
    run, verdict = run_to_check(answer, "set my_time_us to your prediction in µs.")
    if verdict:
        return verdict
    if not isinstance(answer, (int, float)) or answer <= 0:
        return failed(f"expected a positive time in µs, got {answer!r}")
    right, nbytes, ceiling = predict_solution(run), explorer.call_bytes(choice(PREDICT_TOKENS)), device(run).gbps
    datasheet = next(d for d in explorer.PRESETS if d.label.startswith(GPU))
    slips = {f"the datasheet bandwidth ({datasheet.gbps:,.0f} GB/s) instead of the measured ceiling":
             explorer.predicted_us(choice(PREDICT_TOKENS), datasheet),
             "seconds, not µs": right / 1e6, "ms, not µs": right / 1e3,
             "GiB/s (2^30 bytes) for GB/s": nbytes / (ceiling * 2**30) * 1e6,
             "bfloat16 bytes (2 per activation)": explorer.predicted_us(choice(PREDICT_TOKENS, "bfloat16"), device(run))}
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

def crossover_solution(run: results.Run | None = None) -> int:
    """The smallest swept n_tokens whose bytes, at the ceiling, take longer than the measured one-token call."""
    run = committed_run() if run is None else run
    fixed = measured(run, 1).median_us
    return next(t for t in swept(run) if bytes_us(run, t) > fixed)


def check_crossover(answer: Any) -> Verdict:
    """A swept n_tokens: the first whose bytes time at the ceiling passes the one-token call's time."""
    run, verdict = run_to_check(answer, "set my_n_tokens to a swept n_tokens.")
    if verdict:
        return verdict
    tokens = swept(run)
    if answer not in tokens:
        return failed(f"{answer!r} is not a swept n_tokens; the run has {tokens}.")
    fixed, right = measured(run, 1).median_us, crossover_solution(run)
    if answer == right:
        return passed(f"at n_tokens = {answer} the bytes take {bytes_us(run, answer):.1f} µs at the ceiling, more than "
                      f"the {fixed:.1f} µs of a one-token call; the run measured {measured(run, answer).median_us:.1f} µs.")
    if answer < right:
        return failed(f"at n_tokens = {answer} the bytes take only {bytes_us(run, answer):.2f} µs at "
                      f"{device(run).gbps:,.0f} GB/s, less than the {fixed:.1f} µs a one-token call costs: the fixed "
                      "part still dominates.")
    before = tokens[tokens.index(answer) - 1]
    return failed(f"at n_tokens = {before}, the swept size before {answer}, the bytes already take "
                  f"{bytes_us(run, before):.1f} µs, more than the {fixed:.1f} µs of a one-token call.")


# ------------------------------------------------------------------ predict a time at another top_k

TOPK_TOKENS, TOPK_FROM, TOPK_TO = 16384, 8, 10


def auto_row(run: results.Run, top_k: int) -> results.Row:
    """The run's kernel_auto float32 row at TOPK_TOKENS, h = H and top_k."""
    (row,) = run.select(impl="kernel_auto", dtype="float32", n_tokens=TOPK_TOKENS, h=H, top_k=top_k)
    return row


def top_k_solution(run: results.Run | None = None) -> float:
    """The measured GPU µs at TOPK_FROM scaled by the bytes' ratio: the same rate at TOPK_TO."""
    run = committed_run() if run is None else run
    return auto_row(run, TOPK_FROM).gpu_us * auto_row(run, TOPK_TO).bytes / auto_row(run, TOPK_FROM).bytes


def check_top_k(answer: Any) -> Verdict:
    """A GPU time within 1% of the bytes-scaled one; then the time the run measured."""
    run, verdict = run_to_check(answer, "set my_gpu_us to your prediction in µs.")
    if verdict:
        return verdict
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer <= 0:
        return failed(f"expected a positive time in µs, got {answer!r}")
    right, base, row = top_k_solution(run), auto_row(run, TOPK_FROM).gpu_us, auto_row(run, TOPK_TO)
    if abs(answer - right) <= 0.01 * right:
        return passed(f"{base:.1f} µs × {row.bytes:,} / {auto_row(run, TOPK_FROM).bytes:,} bytes = {right:.1f} µs. "
                      f"The run measured {row.gpu_us:.1f} µs ({100 * (row.gpu_us - right) / right:+.1f}%).")
    slips = {f"the ratio of top_k ({TOPK_TO}/{TOPK_FROM}) instead of the bytes'": base * TOPK_TO / TOPK_FROM,
             "the bytes at the ceiling, not the measured rate": row.bytes / device(run).gbps / 1e3,
             "the rows K + 1 per token (residual or out left out)": base * (TOPK_TO + 1) / (TOPK_FROM + 1),
             "the measured time at top_k = 8 unchanged": base}
    slip = next((what for what, value in slips.items() if abs(answer - value) <= 0.005 * value), None)
    if slip:
        return failed(f"{answer:g} µs is what you get with {slip}.")
    return failed(f"{answer:g} µs is {100 * (answer - right) / right:+.0f}% off. Same rate means time ∝ bytes: count "
                  "the bytes at both top_k (traffic.bytes_moved, float32 gate inputs).")
