"""Honest timing of the combine step: batched calls, warm-up, rotating inputs, a correctness check before
any clock starts, and a copy-bandwidth ceiling measured on the same device in the same run."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import itertools
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np
from tqdm import tqdm

from .check import rel_error, tolerance
from .inputs import MoEInputs, make_inputs
from .reference import mlx_combine, mlx_combine_compiled, reference_f64, reference_kernel_order
from .traffic import bytes_moved

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
CSV_NAME, JSON_NAME = "bench.csv", "bench.json"
GATE_DTYPE = "float32"  # router weights and gate logits stay float32 (MoEInputs.mlx's default)
HOST_MAX_OUTPUTS = 8192  # the host kernel path runs thread by thread: only n_tokens·h up to this, quick mode only
GiB, MB = 1 << 30, 10**6


# ---------------------------------------------------------------- timer


@dataclass(frozen=True)
class TimerConfig:
    """How one measurement is taken."""

    warmup: int = 3  # extra calls after one untimed pass over every input set
    repeats: int = 15  # timed batches (fewer once max_s is spent, never under min_repeats)
    min_repeats: int = 3
    batch_s: float = 0.02  # a batch holds enough calls to last about this long
    max_calls: int = 4096
    max_s: float = 3.0
    graph_calls: int = 64  # MLX calls recorded into one graph before it is handed to the device (1: one per call)


QUICK_TIMER = TimerConfig(warmup=2, repeats=5, batch_s=0.005, max_s=0.3)


@dataclass(frozen=True)
class Timing:
    """Per-call seconds: median and 20th/80th percentiles over batches, and the batch length used."""

    median: float
    p20: float
    p80: float
    calls: int
    samples: tuple[float, ...]

    @classmethod
    def from_samples(cls, per_call: Sequence[float], calls: int) -> Timing:
        """Summarise per-call times, one per timed batch."""
        p20, med, p80 = np.percentile(per_call, [20, 50, 80])
        return cls(float(med), float(p20), float(p80), calls, tuple(per_call))


def time_calls(call: Callable[[int, Any], Any], sync: Callable[[list], None], n_sets: int = 1,
               cfg: TimerConfig = TimerConfig(), max_batch: int | None = None,
               clock: Callable[[], float] = time.perf_counter,
               flush: Callable[[list], None] | None = None, group: int = 1) -> Timing:
    """Time `call(set_index, previous_output)`: warm up over every set, calibrate the batch size, then time
    batches of calls closed by ONE `sync(outputs)` each; per-call time = batch time / calls.
    Lazy (MLX) calls are handed to the device by `flush([output])` every `group` calls: each call feeds the
    next (see `chained`), so one flush runs `group` dependent calls as one graph, as a model's forward pass does."""
    counter = itertools.count()
    cap = max(1, min(cfg.max_calls, max_batch or cfg.max_calls))

    def batch(calls: int) -> float:
        """Seconds for `calls` calls on rotating input sets and one sync (only the newest output is kept:
        earlier ones are freed as a model frees them, so buffers are reused)."""
        start = clock()
        out = None
        for j in range(1, calls + 1):
            out = call(next(counter) % n_sets, out)
            if flush is not None and (j % group == 0 or j == calls):
                flush([out])
        sync([out])
        return clock() - start

    left = max(n_sets, cfg.warmup)
    while left > 0:
        batch(min(cap, left))
        left -= cap
    calls = 1
    for _ in range(2):  # the first estimate carries a whole sync's overhead; the second is close
        calls = min(cap, max(1, math.ceil(cfg.batch_s * calls / max(batch(calls), 1e-9))))
    per_call: list[float] = []
    spent = 0.0
    while len(per_call) < cfg.repeats and (len(per_call) < cfg.min_repeats or spent < cfg.max_s):
        dt = batch(calls)
        per_call.append(dt / calls)
        spent += dt
    return Timing.from_samples(per_call, calls)


