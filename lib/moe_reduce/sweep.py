"""The benchmark sweep: which sizes, how much memory each processor may use, and the driver that checks
every implementation against the oracle, times it and collects the rows of a Run (results.py)."""
from __future__ import annotations

import dataclasses
import datetime
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import mlx.core as mx
from tqdm import tqdm

from .ceiling import best, empty_gpu_us, empty_kernel_us, floor_label, gbps, traffic_ceilings
from .check import rel_error, tolerance, worst
from .gputime import chained_gpu_time
from .contender import Impl
from .dtypes import KERNEL_DTYPES
from .impls import kernel_backend, torch_support
from .machine import cpu_name, datasheet, device_label, gpu_name, llc_bytes, versions
from .ops import GATE_DTYPE, OPS
from .results import Row, Run
from .timing import GPU_TIMER, QUICK_TIMER, TimerConfig, chained, time_fn

GiB, MB = 1 << 30, 10**6
DEFAULT_DTYPES = ("float32", "bfloat16")  # swept unless --dtypes says otherwise (any of KERNEL_DTYPES may be)
GPU_TIME_CALLS = 64  # chained calls profiled for the GPU time of one row


@dataclass(frozen=True)
class Budget:
    """Memory sizes for one processor: input rotation, per-size limit, the traffic kernels' array size."""

    rotation_bytes: int  # input sets rotate until their bytes pass this (≈ 4× the last-level cache)
    max_sets: int
    size_limit: int  # a size whose float32 bytes_moved passes this is skipped
    ceiling_bytes: int  # array size of the traffic kernels that set the ceiling


GPU_BUDGET = Budget(200 * MB, 4096, 4 * GiB, 1 * GiB)


def cpu_budget(quick: bool) -> Budget:
    """CPU budget: rotation over 4× the last-level cache (capped), smaller still in quick mode."""
    if quick:
        return Budget(16 << 20, 64, 64 << 20, 64 << 20)
    return Budget(min(4 * llc_bytes(), 256 << 20), 256, 2 * GiB, 256 << 20)


@dataclass(frozen=True, order=True)
class Size:
    """One problem shape."""

    n_tokens: int
    h: int
    top_k: int


def pow2(lo: int, hi: int, step: int = 1) -> tuple[int, ...]:
    """Powers of two from lo to hi inclusive, every `step`-th exponent."""
    return tuple(2**e for e in range(int(math.log2(lo)), int(math.log2(hi)) + 1, step))


# Which implementations run at a size, by the size's role in the plan.
ROLES = {
    "all": lambda name: True,  # n_tokens at the first top_k, and the h sweep
    "fast": lambda name: name.startswith(("kernel_", "triton")),  # n_tokens at the other top_ks: ours and Triton
    "heat": lambda name: name == "kernel_auto",  # the n_tokens × h grid: the kernel as launched by default
}


def runs_at(role: str, impl: str) -> bool:
    """Whether an implementation is timed at a size of this role."""
    return ROLES[role](impl)


@dataclass(frozen=True)
class Plan:
    """The sweeps: n_tokens at fixed h (every impl at the first top_k, ours and Triton at the others), h at fixed
    n_tokens (every impl), and an n_tokens × h grid (the kernel with its default launch)."""

    tokens: tuple[int, ...] = pow2(1, 16384)
    tokens_h: int = 2048
    top_ks: tuple[int, ...] = (8, 10)
    hiddens: tuple[int, ...] = pow2(256, 16384)
    hiddens_tokens: int = 1024
    heat_tokens: tuple[int, ...] = pow2(1, 16384, 2)
    heat_hiddens: tuple[int, ...] = pow2(256, 16384)
    heat_top_k: int = 8
    sweeps: tuple[str, ...] = ("tokens", "hidden", "heatmap")

    def sizes(self) -> dict[Size, str]:
        """Every size to time, mapped to its role (see ROLES)."""
        out: dict[Size, str] = {}
        if "heatmap" in self.sweeps:
            out.update({Size(t, h, self.heat_top_k): "heat" for t in self.heat_tokens for h in self.heat_hiddens})
        if "tokens" in self.sweeps:
            out.update({Size(t, self.tokens_h, k): "all" if k == self.top_ks[0] else "fast"
                        for t in self.tokens for k in self.top_ks})
        if "hidden" in self.sweeps:
            out.update({Size(self.hiddens_tokens, h, self.top_ks[0]): "all" for h in self.hiddens})
        return dict(sorted(out.items()))


