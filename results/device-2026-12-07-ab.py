"""Issue 21, side by side on one GPU: what exactness costs our kernels. The H200 model run of 2026-12-07 timed the
patch's new defaults (rounding per op; the fused norm in MLX's CUDA order at MLX's threads per row) slower per call
than an earlier run on another machine timed the old ones; this times each setting alone, in one process, at
Qwen3-30B-A3B's layer shape (h 2048, top_k 8, no shared expert): the combine rounding once (the launch table's
variant, then the row variant) and per op (row); the fused combine + residual + RMSNorm rounding once, then with
norm_rounding before_weight at MLX's threads and order, at the threads that cover the row (MLX's order), in our
own order at those threads, and as the patch calls it (per op, before_weight). GPU µs per call (CUPTI: the kernels'
own durations), median and range of REPEATS interleaved rounds of CALLS calls. Writes ab.csv under $OUT.

    OUT=DIR python3 results/device-2026-12-07-ab.py [--quick]    # from the repository root, PYTHONPATH=lib
"""
from __future__ import annotations

import csv
import os
import statistics
import sys
from pathlib import Path
from typing import Callable

import mlx.core as mx

from moe_reduce import kernels
from moe_reduce.backends import pick_backend
from moe_reduce.inputs import CombineArgs, make_fused_inputs
from moe_reduce.model_bench import profile
from moe_reduce.validate import validate_rmsnorm

EPS, H, TOP_K = 1e-6, 2048, 8
CALLS, REPEATS = 50, 5


def cases(args, backend: str) -> dict[str, Callable[[], object]]:
    """Each setting as a call of the kernel it runs (combine: no residual, as in the MoE block)."""
    p = validate_rmsnorm(*args, EPS)
    cover = kernels.fused_config(p, EPS).threadgroup[0]
    ours = kernels.fused_config(p, EPS, None, "before_weight", mlx_sum=False)
    fused = kernels.build_fused(backend)
    return {
        "combine once (table's variant)": lambda: kernels.moe_weighted_reduce(*args[:4]),
        "combine once, row variant": lambda: kernels.moe_weighted_reduce(*args[:4], variant="row"),
        "combine per_op (row)": lambda: kernels.moe_weighted_reduce(*args[:4], rounding="per_op"),
        "fused once, once": lambda: kernels.moe_combine_rmsnorm(*args, EPS),
        "fused once, before_weight (as called)": lambda: kernels.moe_combine_rmsnorm(
            *args, EPS, norm_rounding="before_weight"),
        f"fused once, before_weight, {cover} threads": lambda: kernels.moe_combine_rmsnorm(
            *args, EPS, norm_rounding="before_weight", threads=cover),
        f"fused once, before_weight, {cover} threads, our order": lambda: kernels.fused_dispatch(
            fused, ours, p, CombineArgs(*args[:5]), args.weight),
        "fused per_op, before_weight (the patch)": lambda: kernels.moe_combine_rmsnorm(
            *args, EPS, rounding="per_op", norm_rounding="before_weight"),
    }


def gpu_us(fn: Callable[[], object]) -> float:
    """GPU µs per call over CALLS calls, each evaluated (as model_bench's components)."""
    return profile(lambda: [mx.eval(fn()) for _ in range(CALLS)], CALLS)[0]


def main() -> None:
    """Print and write the table."""
    quick = "--quick" in sys.argv
    out = Path(os.environ["OUT"])
    backend = pick_backend("auto")
    rows = []
    for dtype in ("bfloat16", "float32"):
        for n in (1,) if quick else (1, 512, 4096):
            args = make_fused_inputs(n, H, TOP_K, shared=False, seed=n).mlx(dtype, dtype)
            calls = cases(args, backend)
            for fn in calls.values():
                mx.eval(fn())  # compile and warm up
            times = {name: [] for name in calls}
            for _ in range(1 if quick else REPEATS):
                for name, fn in calls.items():
                    times[name].append(gpu_us(fn))
            for name, ts in times.items():
                rows.append(dict(dtype=dtype, n_tokens=n, setting=name, median_us=statistics.median(ts),
                                 min_us=min(ts), max_us=max(ts), repeats=len(ts)))
                print(f"{dtype:9} {n:5} {name:48} {rows[-1]['median_us']:8.2f} [{min(ts):.2f}-{max(ts):.2f}]")
    with open(out / "ab.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
