"""Measure the launch table behind variant="auto": the GPU time per call of every kernel variant at several
threadgroup sizes, over the sweep's sizes, repeated; per size the fastest choice, or the simplest one within
the noise of the fastest. `python -m moe_reduce tune --out DIR` writes tune.csv and launch_table.json
(`python -m moe_reduce.launch_table DIR/launch_table.json` merges the latter into the shipped table). Needs a GPU
and torch (for CUPTI)."""
from __future__ import annotations

import csv
import datetime
import itertools
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx

from . import kernels
from .backends import device_name, pick_backend
from .gputime import repeat_medians
from .impls import prepare_mlx
from .inputs import make_inputs
from .ops import GATE_DTYPE
from .sweep import DEFAULT_DTYPES, GPU_BUDGET, Plan, n_sets, problem_bytes
from .timing import chained, sync_mlx

THREADS = (32, 64, 128, 256, 512)
CALLS = 64  # chained calls per timed repeat
REPEATS = 3
NOISE_CAP = 0.05  # the widest noise window pick allows, as a fraction of the fastest choice's time
ENTRY_KEYS = ("dtype", "n_tokens", "h", "top_k", "variant", "threads")


@dataclass(frozen=True)
class Sample:
    """One (size, dtype, variant, threads): median GPU µs per call over repeats, and the repeats' spread."""

    dtype: str
    n_tokens: int
    h: int
    top_k: int
    variant: str
    threads: int
    gpu_us: float
    spread: float  # (max - min) / median of the repeats


def simplicity(variant: str, threads: int) -> tuple[int, float]:
    """Lower is simpler: scalar < vec < vec_k, then the threadgroup size's distance from 256."""
    return list(kernels.VARIANTS).index(variant), abs(math.log2(threads / kernels.DEFAULT_THREADS))


def tune_size(backend: str, dtype: str, n_tokens: int, h: int, top_k: int) -> list[Sample]:
    """GPU time of every choice at one size: one profiler session, the choices run one after another, each
    CALLS chained calls REPEATS times over rotating inputs; kernels are split back by their order."""
    base = make_inputs(n_tokens, h, top_k)
    count = n_sets(problem_bytes(n_tokens, h, top_k, dtype, True), GPU_BUDGET)
    sets = [prepare_mlx(base, dtype) for _ in range(count)]
    choices = [(v, t) for v in kernels.VARIANTS for t in THREADS]
    calls = {c: chained(lambda *a, c=c: kernels.moe_weighted_reduce(*a, backend=backend, variant=c[0], threads=c[1]),
                        sets)[0] for c in choices}
    out = []
    for (v, t), reps in repeat_medians(calls, count, "moe_weighted_reduce", CALLS, REPEATS, sync_mlx,
                                       mx.async_eval).items():
        med = statistics.median(reps)
        out.append(Sample(dtype, n_tokens, h, top_k, v, t, med, (max(reps) - min(reps)) / med))
    return out


def pick(samples: list[Sample]) -> Sample:
    """The simplest choice within the noise of the fastest: the fastest's spread over its repeats, at least 1% and
    at most NOISE_CAP. A choice's own spread does not widen the window: one slow repeat of a slow choice must not
    let it pass for fast."""
    fastest = min(samples, key=lambda s: s.gpu_us)
    window = 1 + min(max(fastest.spread, 0.01), NOISE_CAP)
    close = [s for s in samples if s.gpu_us <= fastest.gpu_us * window]
    return min(close, key=lambda s: simplicity(s.variant, s.threads))


def table_entries(samples: list[Sample]) -> list[dict]:
    """The launch table's entries: per (dtype, n_tokens, h, top_k), in the samples' order, the pick."""
    groups = itertools.groupby(samples, key=lambda s: (s.dtype, s.n_tokens, s.h, s.top_k))
    return [{k: v for k, v in asdict(pick(list(g))).items() if k in ENTRY_KEYS} for _, g in groups]


def read_samples(path: Path) -> list[Sample]:
    """The samples of a tune.csv, in its order."""
    with open(path, newline="") as f:
        return [Sample(r["dtype"], int(r["n_tokens"]), int(r["h"]), int(r["top_k"]), r["variant"], int(r["threads"]),
                       float(r["gpu_us"]), float(r["spread"])) for r in csv.DictReader(f)]


def sizes(plan: Plan = Plan()) -> list[tuple[int, int, int]]:
    """The tokens and hidden sweeps' sizes (the heatmap's are covered by the nearest entry)."""
    return sorted({(t, plan.tokens_h, k) for t in plan.tokens for k in plan.top_ks}
                  | {(plan.hiddens_tokens, h, plan.top_ks[0]) for h in plan.hiddens})


def tune(out: Path, dtypes: tuple[str, ...] = DEFAULT_DTYPES, card: str | None = None) -> dict:
    """Measure every size and dtype; write tune.csv and launch_table.json into `out`; return the table."""
    backend = pick_backend()
    if backend == "host":
        raise RuntimeError("tune needs a GPU backend: the launch table is measured on the GPU host")
    device = device_name(backend)
    card = card or next((c for c in ("H200", "H100") if device and c in device), device)
    samples = [s for d in dtypes for n, h, k in sizes() for s in tune_size(backend, d, n, h, k)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tune.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(samples[0])), lineterminator="\n")
        w.writeheader()
        w.writerows(asdict(s) for s in samples)
    table = {"cards": {card: table_entries(samples)}, "backend": {card: backend},
             "source": {card: f"python -m moe_reduce tune on {device}, MLX {mx.__version__}, "
                              f"{datetime.date.today().isoformat()}; GPU time (CUPTI), median of {REPEATS} x "
                              f"{CALLS} chained calls, gate dtype {GATE_DTYPE}"}}
    (out / "launch_table.json").write_text(json.dumps(table, indent=1) + "\n")
    return table
