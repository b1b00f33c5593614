"""GPU probe of 2026-12-06 (one-off): does where the inputs live, or MLX's CUDA graphs, move our kernel's GPU time
at 4-1024 tokens (issue 18, target 1)? Run from the repository root as

    OUT=DIR PYTHONPATH=lib python3 results/device-2026-12-06-placement.py

Arms, one CUPTI profile per graph setting (our kernel `auto`, h 2048, top_k 8, float32 and bfloat16):
  host:   the inputs as `bench` makes them (impls.prepare_mlx: mx.array of NumPy data; MLX 0.32 allocates
          arrays made on the host with cudaMallocManaged, and float32 needs no cast, so they stay there)
  device: the same values copied by a GPU op (x + 0), which MLX allocates with cudaMallocAsync, as a model's
          combine gets its inputs from the ops before it
each with MLX_USE_CUDA_GRAPHS on (MLX's default) and off (a second process), beside the MLX empty kernel of
the same process and Triton's kernel in the same rotation of input sets. Writes placement.json and prints a table."""
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

from moe_reduce import gputime, kernels
from moe_reduce.ceiling import empty_call
from moe_reduce.check import rel_error, tolerance
from moe_reduce.impls import kernel_impl, triton_support
from moe_reduce.inputs import CombineArgs
from moe_reduce.sweep import GPU_BUDGET, Size, SizeCase, n_sets, timed_call
from moe_reduce.timing import chained, rotation, run_calls

OUT = Path(os.environ.get("OUT", "/tmp/out"))
H, K, CALLS, REPEATS = 2048, 8, 64, 3
TOKENS = (4, 16, 64, 256, 1024)
GRAPHS = os.environ.get("MLX_USE_CUDA_GRAPHS", "1") != "0"


def log(*a: Any) -> None:
    """A timestamped line."""
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def sync(outs: list) -> None:
    """Evaluate and wait."""
    mx.eval(*outs)
    mx.synchronize()


def on_device(args: CombineArgs) -> CombineArgs:
    """The same values, each copied by a GPU op while the original is still referenced (so MLX cannot donate
    the managed buffer to the copy)."""
    out = CombineArgs(*(None if a is None else a + 0 for a in args))
    mx.eval([a for a in out if a is not None])
    return out


def medians(calls: dict[str, Callable], count: int, match: Callable[[str], bool]) -> dict[str, list[float]]:
    """Per arm, the per-repeat median GPU µs of REPEATS x CALLS chained calls, all in one profiler session."""
    at = rotation(count)
    for call in calls.values():
        run_calls(call, 2, at, sync, mx.async_eval, CALLS)
    acts = gputime.device_activities(lambda: [run_calls(calls[c], CALLS, at, sync, mx.async_eval, CALLS)
                                              for c, _ in itertools.product(calls, range(REPEATS))])
    acts = [us for name, us in acts if match(name)]
    if len(acts) != len(calls) * REPEATS * CALLS:
        raise RuntimeError(f"expected {len(calls) * REPEATS * CALLS} kernels, got {len(acts)}")
    return {c: [statistics.median(acts[(i * REPEATS + r) * CALLS:(i * REPEATS + r + 1) * CALLS])
                for r in range(REPEATS)] for i, c in enumerate(calls)}


def triton_us(case: SizeCase, count: int) -> list[float]:
    """Triton's per-repeat median GPU µs under the same rotation."""
    impl = triton_support().all_impls()[0]
    call, _, _, rotate = timed_call(impl, impl.build(case.dtype), case.sets(impl, count))
    at = rotation(rotate)
    run_calls(call, CALLS, at, impl.sync)
    return [statistics.median(us for name, us in gputime.device_activities(lambda: run_calls(call, CALLS, at, impl.sync))
                              if "combine_kernel" in name) for _ in range(REPEATS)]


def measure() -> list[dict]:
    """One row per (dtype, n_tokens, arm) in this process's graph setting."""
    rows = []
    empty = medians({"empty": empty_call("cuda")}, 1, lambda s: "empty" in s)["empty"]
    rows.append(dict(graphs=GRAPHS, dtype="", n_tokens=0, arm="mlx_empty", reps=empty))
    fn = lambda *a: kernels.moe_weighted_reduce(*a, backend="cuda")  # noqa: E731 - the call bench times
    for dtype, n in itertools.product(("float32", "bfloat16"), TOKENS):
        case = SizeCase(Size(n, H, K), dtype, True)
        count = n_sets(case.bytes, GPU_BUDGET)
        host = case.sets(kernel_impl("auto", "cuda"), count)
        mx.clear_cache()  # so the copies get fresh device buffers, not cached managed ones
        arms = {"host": host, "device": [on_device(s) for s in host]}
        for name, sets in arms.items():
            err = rel_error(fn(*sets[0]), case.ref[0])
            assert err < tolerance(dtype), (name, dtype, n, err)
        got = medians({k: chained(fn, s)[0] for k, s in arms.items()}, count, lambda s: "moe_weighted" in s)
        if GRAPHS and triton_support() is not None:
            got["triton"] = triton_us(case, count)
        for arm, reps in got.items():
            rows.append(dict(graphs=GRAPHS, dtype=dtype, n_tokens=n, arm=arm, reps=reps, sets=count))
        log(f"graphs={GRAPHS} {dtype} n={n}: " + "  ".join(f"{a} {statistics.median(r):.3f}" for a, r in got.items()))
        del case, host, arms
        mx.clear_cache()
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
    (OUT / "placement.json").write_text(json.dumps(dict(mlx=mx.__version__, rows=rows), indent=1) + "\n")
    log(f"{len(rows)} rows; child exit {child.returncode}")


if __name__ == "__main__":
    main()
