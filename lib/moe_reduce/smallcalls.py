"""The small-call measurements of one GPU, in one process: the two frameworks' empty kernels, our kernel's GPU
time at one token with the gate logit as a view into a larger array and as its own 4-byte array (MLX's small
pool), and the host cost per call beside an empty kernel with the same inputs (hostcost). Needs a GPU backend
and torch (CUPTI). `python -m moe_reduce.smallcalls --out DIR` writes DIR/smallcalls.json."""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path
from typing import Any

import mlx.core as mx

from . import hostcost, kernels
from .backends import device_name, pick_backend
from .ceiling import empty_gpu_us
from .gputime import repeat_medians
from .impls import prepare_mlx
from .inputs import CombineArgs, make_inputs
from .timing import chained, sync_mlx

CALLS, REPEATS = 64, 3  # chained calls per repeat, repeats per case
H = 2048
VARIANTS = ("auto", "row", "scalar_k")
SETS = 512  # input sets rotated at one token: 512 x 90 KB = 46 MB of inputs, close to the L2's 50 MB


def own_logit(a: CombineArgs) -> CombineArgs:
    """The same arguments with sh_logit its own array (a 1-token logit lands in MLX's small pool)."""
    own = mx.array(a.sh_logit)
    mx.eval(own)
    return a._replace(sh_logit=own)


def one_token_cases(backend: str) -> dict[str, list[float]]:
    """Per-repeat median GPU µs of every (dtype, top_k, logit, variant) at one token, h 2048; one profiler
    session, the cases one after another."""
    calls = {}
    for dtype in ("float32", "bfloat16"):
        for top_k in (8, 10):
            views = [prepare_mlx(make_inputs(1, H, top_k, seed=s), dtype) for s in range(SETS)]
            for logit, sets in (("view", views), ("own", [own_logit(a) for a in views])):
                for v in VARIANTS:
                    fn = lambda *a, v=v: kernels.moe_weighted_reduce(*a, backend=backend, variant=v)  # noqa: E731
                    calls[f"{dtype} top_k={top_k} logit={logit} {v}"] = chained(fn, sets)[0]
    return repeat_medians(calls, SETS, "moe_weighted_reduce", CALLS, REPEATS, sync_mlx, mx.async_eval)


def measure(backend: str = "auto") -> dict[str, Any]:
    """Everything this module measures, with the device, MLX version and date."""
    backend = pick_backend(backend)
    if backend == "host":
        raise RuntimeError("smallcalls needs a GPU backend and CUPTI")
    host = hostcost.measure(backend=backend)
    return {"device": device_name(backend), "mlx_version": mx.__version__, "date": datetime.date.today().isoformat(),
            "calls": CALLS, "repeats": REPEATS, "h": H, "sets": SETS,
            "empty_gpu_us": empty_gpu_us(backend), "one_token_gpu_us": one_token_cases(backend),
            "host_us": hostcost.summary(host), "host_runs_us": host}


def main(argv: list[str] | None = None) -> None:
    """Measure and write DIR/smallcalls.json."""
    parser = argparse.ArgumentParser(prog="python -m moe_reduce.smallcalls", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for smallcalls.json")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    found = measure()
    (args.out / "smallcalls.json").write_text(json.dumps(found, indent=1) + "\n")
    for case, reps in found["one_token_gpu_us"].items():
        print(f"{statistics.median(reps):7.3f} µs  {case}")
    for case, s in found["host_us"].items():
        print(f"{s['median']:7.2f} µs host  {case}")
    print("empty kernels, GPU µs:", found["empty_gpu_us"])


if __name__ == "__main__":
    main()
