"""Running a learner's kernel body the way the package runs its own (backends.make_kernel, kernels.launch_config),
on NaN-poisoned outputs and fresh random inputs, against the float64 oracle; and turning what goes wrong into
a verdict: which size, which output element, expected vs got, which thread should have written it."""
from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import msl_host
import numpy as np

from ..arrays import to_numpy
from ..backends import available_backends, make_kernel, pick_backend
from ..check import rel_error, tolerance
from ..diagrams import thread_cells
from ..inputs import CombineArgs, make_inputs
from ..kernels import INPUT_NAMES, dispatch, get_variant, launch_config
from ..reference import reference_f64, sigmoid
from ..validate import validate
from .verdict import Verdict, failed, passed

NAN = float("nan")
ABSENT = 1e30  # fills the inputs a call does not have: a kernel that reads one anyway makes outputs near 1e30
LEARNER_ERRORS = (msl_host.HostCompileError, msl_host.UnsupportedKernelError, RuntimeError, ValueError)


class Case(NamedTuple):
    """One size a kernel answer is run at."""

    n_tokens: int
    h: int
    top_k: int
    residual: bool
    shared: bool
    dtype: str = "float32"

    def describe(self) -> str:
        """The size in words, as a verdict quotes it."""
        return (f"n_tokens={self.n_tokens}, h={self.h}, top_k={self.top_k}, residual {'on' if self.residual else 'off'}, "
                f"shared expert {'on' if self.shared else 'off'}, {self.dtype}")


# The awkward sizes of the suite (h 1, 255, 257, 1000; n_tokens 1, 3; top_k 1, 8, 10), each flag on and off.
SCALAR_CASES = (Case(1, 1, 1, True, True), Case(3, 255, 8, False, True), Case(3, 257, 10, True, False),
                Case(1, 1000, 8, True, True), Case(3, 1000, 1, False, False))
# The vector body's unaligned branch runs when h is not a multiple of W (4 in float32, 8 in bfloat16).
VEC_TAIL_CASES = (Case(3, 255, 8, True, True), Case(1, 257, 10, False, False), Case(3, 257, 1, True, True, "bfloat16"))


def sizes_summary(cases: tuple[Case, ...]) -> str:
    """The sizes of a list of cases in a few words."""
    values = lambda f: ", ".join(str(v) for v in sorted({getattr(c, f) for c in cases}))  # noqa: E731
    onoff = lambda f: " and ".join(sorted({"on" if getattr(c, f) else "off" for c in cases}, reverse=True))  # noqa: E731
    return (f"{len(cases)} sizes (n_tokens {values('n_tokens')}; h {values('h')}; top_k {values('top_k')}; "
            f"{values('dtype')}; residual {onoff('residual')}; shared expert {onoff('shared')})")


def checking_backend() -> str:
    """The host backend when present (its bounds checker reports out-of-bounds accesses), else the best GPU one."""
    return "host" if "host" in available_backends() else pick_backend()


def fresh_seed() -> int:
    """A new random seed for each run: fresh inputs every time an answer is checked."""
    return int(np.random.SeedSequence().entropy % 2**32)


