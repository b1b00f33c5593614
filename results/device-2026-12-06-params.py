"""GPU probe of 2026-12-06, round 3 (one-off): inside MLX's CUDA graphs our kernel runs 0.2-0.4 µs longer than
outside them, the empty kernel (which reads none of its parameters) does not (round 2, graphs.json). Does
reading a kernel parameter cost the difference? Run from the repository root as

    OUT=DIR PYTHONPATH=lib python3 results/device-2026-12-06-params.py

One-thread kernels, each in 64-call chains fed by the previous output (3 repeats), with MLX's graphs on and off
(a second process), handed over 64 calls at a time and every call:
  empty:  shaders/empty.metal (its store never runs, so no parameter is read)
  shape:  out[0] = x_shape[0] (reads a shape parameter and the out pointer; loads nothing from memory)
  load:   out[0] = x[0] + 1 (reads two pointers and loads one element the previous call wrote)
  load5:  out[0] = x[0] + a[0] + b[0] + c[0] + d[0] (five pointers, five loads; a-d are 4-element arrays made
          by a GPU op, so in device memory)
Writes params.json and prints median durations."""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx

from moe_reduce.backends import make_kernel, read_source
from moe_reduce.timing import sync_mlx

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("graphs_probe", HERE / "device-2026-12-06-graphs.py")
graphs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graphs)  # chain_stats, log, GRAPHS, OUT, CALLS

BODIES = {"empty": (read_source("empty.metal"), ("x",)),
          "shape": ("out[0] = float(x_shape[0]);", ("x",)),
          "load": ("out[0] = x[0] + 1.0f;", ("x",)),
          "load5": ("out[0] = x[0] + a[0] + b[0] + c[0] + d[0];", ("x", "a", "b", "c", "d"))}


def chained_kernel(name: str, backend: str = "cuda") -> Callable[[int, Any], mx.array]:
    """call(i, prev): one launch of a body on one thread, through mx.compile, fed by the previous output."""
    body, names = BODIES[name]
    kernel = make_kernel(f"probe_{name}", body, names, backend)
    extra = [mx.arange(4, dtype=mx.float32) + i for i in range(len(names) - 1)]
    x0 = mx.zeros((4,), mx.float32) + 1
    mx.eval(extra, x0)
    launch = lambda *a: kernel(inputs=list(a), grid=(1, 1, 1), threadgroup=(1, 1, 1),  # noqa: E731
                               output_shapes=[(4,)], output_dtypes=[mx.float32])[0]
    fn = launch if backend == "host" else mx.compile(launch)  # the host runner cannot run under mx.compile
    return lambda i, prev: fn(x0 if prev is None else prev, *extra)


def measure() -> list[dict]:
    """One row per (body, hand-over) in this process's graph setting."""
    rows = []
    for name, group in itertools.product(BODIES, (graphs.CALLS, 1)):
        reps = graphs.chain_stats(chained_kernel(name), 1, sync_mlx, mx.async_eval, group, f"probe_{name}")
        rows.append(dict(body=name, graphs=graphs.GRAPHS, group=group, reps=reps))
        graphs.log(f"graphs={graphs.GRAPHS} {name} group {group}: dur "
                   + " ".join(f"{r['dur_us']:.3f}" for r in reps) + " gap " + " ".join(f"{r['gap_us']:.2f}" for r in reps))
    return rows


def main() -> None:
    """Both graph settings; the second in a child process (MLX reads the variable once)."""
    if not graphs.GRAPHS:
        print(json.dumps(measure()))
        return
    rows = measure()
    child = subprocess.run([sys.executable, __file__], env=os.environ | {"MLX_USE_CUDA_GRAPHS": "0"},
                           capture_output=True, text=True)
    lines = child.stdout.strip().splitlines() or [""]
    print("\n".join(lines[:-1]), child.stderr[-4000:], sep="\n", flush=True)
    rows += json.loads(lines[-1]) if child.returncode == 0 else []
    graphs.OUT.mkdir(parents=True, exist_ok=True)
    (graphs.OUT / "params.json").write_text(json.dumps(dict(mlx=mx.__version__, rows=rows), indent=1) + "\n")
    graphs.log(f"{len(rows)} rows; child exit {child.returncode}")


if __name__ == "__main__":
    main()