QUICK_PLAN = Plan(tokens=(1, 4, 16, 64, 256), top_ks=(8,), hiddens=(256, 1024, 4096), hiddens_tokens=64,
                  heat_tokens=(1, 4), heat_hiddens=(256, 2048))


@dataclass
class Settings:
    """Everything a sweep needs besides the implementations."""

    plan: Plan
    dtypes: tuple[str, ...]
    timer: TimerConfig
    budgets: dict[str, Budget]  # by processor
    residual: bool = True
    progress: bool = True
    shared: bool = True
    op: str = "combine"  # a key of ops.OPS


def default_settings(quick: bool, dtypes: Sequence[str] = DEFAULT_DTYPES, sweeps: Sequence[str] = Plan.sweeps,
                     residual: bool = True, progress: bool = True, shared: bool = True,
                     graph_calls: int | None = None, op: str = "combine") -> Settings:
    """Full or quick plan (restricted to `sweeps`), timer and budgets for this machine; ValueError naming a bad
    sweep, dtype or graph_calls. The fused op (which always has the residual) is swept at its first top_k and
    without the heatmap."""
    for name, given, allowed in (("sweeps", sweeps, Plan.sweeps), ("dtypes", dtypes, KERNEL_DTYPES)):
        unknown = sorted(set(given) - set(allowed))
        if unknown or not given:
            raise ValueError(f"{name}: expected one or more of {list(allowed)}, got {unknown or list(given)}")
    if graph_calls is not None and graph_calls < 1:
        raise ValueError(f"graph_calls: expected an integer >= 1, got {graph_calls}")
    if op not in OPS:
        raise ValueError(f"op: expected one of {list(OPS)}, got {op!r}")
    plan = dataclasses.replace(QUICK_PLAN if quick else Plan(), sweeps=tuple(sweeps))
    if op == "fused":  # full sweep: every other power of two, as each size compiles torch.compile's two steps afresh
        step = 1 if quick else 2  # quick: every size, so that the host path (n_tokens·h <= 8192) has two n_tokens
        plan = dataclasses.replace(plan, tokens=plan.tokens[::step], hiddens=plan.hiddens[::step],
                                   top_ks=plan.top_ks[:1], sweeps=tuple(w for w in sweeps if w != "heatmap"))
        residual = True
    budgets = {"gpu": GPU_BUDGET, "cpu": cpu_budget(quick)}
    timer = QUICK_TIMER if quick else GPU_TIMER if kernel_backend() in ("cuda", "metal") else TimerConfig()
    if graph_calls is not None:
        timer = dataclasses.replace(timer, graph_calls=graph_calls)
    return Settings(plan, tuple(dtypes), timer, budgets, residual, progress, shared, op)


def problem_bytes(n_tokens: int, h: int, top_k: int, dtype: str, residual: bool, shared: bool = True,
                  op: str = "combine") -> int:
    """Bytes one call of an op must move (with the float32 gate inputs used here)."""
    return OPS[op].bytes(n_tokens, h, top_k, dtype, residual, shared)


def n_sets(nbytes: int, budget: Budget) -> int:
    """Input sets to rotate so that their bytes pass the budget's rotation size (at least 1)."""
    return max(1, min(budget.max_sets, math.ceil(budget.rotation_bytes / nbytes)))


class SizeCase:
    """One size of an op in one dtype: inputs drawn once, the oracle computed once, input sets per family."""

    def __init__(self, size: Size, dtype: str, residual: bool, shared: bool = True, op: str = "combine"):
        self.size, self.dtype, self.residual, self.shared = size, dtype, residual, shared
        self.inputs = OPS[op].inputs(size.n_tokens, size.h, size.top_k, residual, shared)
        self.ref = OPS[op].reference(*self.inputs.mlx(dtype, GATE_DTYPE))
        self.bytes = problem_bytes(size.n_tokens, size.h, size.top_k, dtype, residual, shared, op)
        self._sets: dict[tuple[str, int], list] = {}

    def sets(self, impl: Impl, count: int) -> list:
        """`count` independent copies of the inputs for an impl's family (shared between its impls)."""
        key = (impl.kind, count)
        if key not in self._sets:
            self._sets[key] = [impl.prepare(self.inputs, self.dtype) for _ in range(count)]
        return self._sets[key]