def chained(fn: Callable[..., Any], sets: Sequence[tuple]) -> tuple[Callable[[int, Any], Any], bool]:
    """`call(i, prev)` running fn on input set i with the previous call's output in place of its residual (or,
    without one, its y_shared), as a layer's output feeds the next; and whether such an input exists. A chain
    keeps the device from overlapping calls a model could not overlap. The replaced input is one of the 10-12
    rows read per token; at large sizes the previous output has left the cache long before it is read."""
    slot = 4 if sets[0][4] is not None else 3 if sets[0][3] is not None else None

    def call(i: int, prev: Any) -> Any:
        """fn on set i, fed by prev."""
        args = sets[i]
        if prev is None or slot is None:
            return fn(*args)
        return fn(*args[:slot], prev, *args[slot + 1:])

    return call, slot is not None


def sync_mlx(outs: list) -> None:
    """Evaluate every output of a batch at once and wait for the device."""
    mx.eval(*outs)
    mx.synchronize()


def sync_none(outs: list) -> None:
    """NumPy has finished by the time a call returns."""


# ---------------------------------------------------------------- arithmetic


def gbps(nbytes: int, seconds: float) -> float:
    """Bytes per second in GB/s (10^9)."""
    return nbytes / seconds / 1e9


def problem_bytes(n_tokens: int, h: int, top_k: int, dtype: str, residual: bool, shared: bool = True) -> int:
    """Bytes one call must move (traffic.bytes_moved with the float32 gate inputs used here)."""
    return bytes_moved(n_tokens, top_k, h, dtype, residual, gate_dtype=GATE_DTYPE, shared=shared)


# ---------------------------------------------------------------- implementations


@dataclass(frozen=True)
class Impl:
    """One way to run the op: where it runs, which dtypes it takes, how inputs are made and outputs read."""

    name: str
    processor: str  # 'gpu' or 'cpu': which ceiling and rotation budget apply
    backend: str
    dtypes: tuple[str, ...]
    kind: str  # input family: impls of one kind share input sets
    prepare: Callable[[MoEInputs, str], tuple]  # a fresh copy of one input set in a dtype
    build: Callable[[str], Callable[..., Any]]  # dtype -> the callable (compiled ones are built once per dtype)
    sync: Callable[[list], None]
    flush: Callable[[list], None] | None = None  # hands lazy outputs to the device (MLX: mx.async_eval)
    to_host: Callable[[Any], Any] = lambda out: out
    max_outputs: int | None = None  # largest n_tokens·h it is timed at

    def fits(self, size: Size) -> bool:
        """Whether this impl is timed at a size."""
        return self.max_outputs is None or size.n_tokens * size.h <= self.max_outputs


def mlx_processor() -> str:
    """'gpu' when MLX's default device is a GPU (Metal or CUDA), else 'cpu'."""
    return "gpu" if mx.default_device().type == mx.gpu else "cpu"


def _prepare_mlx(inp: MoEInputs, dtype: str) -> tuple:
    """Fresh MLX arrays (mx.array copies the NumPy data), evaluated."""
    args = inp.mlx(dtype, GATE_DTYPE)
    mx.eval([a for a in args if a is not None])
    return args


def _prepare_numpy(inp: MoEInputs, dtype: str) -> tuple:
    """Fresh float32 NumPy copies."""
    return tuple(None if a is None else a.copy() for a in inp.args())


def numpy_impl() -> Impl:
    """float32 NumPy in the kernel's summation order, on the CPU."""
    return Impl("numpy", "cpu", "numpy", ("float32",), "numpy", _prepare_numpy,
                lambda dtype: reference_kernel_order, sync_none)


def mlx_impl(compiled: bool) -> Impl:
    """The op as MLX array operations, eager or through mx.compile, on MLX's default device; called as a user
    calls them, with no per-call argument check (the check against the oracle comes before timing)."""
    proc = mlx_processor()
    fn = mlx_combine_compiled if compiled else mlx_combine
    return Impl("mlx_compile" if compiled else "mlx", proc, f"mlx-{proc}", ("float32", "bfloat16"), "mlx",
                _prepare_mlx, lambda dtype: fn, sync_mlx, mx.async_eval)


