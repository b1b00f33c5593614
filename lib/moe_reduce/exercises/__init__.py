"""Exercises ("Your turn") for the lessons. In a notebook:

    from moe_reduce import exercises
    passed = exercises.check("sigmoid", my_sigmoid)   # prints a verdict, returns whether it passed
    exercises.hint("sigmoid")                 # a nudge, short of the solution
    exercises.solution("sigmoid")             # the reference solution, only when asked for

An answer still equal to its placeholder (None, or the starter text untouched) is reported as not attempted
yet, and nothing raises, so the committed notebooks run green with every exercise unattempted."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from . import harness, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from .hints import HINTS
from .verdict import Verdict


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it sits, what it asks, its starter (the placeholder answer), its checker, its solution."""

    name: str
    lesson: str
    after: str  # the section of the lesson it practises
    task: str
    checker: Callable[[Any], Verdict]
    solution: Callable[[], Any]
    starter: Callable[[], Any] = lambda: None


EXERCISES = {e.name: e for e in [
    Exercise("log_sigmoid", "01", "5. The sigmoid's numerics", "write log σ(x), right for |x| up to 1000",
             lesson01.check_log_sigmoid, lambda: lesson01.log_sigmoid_solution),
    Exercise("bytes_per_call", "01", "7. Bytes, flops, and why the op is memory-bound",
             f"bytes one call moves for {lesson01.BYTES_MODEL} at n_tokens = {lesson01.BYTES_TOKENS}, "
             f"{lesson01.BYTES_DTYPE} activations", lesson01.check_bytes, lesson01.bytes_solution),
    Exercise("error_bound", "01", "4. The float64 oracle, and the kernel's float32 order",
             "bound the float32 rounding error of the routed sum, as a function of top_k",
             lesson01.check_bound, lambda: lesson01.bound_solution),
    Exercise("roofline", "01", "6. Bytes, flops, and why the op is memory-bound",
             f"the fraction of the {lesson01.ROOF_CARD}'s float32 peak the combine can reach at n_tokens = "
             f"{lesson01.ROOF_TOKENS}, {lesson01.ROOF_DTYPE} activations", lesson01.check_roofline,
             lesson01.roofline_solution),
    Exercise("scalar_body", "02", "1. The kernel source", "write the scalar kernel body from the formula",
             lesson02.body_checker(lesson02.scalar_body_starter, "scalar", harness.SCALAR_CASES, whole_blocks=True,
                                   fault_hint=lesson02.BODY_HINT),
             lambda: lesson02.kernel_source("scalar"), lesson02.scalar_body_starter),
    Exercise("residual_flag", "02", "1. The kernel source", "add the optional residual term (HAS_RESIDUAL)",
             lesson02.check_residual, lambda: lesson02.RESIDUAL, lesson02.residual_starter),
    Exercise("fix_two_lines", "02", "5. Which thread touches which data",
             "put back the line a CUDA launch needs and fix the expert row a thread reads",
             lesson02.body_checker(lesson02.two_bugs_starter, "scalar", harness.SCALAR_CASES, whole_blocks=True,
                                   fault_hint=lesson02.GUARD_HINT),
             lambda: lesson02.kernel_source("scalar"), lesson02.two_bugs_starter),
    Exercise("fix_launch", "02", "4. Threads vs threadgroups", "fix a launch ported from a grid counted in threadgroups",
             lesson02.check_launch, lambda: lesson02.launch_solution, lambda: lesson02.launch_starter),
    Exercise("vec_tail", "02", "8. The vectorised variant", "write the unaligned tail of the vectorised kernel",
             lesson02.check_vec_tail, lesson02.vec_tail_solution, lesson02.vec_tail_starter),
    Exercise("no_shared", "02", "10. No shared expert",
             "predict the fraction of a bandwidth-bound call's time saved without the shared expert",
             lesson02.check_shared, lesson02.shared_solution),
    Exercise("choose_grid", "02", "8. The vectorised variant",
             f"choose grid and threadgroup for vec at {lesson02.GRID_CASE.describe()}",
             lesson02.check_grid, lesson02.grid_solution),
    Exercise("predict_time", "03", "Explore", f"predict {lesson03.IMPL}'s time on the {lesson03.GPU} at n_tokens = "
             f"{lesson03.PREDICT_TOKENS} from its measured ceiling", lesson03.check_predict, lesson03.predict_solution),
    Exercise("fixed_cost", "03", "Explore", "find the n_tokens from which the bytes cost more than a call's fixed part",
             lesson03.check_crossover, lesson03.crossover_solution),
    Exercise("top_k_time", "03", "3. Who reaches memory speed",
             f"predict kernel_auto's GPU time at top_k = {lesson03.TOPK_TO} from its time at top_k = {lesson03.TOPK_FROM}",
             lesson03.check_top_k, lesson03.top_k_solution),
    Exercise("fused_bytes", "04", "1. Why fuse",
             f"the fraction of the two-step's bytes one fused call saves for {lesson04.SAVED_MODEL} at n_tokens = "
             f"{lesson04.SAVED_TOKENS}, {lesson04.SAVED_DTYPE} activations", lesson04.check_saved,
             lesson04.saved_solution),
    Exercise("fused_launch", "04", "2. The kernel",
             f"launch the fused kernel at {lesson04.GRID_CASE.describe()}: one threadgroup per token",
             lesson04.check_grid, lesson04.grid_solution),
    Exercise("row_reduce", "04", "3. Checks against the oracle",
             "write the row reduction (simd_sum, threadgroup memory, the barrier)",
             lesson04.check_reduce, lesson04.reduce_solution, lesson04.reduce_starter),
    Exercise("chained_wall", "05", "3. Host cost per call",
             f"predict µs per call of 64 chained one-token calls ({lesson05.DTYPE}, {lesson05.KERNEL}) from host cost "
             "and GPU time", lesson05.check_wall, lesson05.wall_solution),
    Exercise("batch_cost", "05", "1. The timer",
             "predict wall − GPU per call with 50-ms batches from the 10-ms row, if it is paid once per batch "
             f"({', '.join(map(str, lesson05.BATCH_CASE))} tokens)", lesson05.check_batch, lesson05.batch_solution),
    Exercise("below_fixed", "05", "4. GPU time at small n",
             f"predict from bytes which of n_tokens {lesson05.BELOW_TOKENS} stay below the one-token GPU time",
             lesson05.check_below, lesson05.below_solution),
    Exercise("little_turn", "05", "8. A model of GPU time per call",
             f"predict, by Little's law, the n_tokens where a {lesson05.TURN_DTYPE} call's reads reach bandwidth × "
             "latency", lesson05.check_turn, lesson05.turn_solution),
    Exercise("amdahl_bound", "06", "4. Amdahl's law",
             f"the most the combine can save of a decode step's GPU time ({lesson06.MODEL}, {lesson06.DTYPE})",
             lesson06.check_bound, lesson06.bound_solution),
    Exercise("decode_saving", "06", "5. Ops and the host's cost per op",
             f"predict the wall time patching saves per decode step from op counts ({lesson06.MODEL}, "
             f"{lesson06.DTYPE})", lesson06.check_saving, lesson06.saving_solution),
]}


def get(name: str) -> Exercise:
    """The exercise of that name, or a KeyError listing them."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are {sorted(EXERCISES)}")
    return EXERCISES[name]


def verdict(name: str, answer: Any) -> Verdict:
    """The checker's verdict on an answer, without printing it."""
    return get(name).checker(answer)


def check(name: str, answer: Any) -> bool:
    """Check an answer: print the verdict and return whether it passed (False while unattempted)."""
    v = verdict(name, answer)
    print(v.text(name))
    return v.passed


def starter(name: str) -> Any:
    """The placeholder answer a lesson starts from (a kernel body, a function, or None)."""
    return get(name).starter()


def hint(name: str) -> str:
    """Print a nudge for an exercise, short of its solution, and return it."""
    text = HINTS[get(name).name]
    print(text)
    return text


def solution(name: str) -> Any:
    """Print the reference solution (a kernel body, a function's source, or how a value is computed and the
    value) and return it."""
    solve = get(name).solution
    answer = solve()
    if isinstance(answer, str):
        print(answer)
    elif callable(answer):
        print(inspect.getsource(answer))
    else:
        print(f"{inspect.getsource(solve)}\n→ {answer!r}")
    return answer
