"""Lesson 04's exercises: the bytes fusion saves, the fused kernel's launch, and its row reduction (simd_sum,
threadgroup memory, the barrier) written by the learner and run inside the real shader. Kernel answers run on
the host backend when it is present, whose runner reports a barrier not every thread reaches and an index past
a threadgroup array's end."""
from __future__ import annotations

from typing import Any, NamedTuple

import msl_host
import numpy as np

from ..arrays import to_numpy
from ..backends import make_kernel, read_source
from ..check import tolerance
from ..dtypes import ITEMSIZE
from ..inputs import CombineArgs, make_fused_inputs
from ..kernels import FUSED_FILE, FUSED_INPUTS, FUSED_OUTPUTS, LaunchConfig, build_fused, fused_config, fused_dispatch
from ..models import MODELS
from ..reference import reference_combine_rmsnorm_f64
from ..traffic import bytes_fused, bytes_two_step
from ..validate import validate_rmsnorm
from .harness import LEARNER_ERRORS, NAN, checking_backend, error_message, fault_message, fresh_seed
from .lesson02 import TODO, as_launch
from .verdict import Verdict, check_fraction, code_answer, failed, passed, unattempted

EPS = 1e-6


class FusedCase(NamedTuple):
    """One size a fused-kernel answer is run at (the residual is always there)."""

    n_tokens: int
    h: int
    top_k: int
    shared: bool
    dtype: str = "float32"

    def describe(self, threads: int | None = None) -> str:
        """The size in words, with the threadgroup it runs in."""
        text = (f"n_tokens={self.n_tokens}, h={self.h}, top_k={self.top_k}, shared expert "
                f"{'on' if self.shared else 'off'}, {self.dtype}")
        return text if threads is None else f"{text}, {threads} threads = {threads // 32} SIMD groups per threadgroup"

    def inputs(self, seed: int) -> Any:
        """Fresh inputs of this size as MLX arrays (FusedArgs)."""
        return make_fused_inputs(self.n_tokens, self.h, self.top_k, shared=self.shared, seed=seed).mlx(self.dtype)


# ------------------------------------------------------------------ the share of bytes fusion saves

SAVED_MODEL, SAVED_TOKENS, SAVED_DTYPE = "Qwen3-Next-80B-A3B", 4096, "bfloat16"


def saved_fraction(top_k: int, shared: bool, hidden_written_too: bool = False) -> float:
    """(two-step bytes − fused bytes) / two-step bytes at the question's size (gates float32); with
    hidden_written_too, the slip of counting hidden's write as saved as well as its read."""
    m = MODELS[SAVED_MODEL]
    two = bytes_two_step(SAVED_TOKENS, top_k, m.h, SAVED_DTYPE, "float32", shared)
    saved = two - bytes_fused(SAVED_TOKENS, top_k, m.h, SAVED_DTYPE, "float32", shared)
    return (2 if hidden_written_too else 1) * saved / two


def saved_solution() -> float:
    """The share of the two-step's bytes a fused call saves: 1 − traffic.bytes_fused / traffic.bytes_two_step."""
    m = MODELS[SAVED_MODEL]
    return saved_fraction(m.top_k, m.gated_shared)


def check_saved(answer: Any) -> Verdict:
    """A fraction within 1% of the saved share; names the slips it matches."""
    m, right = MODELS[SAVED_MODEL], saved_solution()
    slips = {"the write of hidden counted as saved too: the fused kernel still writes hidden (the residual stream "
             "goes on to the next layer); only reading it back disappears": saved_fraction(m.top_k, True, True),
             "the shared expert left out (this model has one)": saved_fraction(m.top_k, False),
             "top_k taken as 8 (this model routes each token to 10 experts)": saved_fraction(8, m.gated_shared),
             "what the fused call still moves, not what it saves": 1 - right}
    return check_fraction(answer, "my_saved", right, slips,
                          f"{right:.2%}: the two-step reads hidden back, one row of h activations per token, out of "
                          f"the {m.top_k} expert rows, y_shared, residual, hidden written, hidden read and normed "
                          "written (plus the gates and the weight).",
                          "Count the rows of h activations each version moves per token; the fused kernel skips one.")


# ------------------------------------------------------------------ the launch

GRID_CASE = FusedCase(3, 4096, 8, True, "bfloat16")


def grid_solution() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """One threadgroup per token of h / W threads (W = 8 bfloat16 elements per 16-byte access), in threads."""
    c = GRID_CASE
    config = fused_config(validate_rmsnorm(*c.inputs(0), EPS), EPS)
    return config.grid, config.threadgroup