def thread_rule(w: int, h: int) -> str:
    """The kernel's thread → output map in words."""
    if w == 1:
        return f"scalar: thread i makes out[i // H, i % H], H = {h}"
    groups = -(-h // w)
    return f"vec: thread i makes out[t, h0 .. h0+{w - 1}], t = i // G, h0 = (i % G)·{w}, G = ceil(H/{w}) = {groups}"


def writer_thread(case: Case, w: int, t: int, col: int) -> int:
    """The thread that writes out[t, col] (diagrams.thread_cells' map)."""
    return next(th["i"] for th in thread_cells(case.n_tokens, case.top_k, case.h, w) if (t, col) in th["writes"])


def absent_inputs(case: Case, dtype: mx.Dtype) -> CombineArgs:
    """Full-size stand-ins, filled with ABSENT, for the inputs this case does not have."""
    rows = np.full((case.n_tokens, case.h), ABSENT, np.float32)
    gate = mx.array(np.full((case.n_tokens,), ABSENT, np.float32))
    return CombineArgs(None, None, gate, mx.array(rows).astype(dtype), mx.array(rows).astype(dtype))


def run_case(kernel: Any, variant: str, case: Case, seed: int, grid: tuple | None = None,
             threadgroup: tuple | None = None) -> tuple[CombineArgs, np.ndarray]:
    """One call of a kernel object on poisoned outputs; (the inputs as run, out in float64)."""
    args = make_inputs(case.n_tokens, case.h, case.top_k, residual=case.residual, shared=case.shared,
                       seed=seed).mlx(case.dtype)
    p = validate(*args)
    config = launch_config(variant, p)
    config = config._replace(grid=grid or config.grid, threadgroup=threadgroup or config.threadgroup)
    # Absent inputs go in as ABSENT-filled stand-ins, not dispatch's placeholders: a kernel reading one is caught.
    stand_in = absent_inputs(case, args.y_expert.dtype)
    filled = CombineArgs(*(a if a is not None else s for a, s in zip(args, stand_in)))
    return args, to_numpy(dispatch(kernel, config, p, filled, NAN))


def term_scale(args: CombineArgs) -> np.ndarray:
    """Per output, the size of its terms, Σ_k|w·y| + |σ(s)·y_shared| + |residual|: a correct kernel's rounding
    error is a small multiple of the dtype's epsilon times this, even where the terms cancel."""
    w, y = to_numpy(args.expert_w), to_numpy(args.y_expert)
    t, k = w.shape
    scale = np.abs(w[:, :, None] * y.reshape(t, k, -1)).sum(axis=1)
    if args.y_shared is not None:
        scale += np.abs(sigmoid(to_numpy(args.sh_logit))[:, None] * to_numpy(args.y_shared))
    return scale if args.residual is None else scale + np.abs(to_numpy(args.residual))


def compare(out: np.ndarray, args: CombineArgs, case: Case, seed: int, w: int) -> Verdict | None:
    """None when every output is within 2·tolerance(dtype) of the size of its terms from the oracle, else a
    verdict naming the first wrong element, expected vs got, and the thread that should have written it."""
    ref = reference_f64(*args)
    wrong = np.isnan(out) | (np.abs(out - ref) > 2 * tolerance(case.dtype) * term_scale(args))
    if not wrong.any():
        return None
    t, col = divmod(int(np.argmax(wrong)), out.shape[1])
    got, want = out[t, col], ref[t, col]
    where = (f"at {case.describe()} (inputs: make_inputs({case.n_tokens}, {case.h}, {case.top_k}, "
             f"residual={case.residual}, shared={case.shared}, seed={seed})): ")
    if np.isnan(got):
        what = f"out[{t}, {col}] was never written: it still holds the NaN put there before the run"
    elif abs(got) > ABSENT / 10:
        missing = [n for n, on in (("sh_logit and y_shared", case.shared), ("residual", case.residual)) if not on]
        what = (f"out[{t}, {col}] = {got:.3g}: your kernel read {' or '.join(missing)}, absent from this call (the "
                f"checker filled absent inputs with {ABSENT:.0e}); read an optional input only when its flag is true")
    else:
        what = f"out[{t}, {col}]: expected {want:.6g}, got {got:.6g}"
    return failed(f"{where}{what}. Thread {writer_thread(case, w, t, col)} should write it ({thread_rule(w, case.h)}). "
                  f"{int(wrong.sum())} of {out.size} outputs are wrong; ‖out − ref‖/‖ref‖ = {rel_error(out, ref):.3g}.")


def fault_message(fault: msl_host.KernelFault, case: Any, hint: str) -> Verdict:
    """A learner-readable verdict from the host runner's report (msl_host.KernelFault: kernel, kind, message,
    buffer, index, size, thread, threadgroup) at a case (anything with describe()): an access out of bounds in
    the learner's words; anything else (a divergent barrier, an inactive lane, a misaligned pointer) in the
    runner's own sentence, which names the threads."""
    if fault.kind != "out of bounds" or fault.buffer is None:
        return failed(f"at {case.describe()}: {fault.message}. {hint}")
    where = f"in thread {tuple(fault.thread)} (threadgroup {tuple(fault.threadgroup)})" if fault.thread else ""
    side = "before its start" if fault.index < 0 else f"past its end ({fault.size} element{'s' * (fault.size != 1)})"
    return failed(f"at {case.describe()}: your kernel accessed `{fault.buffer}` at element {fault.index}, {side}, "
                  f"{where}. {hint}")


def error_message(e: Exception) -> Verdict:
    """A verdict from a compile error or a refusal, keeping the first lines of the compiler's messages."""
    lines = str(e).splitlines()
    kind = "does not compile" if isinstance(e, msl_host.HostCompileError) else "could not run"
    return failed(f"your body {kind}:\n" + "\n".join(lines[:14]) + ("\n…" if len(lines) > 14 else ""))


def check_body(source: str, variant: str, cases: tuple[Case, ...], *, whole_blocks: bool = False,
               fault_hint: str = "", backend: str | None = None) -> Verdict:
    """Run a learner's body at every case (the launch of `variant`) against the oracle. whole_blocks: also launch
    the grid rounded up to whole threadgroups of 256, as CUDA launches blocks (host backend only: its bounds
    checker turns an access past a buffer's end into a report; on a GPU it would be undefined behaviour)."""
    backend = backend or checking_backend()
    kernel = make_kernel("your_kernel", source, INPUT_NAMES, backend, source_name="your answer")
    blocks_checked = whole_blocks and backend == "host"
    for case in cases:
        w = get_variant(variant).outputs_per_thread(case.dtype)
        grids = [None]
        if blocks_checked:
            n = case.n_tokens * -(-case.h // w)
            grids.append((-(-n // 256) * 256, 1, 1))
        for grid in grids:
            seed = fresh_seed()
            try:
                args, out = run_case(kernel, variant, case, seed, grid, (256, 1, 1) if grid else None)
            except msl_host.KernelFault as fault:
                return fault_message(fault, case, fault_hint)
            except LEARNER_ERRORS as e:
                return error_message(e)
            verdict = compare(out, args, case, seed, w)
            if verdict is not None:
                return verdict
    sizes = sizes_summary(cases)
    extra = ""
    if whole_blocks:
        extra = (" Also launched in whole threadgroups of 256 threads, as CUDA does: no access out of bounds."
                 if blocks_checked else
                 f" The launch in whole threadgroups (CUDA's way) was not run: on the {backend} backend nothing "
                 "would report an access out of bounds.")
    return passed(f"matches the float64 oracle at {sizes} on the {backend} backend, every output written, fresh "
                  f"random inputs each run.{extra}")
