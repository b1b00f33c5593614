"""Lesson 02's exercises: write, complete and fix the combine kernel's Metal body, and launch it. Starters are
made from the shaders in shaders/ (one copy of each body); every answer runs through the package's real path."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..inputs import make_inputs
from ..kernels import build, get_variant, kernel_source, launch_config
from ..validate import validate
from .harness import (SCALAR_CASES, VEC_TAIL_CASES, Case, check_body, checking_backend, compare, fresh_seed, run_case,
                      sizes_summary)
from .verdict import Verdict, call_learner, code_answer, failed, passed, unattempted

TODO = "// TODO"
GUARD = """if (t >= uint(expert_w_shape[0])) {
    return;  // CUDA launches whole blocks; Metal never starts these threads
}
"""
RESIDUAL = """if (HAS_RESIDUAL) {
    acc += float(residual[out_idx]);
}
"""
ROW_INDEX = "const int64_t y_idx = int64_t(t) * K * H + h;"
WRONG_ROW_INDEX = "const int64_t y_idx = int64_t(t) * H + h;"
TAIL_START = "} else {  // rows not vector-aligned (H not a multiple of W): one element at a time\n"
GUARD_HINT = ("Count the threads this launch starts against the outputs there are: what must a thread with no output "
              "to make do, and before touching what?")
BODY_HINT = ("The checker also launches whole threadgroups of 256, as CUDA does: a thread whose index is past the last "
             "output must not touch memory.")
TAIL_HINT = "The last thread of a row has only H − h0 outputs left, fewer than W: make only those."


def replaced(text: str, old: str, new: str) -> str:
    """text with its one occurrence of old replaced (an error if a shader no longer has it)."""
    if text.count(old) != 1:
        raise RuntimeError(f"the shader changed: expected one occurrence of {old!r}")
    return text.replace(old, new)


def scalar_body_starter() -> str:
    """The scalar shader's comment block (the spec) and a TODO where the body goes."""
    lines = kernel_source("scalar").splitlines(keepends=True)
    spec = "".join(line for line in lines[: next(i for i, ln in enumerate(lines) if not ln.startswith("//"))])
    return spec + f"{TODO}: write the body: the indices, the guard, the sum over k, the optional terms, the store.\n"


def residual_starter() -> str:
    """The residual term left to write: only its lines, so that the rest of the body (the guard, the offsets) is not
    printed above the exercises that ask for them."""
    return f"{TODO}: add residual[t, h] to acc when the template flag HAS_RESIDUAL is true.\n"


def check_residual(answer: Any) -> Verdict:
    """Check the residual term's lines, run in the scalar body where it adds the residual."""
    not_code = code_answer(answer, residual_starter(),
                           "the term still holds only its TODO line: write it and run the cell again.",
                           "the residual term's code")
    return not_code or check_body(replaced(kernel_source("scalar"), RESIDUAL, answer.rstrip("\n") + "\n"), "scalar",
                                  SCALAR_CASES)


def guard_starter() -> str:
    """The scalar body with its guard removed (a planted bug)."""
    return replaced(kernel_source("scalar"), GUARD, "")


def two_bugs_starter() -> str:
    """The scalar body with its guard removed and reading expert row t instead of t·K + k (two planted bugs, in
    one exercise, so that no starter shows another's answer)."""
    return replaced(guard_starter(), ROW_INDEX, WRONG_ROW_INDEX)


def vec_parts() -> tuple[str, str]:
    """The vectorised body split at its unaligned branch: (everything up to the branch's opening, its body)."""
    src = kernel_source("vec")
    head_end = src.index(TAIL_START) + len(TAIL_START)
    return src[:head_end], src[head_end: src.rindex("}")]


def vec_tail_starter() -> str:
    """The unaligned branch left to write."""
    return f"    {TODO}: make this thread's outputs h0, h0+1, ... that exist (at most W), one element at a time.\n"