def kernel_impl(variant: str, backend: str) -> Impl:
    """kernels.moe_weighted_reduce with one variant on one backend ('host' only at tiny sizes)."""
    from . import kernels

    def build(dtype: str) -> Callable[..., Any]:
        """The kernel call with backend and variant fixed."""
        return lambda *a: kernels.moe_weighted_reduce(*a, backend=backend, variant=variant)

    proc = "cpu" if backend == "host" else "gpu"
    return Impl(f"kernel_{variant}", proc, backend, ("float32", "bfloat16"), "mlx", _prepare_mlx, build, sync_mlx,
                mx.async_eval, max_outputs=HOST_MAX_OUTPUTS if backend == "host" else None)


@functools.cache
def import_torch_cuda():
    """torch when it imports and sees a CUDA GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def torch_impl(compiled: bool) -> Impl | None:
    """The op as a PyTorch user writes it, eager or torch.compile(dynamic=False), on CUDA; None without it.
    Static shapes give Inductor's best kernel for each size (2x the dynamic=True one at 4096 tokens on an
    H200); release_memory resets dynamo between sizes so each size compiles afresh, under the recompile limit."""
    torch = import_torch_cuda()
    if torch is None:
        return None

    def combine(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None):
        """Broadcast multiply, sum over k, plus the sigmoid-gated shared expert and the residual when given."""
        t, k = expert_w.shape
        y = y_expert.view(t, k, -1)
        out = (expert_w.unsqueeze(-1).to(y.dtype) * y).sum(dim=1)
        if y_shared is not None:
            out = out + torch.sigmoid(sh_logit).unsqueeze(-1).to(y.dtype) * y_shared
        return out if residual is None else out + residual

    def prepare(inp: MoEInputs, dtype: str) -> tuple:
        """Fresh CUDA tensors: activations in `dtype`, gate inputs float32."""
        act, gate = getattr(torch, dtype), getattr(torch, GATE_DTYPE)
        w, y, s, ys, r = inp.args()
        put = lambda a, dt: None if a is None else torch.from_numpy(a).to(device="cuda", dtype=dt)
        return put(w, gate), put(y, act), put(s, gate), put(ys, act), put(r, act)

    def build(dtype: str) -> Callable[..., Any]:
        """Eager `combine`, or a torch.compile of it (the check before timing compiles it for the size)."""
        return torch.compile(combine, dynamic=False) if compiled else combine

    return Impl("torch_compile" if compiled else "torch", "gpu", "torch-cuda", ("float32", "bfloat16"), "torch",
                prepare, build, lambda outs: torch.cuda.synchronize(),
                to_host=lambda out: out.float().cpu().numpy())


def kernel_backend() -> str | None:
    """The best backend the kernels run on here, or None if kernels.py cannot load or none is present."""
    try:
        from . import kernels
        return kernels.pick_backend()
    except (ImportError, RuntimeError):
        return None


def available_impls(quick: bool) -> dict[str, Impl]:
    """Every implementation that runs here; kernels on the slow host path only in quick mode."""
    impls = [numpy_impl(), mlx_impl(False), mlx_impl(True)]
    backend = kernel_backend()
    if backend is not None and (backend != "host" or quick):
        from .kernels import VARIANTS

        impls += [kernel_impl(v, backend) for v in VARIANTS]
    impls += [t for t in (torch_impl(False), torch_impl(True)) if t is not None]
    return {i.name: i for i in impls}


# ---------------------------------------------------------------- budgets and sweeps


@dataclass(frozen=True)
class Budget:
    """Memory sizes for one processor: input rotation, per-size limit, the copy ceiling."""

    rotation_bytes: int  # input sets rotate until their bytes pass this (≈ 4× the last-level cache)
    max_sets: int
    size_limit: int  # a size whose float32 bytes_moved passes this is skipped
    ceiling_bytes: int  # array size of the copy ceiling


GPU_BUDGET = Budget(200 * MB, 4096, 4 * GiB, 1 * GiB)


def llc_bytes() -> int:
    """The CPU's last-level cache from sysfs, or 32 MiB when unknown."""
    for level in ("index3", "index2"):
        path = Path(f"/sys/devices/system/cpu/cpu0/cache/{level}/size")
        if path.exists():
            text = path.read_text().strip()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            return int(text.rstrip("KM")) * scale
    return 32 << 20


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