def fused_outputs_verdict(hidden: np.ndarray, normed: np.ndarray, args: Any, case: FusedCase,
                          config: LaunchConfig, seed: int) -> Verdict | None:
    """None when both outputs match the float64 oracle, else a verdict naming the first wrong element, the thread
    (of the launch `config`) that makes it, and, for normed with hidden right, what the row's scale came out as."""
    ref_h, ref_n = reference_combine_rmsnorm_f64(*args, EPS)
    threads, w = config.threadgroup[0], dict(config.template)["W"]
    where = f"at {case.describe(threads)} (make_fused_inputs seed {seed}): "
    for name, out, ref in (("hidden", hidden, ref_h), ("normed", normed, ref_n)):
        rms = np.sqrt(np.mean(ref * ref, axis=1, keepdims=True))
        wrong = np.isnan(out) | (np.abs(out - ref) > 8 * tolerance(case.dtype) * rms)
        if not wrong.any():
            continue
        t, col = divmod(int(np.argmax(wrong)), out.shape[1])
        tid = (col // w) % threads
        maker = f"thread {tid} of threadgroup {t} (SIMD group {tid // 32}) makes it"
        count = f"{int(wrong.sum())} of {out.size} {name} values are wrong"
        if np.isnan(out[t, col]):
            return failed(f"{where}{name}[{t}, {col}] is NaN ({maker}); {count}. {nan_reason(name)}")
        text = f"{where}{name}[{t}, {col}]: expected {ref[t, col]:.6g}, got {out[t, col]:.6g} ({maker}); {count}."
        if name == "normed":
            ratio = row_ratio(out[t], ref[t])
            same = np.allclose(ratio, np.median(ratio), rtol=1e-2)
            text += (f" hidden is right, so the row's scale is off: got/expected = {np.median(ratio):.4g}, "
                     + ("the same along the whole row (every thread has the same wrong total). " if same else
                        "varying along the row (the threads disagree on total). ") + SCALE_HINT)
        return failed(text)
    return None


def row_ratio(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """got/expected along one row, where the expected value is not near 0 (there the ratio is rounding noise)."""
    big = np.abs(ref) > 0.1 * np.sqrt(np.mean(ref * ref))
    return out[big] / ref[big]


SCALE_HINT = "total must be the sum of sumsq over every thread of the threadgroup, the same value in each thread."


def nan_reason(name: str) -> str:
    """Why an output came out NaN, for each output."""
    if name == "hidden":
        return ("It was never written: it still holds the NaN put there before the run. Threadgroup t makes token t, "
                "and needs enough threads to reach every piece of the row.")
    return ("hidden is right, so the row's total is NaN: a thread added a slot of threadgroup memory nobody had written "
            "(the host runner fills threadgroup memory with NaN when a threadgroup starts). Either it read partial[g] "
            "before SIMD group g wrote it (a threadgroup_barrier between the writes and the reads makes every thread "
            "wait for every write), or a slot no SIMD group writes (there are simdgroups_per_threadgroup of them).")


def run_fused(kernel: Any, case: FusedCase, grid: tuple | None = None,
              threadgroup: tuple | None = None) -> tuple[Verdict | None, int]:
    """One call of a fused kernel object at a case on poisoned outputs, with the default launch or the one
    given (its template's ITERS set for that threadgroup): (None if right else a verdict, the threads run)."""
    seed = fresh_seed()
    args = case.inputs(seed)
    p = validate_rmsnorm(*args, EPS)
    config = fused_config(p, EPS, threadgroup[0] if threadgroup else None)
    config = config._replace(grid=grid or config.grid, threadgroup=threadgroup or config.threadgroup)
    hidden, normed = fused_dispatch(kernel, config, p, CombineArgs(*args[:5]), args.weight, NAN)
    return (fused_outputs_verdict(to_numpy(hidden), to_numpy(normed), args, case, config, seed),
            config.threadgroup[0])


LAUNCH_HINT = ("Threadgroup t of the grid makes token t: a grid of more than n_tokens threadgroups starts threadgroups "
               "with no token to make.")


def check_grid(answer: Any) -> Verdict:
    """Check a (grid, threadgroup) for the fused kernel at GRID_CASE: runs the package's kernel with it."""
    if answer is None:
        return unattempted("set my_launch to ((x, y, z), (x, y, z)).")
    launch, error = as_launch(answer)
    if error:
        return failed(error)
    grid, group = launch
    c = GRID_CASE
    right_grid, right_group = grid_solution()
    pieces = c.h // (16 // ITEMSIZE[c.dtype])
    try:
        verdict, threads = run_fused(build_fused(checking_backend()), c, grid, group)
    except msl_host.KernelFault as fault:
        return fault_message(fault, c, LAUNCH_HINT)
    except ValueError as e:
        return failed(str(e))
    if verdict is not None:
        return failed(f"{verdict.message} Your grid {grid} starts {grid[0] * grid[1] * grid[2]} threads in "
                      f"threadgroups of {group[0]}; MLX counts the grid in threads.")
    if group != right_group:
        per = -(-pieces // threads)
        what = (f"{threads - pieces} of its {threads} threads have no piece of the row" if threads > pieces else
                f"each thread makes {per} accesses, not one")
        return failed(f"every output is right, but in a threadgroup of {threads} threads {what}: in {c.dtype} a "
                      f"16-byte access holds {16 // ITEMSIZE[c.dtype]} elements, so a row of {c.h} has {pieces} pieces.")
    if grid != right_grid:
        return failed(f"every output is right, but the grid {grid} is not {c.n_tokens} threadgroups of {threads} "
                      "threads laid along x.")
    return passed(f"{c.n_tokens} threadgroups of {threads} threads ({threads // 32} SIMD groups), one 16-byte access per "
                  f"thread: every output right at {c.describe()}.")


# ------------------------------------------------------------------ the row reduction

REDUCE_START = "threadgroup float partial[32];\n"
REDUCE_END = "const float scale ="
# Sizes with one SIMD group (h = 1) and several, W = 1, 4 and 8, one and several passes (ITERS), both flags.
REDUCE_CASES = (FusedCase(3, 1000, 8, False), FusedCase(1, 1, 1, True), FusedCase(1, 4099, 10, True),
                FusedCase(3, 2048, 8, True, "bfloat16"))
REDUCE_HINTS = {
    "divergent barrier": "Every thread of a threadgroup must reach the same threadgroup_barrier: call it where all "
                         "threads pass, not inside an `if` only some threads enter.",
    "partial": "partial holds one slot per SIMD group: lane 0 of SIMD group g writes partial[g] "
               "(simdgroup_index_in_threadgroup), not a slot per thread.",
}


def fused_source() -> str:
    """The fused kernel body in shaders/."""
    return read_source(FUSED_FILE)


def reduce_parts() -> tuple[str, str, str]:
    """The fused body split around its row reduction: (before, the reduction, after)."""
    src = fused_source()
    start, end = src.index(REDUCE_START), src.index(REDUCE_END)
    return src[:start], src[start:end], src[end:]


def reduce_starter() -> str:
    """The reduction left to write, with what the code around it provides."""
    return ("// Each thread holds `sumsq`, the sum of squares of its own values of row t.\n"
            "// Make `float total`, the sum of sumsq over every thread of the threadgroup,\n"
            "// in every thread. At hand: simd_sum(x), thread_index_in_simdgroup,\n"
            "// simdgroup_index_in_threadgroup, simdgroups_per_threadgroup,\n"
            "// `threadgroup float name[N];`, threadgroup_barrier(mem_flags::mem_threadgroup).\n"
            f"{TODO}: write the reduction.\n")


def reduce_solution() -> str:
    """The reduction in shaders/moe_combine_rmsnorm.metal."""
    return reduce_parts()[1]


def check_reduce(answer: Any) -> Verdict:
    """Check a row reduction spliced into the fused body, at every REDUCE_CASES size against the oracle."""
    not_code = code_answer(answer, reduce_starter(), "only the TODO line is there: write the reduction.",
                           "the reduction's code")
    if not_code:
        return not_code
    before, _, after = reduce_parts()
    backend = checking_backend()
    try:
        kernel = make_kernel("your_kernel", before + answer + after, FUSED_INPUTS, backend, FUSED_OUTPUTS,
                             source_name="your answer")
        threads = []
        for case in REDUCE_CASES:
            try:
                verdict, n = run_fused(kernel, case)
            except msl_host.KernelFault as fault:
                return fault_message(fault, case, REDUCE_HINTS.get("partial" if fault.buffer == "partial"
                                                                   else fault.kind, ""))
            if verdict is not None:
                return verdict
            threads.append(n)
    except LEARNER_ERRORS as e:
        return error_message(e)
    groups = sorted({n // 32 for n in threads})
    return passed(f"hidden and normed match the float64 oracle at {len(REDUCE_CASES)} sizes (h "
                  f"{', '.join(str(c.h) for c in REDUCE_CASES)}; {', '.join(str(g) for g in groups)} SIMD groups per "
                  f"threadgroup; float32 and bfloat16) on the {backend} backend, outputs poisoned, fresh inputs.")
