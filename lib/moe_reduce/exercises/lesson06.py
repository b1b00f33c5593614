"""Lesson 06's exercises, checked against the committed model_bench GPU run (model_results.newest_runs, chosen by
its metadata) and lesson 05's host cost per op (model_results.host_cost): Amdahl's bound on what the combine
can save of a decode step's GPU time, and the decode-step saving predicted from op counts."""
from __future__ import annotations

import math
from typing import Any

from .. import model_results
from ..model_results import HostCost, ModelRun
from .verdict import Verdict, failed, passed, unattempted

MODEL, DTYPE = "Qwen1.5-MoE-A2.7B", "bfloat16"  # the timed model with a gated shared expert
TOLERANCE = 0.02  # relative: an answer this close to the right value passes


def committed_run() -> ModelRun | None:
    """The first newest committed run with GPU times (newest_runs sorts them by GPU name), or None."""
    return next((r for r in model_results.newest_runs() if r.has_gpu_times), None)


def run_to_check(answer: Any, ask: str, shape_error: str | None) -> tuple[ModelRun | None, Verdict | None]:
    """(the committed GPU run, None), or (None, the verdict when the answer is still None, is not of the asked
    shape (`shape_error`, checked before any run is read) or there is no run)."""
    if answer is None:
        return None, unattempted(ask)
    if shape_error:
        return None, failed(shape_error)
    run = committed_run()
    if run is None:
        return None, failed("no committed GPU run of `python -m moe_reduce.model_bench` under results/ "
                            "(a folder *-model whose meta.json names a GPU): this exercise reads one.")
    return run, None


def decode(run: ModelRun, variant: str) -> dict:
    """The run's decode row of MODEL in DTYPE for one variant."""
    return run.one("steps", model=MODEL, dtype=DTYPE, case="decode", variant=variant)


def part(run: ModelRun, variant: str, name: str) -> dict:
    """The run's components row of MODEL in DTYPE at one token for one variant and part."""
    return run.one("components", model=MODEL, dtype=DTYPE, n_tokens=1, variant=variant, part=name)


def close(answer: float, right: float) -> bool:
    """Whether an answer is within TOLERANCE of the right value (relative)."""
    return abs(answer - right) <= TOLERANCE * abs(right)


def number(answer: Any) -> bool:
    """Whether an answer is a real number (a bool is none)."""
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)


def slip_named(answer: float, right: float, slips: dict[str, float]) -> str | None:
    """The first slip whose value the answer matches (slips that give the right value are not named)."""
    return next((what for what, value in slips.items() if not close(value, right) and close(answer, value)), None)


# ------------------------------------------------------------------ Amdahl: the most the combine can save

def bound_solution(run: ModelRun | None = None) -> float:
    """The combine's share of the unpatched decode step's GPU time: layers × one combine / the step."""
    run = committed_run() if run is None else run
    step = decode(run, "unpatched")
    return step["layers"] * part(run, "unpatched", "combine")["gpu_us"] / step["gpu_us"]


def check_bound(answer: Any) -> Verdict:
    """A fraction: layers × the combine's GPU µs at one token / the unpatched decode step's GPU µs."""
    fraction = number(answer) and answer >= 0
    shape_error = None if fraction else f"expected a fraction (a number from 0 to 1), got {answer!r}"
    run, verdict = run_to_check(answer, "set my_bound to a fraction of the decode step's GPU time (0.1 for 10%).",
                                shape_error)
    if verdict:
        return verdict
    right, step = bound_solution(run), decode(run, "unpatched")
    combine, block = part(run, "unpatched", "combine")["gpu_us"], part(run, "unpatched", "moe_block")["gpu_us"]
    slips = {"one layer's combine (the step runs it once per layer)": combine / step["gpu_us"],
             "the combine's share of its MoE block, not of the step": combine / block,
             "the step's wall time instead of its GPU time": step["layers"] * combine / step["wall_us"],
             "a percentage: the question asks for a fraction": 100 * right,
             "the speed-up bound 1 / (1 - p) instead of the share p": 1 / (1 - right)}
    if close(answer, right):
        saved = 1 - decode(run, "patched")["gpu_us"] / step["gpu_us"]
        return passed(f"{step['layers']} layers × {combine:.2f} µs of {step['gpu_us']:.1f} µs: the combine is "
                      f"{right:.1%} of the decode step's GPU time ({run.gpu}, {DTYPE}), so no combine kernel can "
                      f"save more. Patched, the step's GPU time changed by {-saved:+.1%}.")
    slip = slip_named(answer, right, slips)
    if slip:
        return failed(f"{answer:g} is what you get with {slip}.")
    return failed(f"{answer:g} is {100 * (answer - right) / right:+.0f}% off. The share is the combine's GPU time "
                  "in all layers of one step over the step's GPU time (the unpatched rows).")