def vec_tail_solution() -> str:
    """The unaligned branch of shaders/moe_weighted_reduce_vec.metal."""
    return vec_parts()[1]


def check_vec_tail(answer: Any) -> Verdict:
    """Check the body of the unaligned branch, run inside the rest of the vectorised kernel."""
    not_code = code_answer(answer, vec_tail_starter(),
                           "the branch still holds only its TODO line: write it and run the cell again.",
                           "the branch's code")
    return not_code or check_body(vec_parts()[0] + answer + "}\n", "vec", VEC_TAIL_CASES, fault_hint=TAIL_HINT)


def body_checker(starter: Callable[[], str], variant: str, cases: tuple[Case, ...], **options: Any) -> Callable:
    """A checker for a kernel-body answer: unattempted while it is the starter, else run at every case."""

    def check(answer: Any) -> Verdict:
        """Check a kernel body (a string)."""
        not_code = code_answer(answer, starter(), "this is still the starter body: edit it and run the cell again.",
                               "the kernel body")
        return not_code or check_body(answer, variant, cases, **options)

    return check


# ------------------------------------------------------------------ launching: grids counted in threads

LAUNCH_CASES = (Case(3, 1000, 8, True, True), Case(1, 255, 10, False, True), Case(3, 257, 1, True, False))
GRID_CASE = Case(3, 1000, 8, True, True, "bfloat16")