@dataclass(frozen=True)
class Limits:
    """What a processor's rows are compared with: the ceiling (the best rate of the traffic kernels: in GPU time
    where CUPTI measured it, else in wall time) and the datasheet bandwidth."""

    device: str
    ceiling_gbps: float
    datasheet_gbps: float | None = None


def pct(part: float | None, whole: float | None) -> float:
    """100 * part / whole, NaN when either is missing."""
    return math.nan if part is None or not whole else 100 * part / whole


def timed_call(impl: Impl, fn: Callable[..., Any], sets: list) -> tuple[Callable[[int, Any], Any], bool, int, int]:
    """The call the timer makes, whether each call feeds the next, op calls per timer call, and the input sets
    the timer rotates: a chain of calls over the sets (timing.chained), or for a graphed impl replays of one
    CUDA graph that holds the whole chain (its rotation is inside the graph)."""
    if impl.graphed:
        replay, per = torch_support().graph_call(fn, sets)
        return replay, False, per, 1
    call, linked = chained(fn, sets)
    return call, linked, 1, len(sets)


def measure(impl: Impl, fn: Callable[..., Any], case: SizeCase, s: Settings, limits: Limits) -> Row:
    """Check one impl's output against the float64 oracle, then time it (wall, and on a GPU the device time
    per call); AssertionError if it is wrong."""
    count = n_sets(case.bytes, s.budgets[impl.processor])
    sets = case.sets(impl, count)
    out = fn(*sets[0])
    impl.sync([out])
    outs = impl.to_host(out)
    err = worst([rel_error(o, r) for o, r in zip(outs if isinstance(outs, tuple) else (outs,), case.ref)])
    if not err < tolerance(case.dtype):
        raise AssertionError(f"{impl.name} {case.dtype} {case.size}: relative error {err:.2e} "
                             f"is not under {tolerance(case.dtype):.0e}")
    call, linked, per, rotate = timed_call(impl, fn, sets)
    group = s.timer.graph_calls if linked else 1
    t = time_fn(call, impl.sync, rotate, s.timer, flush=impl.flush, group=group)
    g = None
    if impl.processor == "gpu":
        n = max(1, min(t.calls, GPU_TIME_CALLS // per))
        g = chained_gpu_time(call, n, rotate, impl.sync, impl.flush, group, per)
    wall = gbps(case.bytes, t.median / per)
    dev = None if g is None else gbps(case.bytes, g.us * 1e-6)
    sz = case.size
    return Row(limits.device, impl.backend, impl.name, case.dtype, sz.n_tokens, sz.h, sz.top_k, case.residual,
               case.shared, case.bytes, t.median / per * 1e6, t.p20 / per * 1e6, t.p80 / per * 1e6, wall,
               pct(wall, limits.ceiling_gbps), err, t.calls * per, count,
               math.nan if g is None else g.us, math.nan if dev is None else dev,
               pct(dev, limits.ceiling_gbps), pct(dev, limits.datasheet_gbps))


def release_memory() -> None:
    """Hand cached device buffers back between sizes (MLX, and torch when present)."""
    mx.clear_cache()
    support = torch_support()
    if support is not None:
        support.release()


def plan_tasks(s: Settings, impls: dict[str, Impl]) -> tuple[list[tuple[Size, str, list[Impl]]], list[str]]:
    """(size, dtype, impls) to run, and a line for each size skipped as over its memory budget."""
    tasks, skipped = [], []
    for size, role in s.plan.sizes().items():
        f32 = problem_bytes(size.n_tokens, size.h, size.top_k, "float32", s.residual, s.shared, s.op)
        for dtype in s.dtypes:
            chosen = [i for i in impls.values() if dtype in i.dtypes and i.fits(size.n_tokens, size.h)
                      and runs_at(role, i.name)]
            fit = [i for i in chosen if f32 <= s.budgets[i.processor].size_limit]
            if len(fit) < len(chosen):
                over = ", ".join(i.name for i in chosen if i not in fit)
                skipped.append(f"{size} {dtype}: {over}: {f32 / GiB:.2f} GiB of float32 inputs is over the budget")
            if fit:
                tasks.append((size, dtype, fit))
    return tasks, skipped


def measure_limits(s: Settings, processors: list[str], backend: str | None,
                   names: dict[str, str | None]) -> tuple[dict[str, Limits], dict]:
    """Each processor's Limits, and the metadata recording every traffic method's rates."""
    limits, meta = {}, {}
    for p in processors:
        rates = traffic_ceilings(p, s.budgets[p].ceiling_bytes, s.timer, backend)
        sheet = datasheet(names[p]) if p == "gpu" else None
        gpu = best(rates, gpu=True)
        limits[p] = Limits(names[p], gpu or best(rates), sheet[0] if sheet else None)
        meta[p] = {"methods": {k: dataclasses.asdict(v) for k, v in rates.items()},
                   "basis": "gpu time" if gpu else "wall time", "datasheet_source": sheet[1] if sheet else None}
    return limits, meta


def run_sweep(impls: dict[str, Impl], s: Settings, argv: Sequence[str] | None = None) -> Run:
    """Measure the ceilings and the empty kernel, then every (size, dtype, impl) of the plan; returns the Run."""
    started = time.perf_counter()
    backend = kernel_backend()
    names = {"cpu": cpu_name(), "gpu": gpu_name()}
    processors = sorted({i.processor for i in impls.values()})
    limits, methods = measure_limits(s, processors, backend, names)
    floor = empty_kernel_us(backend, s.timer) if backend is not None else None
    floor_plain = empty_kernel_us(backend, s.timer, compiled=False) if backend not in (None, "host") else floor
    empty_gpu = empty_gpu_us(backend)
    tasks, skipped = plan_tasks(s, impls)
    built: dict[tuple[str, str], Callable[..., Any]] = {}
    rows: list[Row] = []
    failures: list[str] = []
    bar = tqdm(tasks, desc="bench", unit="size", disable=not s.progress, file=sys.stderr)
    for size, dtype, chosen in bar:
        bar.set_postfix_str(f"T={size.n_tokens} h={size.h} k={size.top_k} {dtype}")
        case = SizeCase(size, dtype, s.residual, s.shared, s.op)
        for impl in chosen:
            if (impl.name, dtype) not in built:
                built[impl.name, dtype] = impl.build(dtype)
            try:
                rows.append(measure(impl, built[impl.name, dtype], case, s, limits[impl.processor]))
            except AssertionError as e:
                failures.append(str(e))
        del case
        release_memory()
    support, v = torch_support(), versions()
    meta = {
        "device": device_label(), "cpu": names["cpu"], "gpu": names["gpu"],
        "kernel_backend": backend, "mlx_device": str(mx.default_device()),
        "mlx_version": v["mlx"], "torch_version": v["torch"], "triton_version": v["triton"], "python": v["python"],
        "date": datetime.date.today().isoformat(),
        "ceiling_gbps": {p: x.ceiling_gbps for p, x in limits.items()},
        "datasheet_gbps": {p: x.datasheet_gbps for p, x in limits.items()},
        "ceiling_methods": methods,
        "ceiling_bytes": {p: s.budgets[p].ceiling_bytes for p in processors},
        "empty_kernel_us": floor, "empty_kernel_plain_us": floor_plain, "empty_kernel_label": floor_label(backend),
        "empty_gpu_us": empty_gpu,
        "op": s.op, "impls": sorted(impls), "dtypes": list(s.dtypes), "gate_dtype": GATE_DTYPE,
        "residual": s.residual, "shared": s.shared,
        "plan": asdict(s.plan), "timer": asdict(s.timer), "budgets": {p: asdict(b) for p, b in s.budgets.items()},
        "skipped": skipped, "failures": failures,
        "command": " ".join(argv) if argv is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_memory_gb": {"mlx": mx.get_peak_memory() / 1e9, "torch": support.peak_gb() if support else None,
                           "host_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9},
    }
    return Run(rows, meta)