# ------------------------------------------------------------------ the decode step's saving from op counts

def saving_solution(run: ModelRun | None = None, cost: HostCost | None = None) -> tuple[float, float]:
    """(low, high) µs per decode step: ops the patch removes from one step × the host cost per op's range."""
    run = committed_run() if run is None else run
    cost = model_results.host_cost() if cost is None else cost
    fewer = decode(run, "unpatched")["ops"] - decode(run, "patched")["ops"]
    return fewer * cost.low_us, fewer * cost.high_us


def check_saving(answer: Any, cost: HostCost | None = None) -> Verdict:
    """A (low, high) pair of µs per decode step: the ops patching removes × the per-op host cost's range."""
    pair = isinstance(answer, (tuple, list)) and len(answer) == 2 and all(number(a) for a in answer)
    run, verdict = run_to_check(answer, "set my_saving to (low, high), in µs per decode step.",
                                None if pair else f"expected a pair (low, high) of µs, got {answer!r}")
    if verdict:
        return verdict
    cost = model_results.host_cost() if cost is None else cost
    right = saving_solution(run, cost)
    if close(answer[1], right[0]) and close(answer[0], right[1]):
        return failed("the right numbers in the wrong order: low first, then high.")
    if close(answer[0], right[0]) and close(answer[1], right[1]):
        un, pa = decode(run, "unpatched"), decode(run, "patched")
        wall, gpu = un["wall_us"] - pa["wall_us"], un["gpu_us"] - pa["gpu_us"]
        where = "inside" if right[0] <= wall <= right[1] else ("below" if wall < right[0] else "above")
        return passed(f"{un['ops'] - pa['ops']} fewer ops × {cost.low_us:g}–{cost.high_us:g} µs = "
                      f"{right[0]:.0f}–{right[1]:.0f} µs per step. Measured ({run.gpu}, {DTYPE}): the wall time "
                      f"per step fell by {wall:.0f} µs ({un['wall_us']:.0f} → {pa['wall_us']:.0f}), {where} the "
                      f"prediction; the GPU time by {gpu:.0f} µs. Host cost from {cost.source}.")
    fewer, layers = decode(run, "unpatched")["ops"] - decode(run, "patched")["ops"], decode(run, "unpatched")["layers"]
    fused = decode(run, "unpatched")["ops"] - decode(run, "fused")["ops"]
    slips = {"the ops of one layer (the step has several)": fewer / layers,
             "the fuse_norm variant's ops (the question is about patch_mlx_lm without it)": fused,
             "ms, not µs": fewer / 1e3, "seconds, not µs": fewer / 1e6}
    for end, (value, per_op) in enumerate(zip(answer, (cost.low_us, cost.high_us))):
        slip = slip_named(value, right[end], {what: ops * per_op for what, ops in slips.items()})
        if slip:
            return failed(f"{value:g} µs is what you get with {slip}.")
    return failed(f"({answer[0]:g}, {answer[1]:g}) is not ({right[0]:.0f}, {right[1]:.0f}) within "
                  f"{TOLERANCE:.0%}. Count the ops of one whole decode step (the steps table's ops column), "
                  f"unpatched minus patched, and multiply by each end of the host cost ({cost.low_us:g}–"
                  f"{cost.high_us:g} µs per op).")