@dataclass(frozen=True)
class Plan:
    """The sweeps: n_tokens at fixed h, h at fixed n_tokens (all impls), and an n_tokens × h grid (kernels)."""

    tokens: tuple[int, ...] = pow2(1, 16384)
    tokens_h: int = 2048
    top_ks: tuple[int, ...] = (8, 10)
    hiddens: tuple[int, ...] = pow2(256, 16384)
    hiddens_tokens: int = 1024
    heat_tokens: tuple[int, ...] = pow2(1, 16384, 2)
    heat_hiddens: tuple[int, ...] = pow2(256, 16384)
    heat_top_k: int = 8
    sweeps: tuple[str, ...] = ("tokens", "hidden", "heatmap")

    def sizes(self) -> dict[Size, bool]:
        """Every size to time, mapped to whether all impls run there (False: kernel variants only)."""
        out: dict[Size, bool] = {}
        if "heatmap" in self.sweeps:
            out.update({Size(t, h, self.heat_top_k): False for t in self.heat_tokens for h in self.heat_hiddens})
        if "tokens" in self.sweeps:
            out.update({Size(t, self.tokens_h, k): True for t in self.tokens for k in self.top_ks})
        if "hidden" in self.sweeps:
            out.update({Size(self.hiddens_tokens, h, self.top_ks[0]): True for h in self.hiddens})
        return dict(sorted(out.items()))


QUICK_PLAN = Plan(tokens=(1, 4, 16, 64, 256), top_ks=(8,), hiddens=(256, 1024, 4096), hiddens_tokens=64,
                  heat_tokens=(1, 4), heat_hiddens=(256, 2048))
DECODE_TOKENS = 64  # n_tokens up to this count as decode sizes (the latency plot)


# ---------------------------------------------------------------- rows and runs


@dataclass
class Row:
    """One implementation × size × dtype."""

    device: str
    backend: str
    impl: str
    dtype: str
    n_tokens: int
    h: int
    top_k: int
    residual: bool
    shared: bool
    bytes: int
    median_us: float
    p20_us: float
    p80_us: float
    gbps: float
    pct_of_ceiling: float
    rel_error: float
    calls: int
    sets: int


_PARSE = {"int": int, "float": float, "str": str, "bool": lambda s: s == "True"}


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Rows to CSV with a header line."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(Row)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def read_csv(path: Path) -> list[Row]:
    """Rows back from write_csv's file, typed."""
    with open(path, newline="") as f:
        return [Row(**{fl.name: _PARSE[fl.type](rec[fl.name]) for fl in fields(Row)}) for rec in csv.DictReader(f)]


@dataclass
class Run:
    """One benchmark run: its rows and the metadata that says where and how they were taken."""

    rows: list[Row]
    meta: dict = field(default_factory=dict)
    source: str | None = None  # the folder it was loaded from, if any

    def select(self, **match) -> list[Row]:
        """Rows whose fields equal every keyword given."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in match.items())]


def save_run(run: Run, folder: Path) -> list[Path]:
    """Write bench.csv and bench.json into a folder (created); returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(run.rows, folder / CSV_NAME)
    (folder / JSON_NAME).write_text(json.dumps(run.meta, indent=2, sort_keys=True) + "\n")
    return [folder / CSV_NAME, folder / JSON_NAME]


def load_run(folder: Path) -> Run:
    """A run saved by save_run."""
    return Run(read_csv(folder / CSV_NAME), json.loads((folder / JSON_NAME).read_text()), rel(folder))


def load_runs(root: Path = RESULTS) -> list[Run]:
    """Every saved run in the folders directly under root, by folder name; [] if there are none."""
    if not root.is_dir():
        return []
    return [load_run(d) for d in sorted(root.iterdir()) if (d / CSV_NAME).exists() and (d / JSON_NAME).exists()]


# ---------------------------------------------------------------- device facts


