"""Throughput of the CPU runner, in threads per second (a benchmark, not a test).

    python -m msl_host.bench [--repeat 30] [--baseline DIR]

(a) moe-reduce's scalar kernel (shaders/moe_weighted_reduce.metal; 64 tokens, h = 2048, top_k = 8,
    float32, residual and shared expert on): one thread per output, no barriers, run in a plain loop;
    with bounds_check=False and True.
(b) a barrier kernel: the RMSNorm row kernel of msl_host.examples on 64 rows of 4096 floats, one
    threadgroup of 1024 threads per row (fibers, simd_sum, threadgroup memory, barriers).
--baseline DIR: also time (a) with another copy of the msl_host package (say the runner as it was at a
    given commit: `git archive COMMIT lib/msl_host | tar -x -C DIR`, then DIR/lib/msl_host), loaded
    under another name. Calls are interleaved, round by round, so that every variant sees the same
    machine; each call is a whole kernel call (Python included) on inputs prepared once.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import mlx.core as mx

from . import examples, kernel


def moe_call(runner: Callable[..., object], **options: object) -> tuple[Callable[[], object], int]:
    """A call of moe-reduce's scalar kernel with `runner` (a metal_kernel function), and its thread count."""
    from moe_reduce import kernels
    from moe_reduce.inputs import make_inputs
    from moe_reduce.validate import validate

    args = make_inputs(64, 2048, 8, seed=0).mlx("float32")
    problem = validate(*args)
    grid, group, template = kernels.launch_config("scalar", problem)
    k = runner("moe_weighted_reduce", kernels.INPUT_NAMES, ["out"], kernels.kernel_source("scalar"), **options)
    call = dict(inputs=list(args), template=template, grid=grid, threadgroup=group,
                output_shapes=[(problem.n_tokens, problem.h)], output_dtypes=[mx.float32])
    return (lambda: mx.eval(k(**call))), grid[0]


def rms_call(**options: object) -> tuple[Callable[[], object], int]:
    """A call of the RMSNorm row kernel on 64 rows of 4096, and its thread count."""
    x = mx.random.normal((64, 4096), key=mx.random.key(0))
    w = mx.random.normal((4096,), key=mx.random.key(1))
    launch = examples.row_launch(*x.shape)
    return (lambda: mx.eval(examples.rms_norm(x, w, 1e-5, **options))), launch["grid"][0] * launch["grid"][1]


def load_baseline(directory: Path) -> ModuleType:
    """The msl_host package in `directory`, imported as msl_host_baseline."""
    spec = importlib.util.spec_from_file_location("msl_host_baseline", directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["msl_host_baseline"] = module
    spec.loader.exec_module(module)
    return module


def measure(calls: dict[str, tuple[Callable[[], object], int]], repeat: int) -> dict[str, list[float]]:
    """Threads per second of each call, `repeat` times, interleaved round by round (after a warm-up)."""
    for run, _ in calls.values():
        run()
        run()
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, (run, threads) in calls.items():
            start = time.perf_counter()
            run()
            rates[name].append(threads / (time.perf_counter() - start))
    return rates


def report(rates: dict[str, list[float]], reference: str) -> None:
    """One line per variant: median and spread (10th..90th percentile) of threads/s, ratio of medians."""
    print(f"{'variant':<38} {'median Mthreads/s':>17} {'p10..p90':>15} {'ratio':>7}")
    for name, values in rates.items():
        q = statistics.quantiles(values, n=10)
        ratio = statistics.median(values) / statistics.median(rates[reference])
        print(f"{name:<38} {statistics.median(values) / 1e6:>17.2f} {q[0] / 1e6:>7.2f}..{q[-1] / 1e6:<6.2f} "
              f"{ratio:>7.3f}")
    print(f"(ratio: to the median of `{reference}`)")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--baseline", type=Path, help="directory of another msl_host package to compare with")
    args = parser.parse_args(argv)

    calls = {}
    if args.baseline:
        calls["(a) moe scalar, baseline runner"] = moe_call(load_baseline(args.baseline).metal_kernel)
    calls["(a) moe scalar, bounds_check=False"] = moe_call(kernel.metal_kernel, bounds_check=False)
    calls["(a) moe scalar, bounds_check=True"] = moe_call(kernel.metal_kernel, bounds_check=True)
    print(f"(a) moe-reduce scalar kernel, 64 x 2048 outputs (131072 threads), top_k 8, float32; "
          f"{args.repeat} calls each")
    report(measure(calls, args.repeat), next(iter(calls)))

    barrier = {"(b) rms_norm_row, bounds_check=False": rms_call(bounds_check=False),
               "(b) rms_norm_row, bounds_check=True": rms_call(bounds_check=True)}
    print(f"\n(b) RMSNorm row kernel, 64 rows x 4096 (65536 threads in groups of 1024, as fibers); "
          f"{args.repeat} calls each")
    report(measure(barrier, args.repeat), next(iter(barrier)))


if __name__ == "__main__":
    main()
