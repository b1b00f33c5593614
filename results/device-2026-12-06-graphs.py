"""GPU probe of 2026-12-06, round 2 (one-off): inside MLX's CUDA graphs our kernel's CUPTI duration is 0.3-0.7 µs
longer than with MLX_USE_CUDA_GRAPHS=0 at 4-1024 tokens (placement.json of round 1), while the empty kernel's is
not. Is that the graph or MLX? Run from the repository root as

    OUT=DIR PYTHONPATH=lib python3 results/device-2026-12-06-graphs.py

For each chain of 64 calls it records every kernel's start and duration (CUPTI through torch.profiler) and
reports the median duration and the median gap from one kernel's end to the next one's start (a negative gap:
the kernels overlapped). Contenders, h 2048, top_k 8, float32 and bfloat16: our kernel (`auto`) with MLX's
graphs on and off (a child process), handed over 64 calls at a time as `bench` does (`ours`) and every call
(`ours_each`: the host then launches slower than the GPU runs, so the kernels run with gaps), Triton
launched per call and Triton captured in a CUDA graph (torch's), and MLX's empty kernel. Writes graphs.json and prints a table."""
from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx

from moe_reduce import kernels
from moe_reduce.ceiling import empty_call
from moe_reduce.impls import kernel_impl, torch_support, triton_support
from moe_reduce.sweep import GPU_BUDGET, Size, SizeCase, n_sets, timed_call
from moe_reduce.timing import chained, rotation, run_calls, sync_mlx

OUT = Path(os.environ.get("OUT", "/tmp/out"))
H, K, CALLS, REPEATS = 2048, 8, 64, 3
TOKENS = (4, 16, 64, 256, 1024)
GRAPHS = os.environ.get("MLX_USE_CUDA_GRAPHS", "1") != "0"


def log(*a: Any) -> None:
    """A timestamped line."""
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def kernels_of(run: Callable[[], Any], match: str) -> list[tuple[float, float]]:
    """(start µs, duration µs) of the device kernels whose names contain `match`, in start order."""
    prof_mod = torch_support().torch.profiler
    with prof_mod.profile(activities=[prof_mod.ProfilerActivity.CUDA]) as prof:
        run()
    cuda = torch_support().torch.autograd.DeviceType.CUDA
    ev = [e for e in prof.profiler.kineto_results.events() if e.device_type() == cuda and match in e.name()]
    return sorted((e.start_ns() / 1e3, e.duration_ns() / 1e3) for e in ev)


def summary(ks: list[tuple[float, float]]) -> dict[str, float]:
    """Median duration, median gap (next start - this end), and the span per kernel (first start to last end)."""
    gaps = [s2 - (s1 + d1) for (s1, d1), (s2, _) in zip(ks, ks[1:])]
    return dict(kernels=len(ks), dur_us=statistics.median(d for _, d in ks), gap_us=statistics.median(gaps),
                min_gap_us=min(gaps), span_per_kernel_us=(ks[-1][0] + ks[-1][1] - ks[0][0]) / len(ks))


def chain_stats(call: Callable[[int, Any], Any], count: int, sync: Callable, flush: Callable | None, group: int,
                match: str) -> list[dict[str, float]]:
    """summary() of REPEATS chains of CALLS timer calls over `count` rotating sets, each profiled alone."""
    at = rotation(count)
    run_calls(call, CALLS, at, sync, flush, group)
    return [summary(kernels_of(lambda: run_calls(call, CALLS, at, sync, flush, group), match))
            for _ in range(REPEATS)]


def measure() -> list[dict]:
    """One row per (contender, dtype, n_tokens) in this process's graph setting."""
    rows = [dict(who="mlx_empty", graphs=GRAPHS, dtype="", n_tokens=0,
                 reps=chain_stats(empty_call("cuda"), 1, sync_mlx, mx.async_eval, CALLS, "empty"))]
    fn = lambda *a: kernels.moe_weighted_reduce(*a, backend="cuda")  # noqa: E731 - the call bench times
    triton = triton_support().all_impls()[:2] if GRAPHS and triton_support() else []
    for dtype, n in itertools.product(("float32", "bfloat16"), TOKENS):
        case = SizeCase(Size(n, H, K), dtype, True)
        count = n_sets(case.bytes, GPU_BUDGET)
        sets = case.sets(kernel_impl("auto", "cuda"), count)
        call = chained(fn, sets)[0]
        got = {"ours": chain_stats(call, count, sync_mlx, mx.async_eval, CALLS, "moe_weighted"),
               "ours_each": chain_stats(call, count, sync_mlx, mx.async_eval, 1, "moe_weighted")}
        for impl in triton:
            call, _, per, rotate = timed_call(impl, impl.build(dtype), case.sets(impl, count))
            got[impl.name] = chain_stats(call, rotate, impl.sync, None, 1, "combine_kernel")
        for who, reps in got.items():
            rows.append(dict(who=who, graphs=GRAPHS, dtype=dtype, n_tokens=n, reps=reps))
        log(f"graphs={GRAPHS} {dtype} n={n}: " + "  ".join(
            f"{w} dur {statistics.median(r['dur_us'] for r in reps):.3f} gap {statistics.median(r['gap_us'] for r in reps):.3f}"
            for w, reps in got.items()))
        del case, sets
        mx.clear_cache()
        if torch_support():
            torch_support().release()
    return rows


def main() -> None:
    """Both graph settings; the second in a child process (MLX reads the variable once)."""
    if not GRAPHS:
        print(json.dumps(measure()))
        return
    rows = measure()
    child = subprocess.run([sys.executable, __file__], env=os.environ | {"MLX_USE_CUDA_GRAPHS": "0"},
                           capture_output=True, text=True)
    lines = child.stdout.strip().splitlines() or [""]
    print("\n".join(lines[:-1]), child.stderr[-4000:], sep="\n", flush=True)
    rows += json.loads(lines[-1]) if child.returncode == 0 else []
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "graphs.json").write_text(json.dumps(dict(mlx=mx.__version__, rows=rows), indent=1) + "\n")
    log(f"{len(rows)} rows; child exit {child.returncode}")


if __name__ == "__main__":
    main()