def _first_line(cmd: list[str]) -> str | None:
    """First output line of a command, or None if it fails or is missing."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def cpu_name() -> str:
    """CPU model (from /proc/cpuinfo, else platform) and the CPUs this process may use."""
    name = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                     if ln.startswith("model name")), None)
    name = name or platform.processor() or platform.machine()
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({n} CPUs)"


def gpu_name() -> str | None:
    """The GPU MLX runs on: nvidia-smi or torch on CUDA, MLX's device_info on Metal; None without one."""
    if mlx_processor() != "gpu":
        return None
    if mx.cuda.is_available():
        name = _first_line(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
        torch = import_torch_cuda()
        return name or (torch.cuda.get_device_name(0) if torch else None) or "NVIDIA GPU"
    return str(mx.device_info().get("device_name", "Apple GPU"))


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: a folder name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------- ceiling and floor


def copy_ceilings(processor: str, nbytes: int, cfg: TimerConfig, backend: str | None = None) -> dict[str, float]:
    """GB/s of copying nbytes of float32, read + written, by every method at hand; the best is the ceiling.
    GPU: shaders/copy.metal (16 bytes a thread) on the kernel backend, MLX `x + 1`, and torch `y.copy_(x)`
    when torch sees the GPU. CPU: MLX `x + 1` and NumPy into a preallocated output (MLX's CPU path pays a
    fresh allocation's page faults per call, which is not the memory's limit)."""
    n = nbytes // 4
    found = {}

    def rate(call: Callable[[int, Any], Any], sync: Callable[[list], None], max_batch: int | None = 4,
             flush: Callable[[list], None] | None = None) -> float:
        """GB/s of one copy method: 2 * nbytes over its median time per call."""
        t = time_calls(call, sync, cfg=cfg, max_batch=max_batch, flush=flush, group=cfg.graph_calls)
        return gbps(2 * nbytes, t.median)

    with mx.stream(mx.Device(mx.gpu if processor == "gpu" else mx.cpu)):
        x = mx.ones((n,), mx.float32)
        mx.eval(x)
        found["mlx x + 1"] = rate(lambda i, prev: (x if prev is None else prev) + 1, sync_mlx, flush=mx.async_eval)
        if processor == "gpu" and backend in ("cuda", "metal"):
            from . import kernels

            copy = kernels.compile_shader("copy.metal", ("x",), backend)
            found["copy.metal kernel"] = rate(lambda i, prev: copy(
                inputs=[x if prev is None else prev], grid=(n // 4, 1, 1), threadgroup=(256, 1, 1),
                output_shapes=[(n,)], output_dtypes=[mx.float32])[0], sync_mlx, flush=mx.async_eval)
    torch = import_torch_cuda() if processor == "gpu" else None
    if torch is not None:
        a = torch.ones(n, device="cuda")
        b = torch.empty_like(a)
        found["torch y.copy_(x)"] = rate(lambda i, prev: b.copy_(a), lambda outs: torch.cuda.synchronize())
        del a, b
    if processor == "cpu":
        a = np.ones(n, np.float32)
        b = np.empty_like(a)
        found["numpy add(x, 1, out=y)"] = rate(lambda i, prev: np.add(a, 1, out=b), sync_none, max_batch=None)
    return found


def empty_kernel_us(backend: str, cfg: TimerConfig, compiled: bool = True) -> float:
    """Per-call µs of shaders/empty.metal launched with one thread, chained and flushed like the kernels and,
    on a GPU backend, through mx.compile as kernels.moe_weighted_reduce launches them (compiled=False: the
    plain kernel call); on the host backend, that path's per-call overhead."""
    from . import kernels

    kernel = kernels.compile_shader("empty.metal", ("x",), backend)
    x = mx.zeros((1,), mx.float32)
    mx.eval(x)

    def launch(a: mx.array) -> mx.array:
        """One empty launch on a."""
        return kernel(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
                      output_dtypes=[mx.float32])[0]

    fn = mx.compile(launch) if compiled and backend != "host" else launch
    def call(i: int, prev: mx.array | None) -> mx.array:
        """One launch, fed by the previous one."""
        return fn(x if prev is None else prev)

    return time_calls(call, sync_mlx, cfg=cfg, flush=mx.async_eval, group=cfg.graph_calls).median * 1e6


def floor_label(backend: str | None) -> str:
    """What the empty-kernel number means on a backend."""
    if backend is None:
        return "unavailable (no kernel backend)"
    if backend == "host":
        return "host path per-call overhead (CPU, not a GPU launch)"
    return f"empty kernel, 1 thread, compiled launch ({backend})"


# ---------------------------------------------------------------- the sweep


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


def default_settings(quick: bool, dtypes: Sequence[str] = ("float32", "bfloat16"),
                     sweeps: Sequence[str] = Plan.sweeps, residual: bool = True, progress: bool = True,
                     shared: bool = True, graph_calls: int | None = None) -> Settings:
    """Full or quick plan (restricted to `sweeps`), timer and budgets for this machine."""
    unknown = set(sweeps) - set(Plan.sweeps)
    if unknown:
        raise ValueError(f"sweeps: expected some of {list(Plan.sweeps)}, got {sorted(unknown)}")
    plan = dataclasses.replace(QUICK_PLAN if quick else Plan(), sweeps=tuple(sweeps))
    budgets = {"gpu": GPU_BUDGET, "cpu": cpu_budget(quick)}
    timer = QUICK_TIMER if quick else TimerConfig()
    if graph_calls is not None:
        timer = dataclasses.replace(timer, graph_calls=graph_calls)
    return Settings(plan, tuple(dtypes), timer, budgets, residual, progress, shared)


def n_sets(nbytes: int, budget: Budget) -> int:
    """Input sets to rotate so that their bytes pass the budget's rotation size (at least 1)."""
    return max(1, min(budget.max_sets, math.ceil(budget.rotation_bytes / nbytes)))


class SizeCase:
    """One size in one dtype: inputs drawn once, the oracle computed once, input sets per family."""

    def __init__(self, size: Size, dtype: str, residual: bool, shared: bool = True):
        self.size, self.dtype, self.residual, self.shared = size, dtype, residual, shared
        self.inputs = make_inputs(size.n_tokens, size.h, size.top_k, residual=residual, shared=shared)
        self.ref = reference_f64(*self.inputs.mlx(dtype, GATE_DTYPE))
        self.bytes = problem_bytes(size.n_tokens, size.h, size.top_k, dtype, residual, shared)
        self._sets: dict[tuple[str, int], list[tuple]] = {}

    def sets(self, impl: Impl, count: int) -> list[tuple]:
        """`count` independent copies of the inputs for an impl's family (shared between its impls)."""
        key = (impl.kind, count)
        if key not in self._sets:
            self._sets[key] = [impl.prepare(self.inputs, self.dtype) for _ in range(count)]
        return self._sets[key]


def measure(impl: Impl, fn: Callable[..., Any], case: SizeCase, s: Settings, device: str,
            ceiling: float) -> Row:
    """Check one impl's output against the float64 oracle, then time it; AssertionError if it is wrong."""
    budget = s.budgets[impl.processor]
    count = n_sets(case.bytes, budget)
    sets = case.sets(impl, count)
    out = fn(*sets[0])
    impl.sync([out])
    err = rel_error(impl.to_host(out), case.ref)
    if not err < tolerance(case.dtype):
        raise AssertionError(f"{impl.name} {case.dtype} {case.size}: relative error {err:.2e} "
                             f"is not under {tolerance(case.dtype):.0e}")
    call, linked = chained(fn, sets)
    t = time_calls(call, impl.sync, count, s.timer, flush=impl.flush, group=s.timer.graph_calls if linked else 1)
    rate = gbps(case.bytes, t.median)
    sz = case.size
    return Row(device, impl.backend, impl.name, case.dtype, sz.n_tokens, sz.h, sz.top_k, case.residual, case.shared, case.bytes,
               t.median * 1e6, t.p20 * 1e6, t.p80 * 1e6, rate, 100 * rate / ceiling, err, t.calls, count)


def release_memory() -> None:
    """Hand cached device buffers back between sizes (MLX, and torch when present; dynamo forgets its
    compiled graphs, so a static torch.compile compiles the next size afresh)."""
    mx.clear_cache()
    torch = import_torch_cuda()
    if torch is not None:
        torch.cuda.empty_cache()
        torch.compiler.reset()


def plan_tasks(s: Settings, impls: dict[str, Impl]) -> tuple[list[tuple[Size, str, list[Impl]]], list[str]]:
    """(size, dtype, impls) to run, and a line for each size skipped as over its memory budget."""
    tasks, skipped = [], []
    for size, everyone in s.plan.sizes().items():
        f32 = problem_bytes(size.n_tokens, size.h, size.top_k, "float32", s.residual, s.shared)
        for dtype in s.dtypes:
            chosen = [i for i in impls.values() if dtype in i.dtypes and i.fits(size)
                      and (everyone or i.name.startswith("kernel_"))]
            fit = [i for i in chosen if f32 <= s.budgets[i.processor].size_limit]
            if len(fit) < len(chosen):
                over = ", ".join(i.name for i in chosen if i not in fit)
                skipped.append(f"{size} {dtype}: {over}: {f32 / GiB:.2f} GiB of float32 inputs is over the budget")
            if fit:
                tasks.append((size, dtype, fit))
    return tasks, skipped


def run_sweep(impls: dict[str, Impl], s: Settings, argv: Sequence[str] | None = None) -> Run:
    """Measure the ceilings and the floor, then every (size, dtype, impl) of the plan; returns the Run."""
    started = time.perf_counter()
    backend = kernel_backend()
    names = {"cpu": cpu_name(), "gpu": gpu_name()}
    processors = sorted({i.processor for i in impls.values()})
    methods = {p: copy_ceilings(p, s.budgets[p].ceiling_bytes, s.timer, backend) for p in processors}
    ceilings = {p: max(m.values()) for p, m in methods.items()}
    floor = empty_kernel_us(backend, s.timer) if backend is not None else None
    floor_plain = empty_kernel_us(backend, s.timer, compiled=False) if backend not in (None, "host") else floor
    tasks, skipped = plan_tasks(s, impls)
    built: dict[tuple[str, str], Callable[..., Any]] = {}
    rows: list[Row] = []
    failures: list[str] = []
    bar = tqdm(tasks, desc="bench", unit="size", disable=not s.progress, file=sys.stderr)
    for size, dtype, chosen in bar:
        bar.set_postfix_str(f"T={size.n_tokens} h={size.h} k={size.top_k} {dtype}")
        case = SizeCase(size, dtype, s.residual, s.shared)
        for impl in chosen:
            if (impl.name, dtype) not in built:
                built[impl.name, dtype] = impl.build(dtype)
            fn = built[impl.name, dtype]
            try:
                rows.append(measure(impl, fn, case, s, names[impl.processor], ceilings[impl.processor]))
            except AssertionError as e:
                failures.append(str(e))
        del case
        release_memory()
    meta = {
        "device": names["gpu"] or names["cpu"],
        "cpu": names["cpu"],
        "gpu": names["gpu"],
        "kernel_backend": backend,
        "mlx_device": str(mx.default_device()),
        "mlx_version": mx.__version__,
        "torch_version": _torch_version(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "ceiling_gbps": ceilings,
        "ceiling_methods_gbps": methods,
        "ceiling_bytes": {p: s.budgets[p].ceiling_bytes for p in processors},
        "empty_kernel_us": floor,
        "empty_kernel_plain_us": floor_plain,
        "empty_kernel_label": floor_label(backend),
        "impls": sorted(impls),
        "dtypes": list(s.dtypes),
        "gate_dtype": GATE_DTYPE,
        "residual": s.residual,
        "shared": s.shared,
        "plan": asdict(s.plan),
        "timer": asdict(s.timer),
        "budgets": {p: asdict(b) for p, b in s.budgets.items()},
        "skipped": skipped,
        "failures": failures,
        "command": " ".join(argv) if argv is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_memory_gb": {"mlx": mx.get_peak_memory() / 1e9, "torch": _torch_peak_gb(),
                           "host_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9},
    }
    return Run(rows, meta)


def _torch_version() -> str | None:
    """torch.__version__ when torch imports, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _torch_peak_gb() -> float | None:
    """torch's peak CUDA allocation in GB, or None without torch on CUDA."""
    torch = import_torch_cuda()
    return None if torch is None else torch.cuda.max_memory_allocated() / 1e9


def default_out(run: Run) -> Path:
    """results/<device-slug>-<date>/ in the repo."""
    return RESULTS / f"{slug(run.meta['device'])}-{run.meta['date']}"


def rel(path: Path) -> str:
    """A path relative to the repo (or the working directory) when it is inside one, else as given."""
    for base in (REPO, Path.cwd()):
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)