def launch_starter(n_tokens: int, h: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The ported launch with the planted bug: the grid counted in threadgroups of 256, as mlx-native does."""
    n = n_tokens * h
    return (-(-n // 256), 1, 1), (256, 1, 1)


def launch_solution(n_tokens: int, h: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """MLX counts the grid in threads: one per output, in threadgroups of 256 (fewer if there are fewer outputs)."""
    n = n_tokens * h
    return (n, 1, 1), (min(256, n), 1, 1)


def as_launch(launch: Any) -> tuple[tuple | None, str | None]:
    """(grid, threadgroup) as two tuples of three Python ints, from tuples or lists of ints or NumPy integers; or
    (None, why not)."""
    shape = f"expected (grid, threadgroup), two tuples of three positive ints, got {launch!r}"
    if not (isinstance(launch, (tuple, list)) and len(launch) == 2
            and all(isinstance(g, (tuple, list)) and len(g) == 3 for g in launch)):
        return None, shape
    bad = [v for g in launch for v in g if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        return None, f"{shape}: {bad[0]!r} is a {type(bad[0]).__name__}, not an int"
    grid, group = (tuple(int(v) for v in g) for g in launch)
    if min(grid + group) < 1:
        return None, f"{shape}: every count must be at least 1"
    size = group[0] * group[1] * group[2]
    if size > 1024:
        return None, f"a threadgroup holds at most 1024 threads, yours has {size}"
    return (grid, group), None


def run_launch(variant: str, case: Case, launch: tuple) -> Verdict | None:
    """Run the package's kernel with a learner's grid on poisoned outputs: None if every output is right and
    the grid is not wasteful, else a verdict."""
    grid, group = launch
    w = get_variant(variant).outputs_per_thread(case.dtype)
    needed = case.n_tokens * -(-case.h // w)
    started = grid[0] * grid[1] * grid[2]
    seed = fresh_seed()
    args, out = run_case(build(variant, checking_backend()), variant, case, seed, grid, group)
    verdict = compare(out, args, case, seed, w)
    if verdict is not None:
        return failed(f"{verdict.message} Your grid {grid} starts {started} threads; MLX counts the grid in threads, "
                      f"and this kernel needs one per {f'{w} outputs' if w > 1 else 'output'}: {needed}.")
    if started > needed:
        return failed(f"at {case.describe()} every output is right, but your grid {grid} starts {started} threads for "
                      f"{needed} that make outputs ({w} each): the other {started - needed} start only to return at "
                      "the guard. MLX's grid need not be a multiple of the threadgroup: the last one is cut short.")
    return None


def launch_verdict(variant: str, case: Case, launch: Any) -> Verdict | None:
    """None if a launch has MLX's shape and runs the package's kernel right and not wastefully, else a verdict."""
    launch, error = as_launch(launch)
    return failed(error) if error else run_launch(variant, case, launch)


def check_launch(answer: Any) -> Verdict:
    """Check a fixed launch function (n_tokens, h) -> (grid, threadgroup) on the scalar kernel."""
    if answer is None:
        return unattempted("pass your launch function, e.g. check(\"fix_launch\", my_launch).")
    results = []
    for case in LAUNCH_CASES:
        launch, error = call_learner(answer, case.n_tokens, case.h)
        if error:
            return error
        results.append(launch)
    if results == [launch_starter(c.n_tokens, c.h) for c in LAUNCH_CASES]:
        return unattempted("the starter's launch (grid ceil(n/256)) came back; fix it and run the cell.")
    for case, launch in zip(LAUNCH_CASES, results):
        verdict = launch_verdict("scalar", case, launch)
        if verdict is not None:
            return verdict
    return passed(f"every output of the scalar kernel is written, by no more threads than it needs, at "
                  f"{sizes_summary(LAUNCH_CASES)}.")


def check_grid(answer: Any) -> Verdict:
    """Check a (grid, threadgroup) for the vec kernel at GRID_CASE."""
    if answer is None:
        return unattempted("set my_grid to (grid, threadgroup), e.g. ((1, 1, 1), (256, 1, 1)).")
    return launch_verdict("vec", GRID_CASE, answer) or passed(f"the vec kernel writes every output at {GRID_CASE.describe()}, one thread per "
                             f"{get_variant('vec').outputs_per_thread(GRID_CASE.dtype)} outputs.")


def grid_solution() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The vec launch at GRID_CASE, as kernels.launch_config makes it: n_tokens · ceil(h / W) threads."""
    c = GRID_CASE
    config = launch_config("vec", validate(*make_inputs(c.n_tokens, c.h, c.top_k).mlx(c.dtype)))
    return config.grid, config.threadgroup


# ------------------------------------------------------------------ predict what dropping the shared expert saves

SHARED_CASE = dict(n_tokens=4096, top_k=8, h=2048, dtype="float32", gate_dtype="float32")


def shared_solution() -> float:
    """Fraction of a bandwidth-bound call's time saved without the shared expert: the fraction of bytes it saves."""
    from ..traffic import bytes_moved
    return 1 - bytes_moved(**SHARED_CASE, shared=False) / bytes_moved(**SHARED_CASE)


def check_shared(answer: Any) -> Verdict:
    """A fraction of time saved, within 1% of the bytes saved; the usual slips named."""
    if answer is None:
        return unattempted("set my_saving to the fraction of time saved, e.g. 0.25.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not 0 < answer < 100:
        return failed(f"expected a fraction between 0 and 1, got {answer!r}")
    right, k = shared_solution(), SHARED_CASE["top_k"]
    if abs(answer - right) <= 0.01 * right:
        return passed(f"{right:.1%}: y_shared is one row of the K + 3 = {k + 3} rows a token moves (K expert rows, "
                      f"y_shared, residual, out), and sh_logit one of its {k + 1} gate values. Lesson 03's appendix "
                      "shows what an H200 measured.")
    slips = {"the fraction of time kept, not saved": 1 - right, "a percentage, not a fraction": 100 * right,
             "one row of K + 2 (the write of out left out)": 1 / (k + 2), "one row of K (only the expert rows)": 1 / k,
             "one row of K + 1": 1 / (k + 1)}
    slip = next((what for what, value in slips.items() if abs(answer - value) <= 0.01 * value), None)
    if slip:
        return failed(f"{answer:g} is what you get with {slip}.")
    return failed(f"{answer:g} is {100 * (answer - right) / right:+.0f}% off. Count the rows each token reads and "
                  "writes with and without the shared expert (lesson 01's bytes).")
