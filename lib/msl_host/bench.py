"""Throughput of the CPU runner, in threads per second (a benchmark, not a test).

    python -m msl_host.bench [--repeat 30] [--baseline DIR]

(a) a plain kernel: the matrix product of msl_host.examples, 64 x 8 times 8 x 2048 in float32, one
    thread per output (131072 threads) with a loop of 8, no barriers: its threads run in a plain loop.
(b) a barrier kernel: the RMSNorm row kernel of msl_host.examples on 64 rows of 4096 floats, one
    threadgroup of 1024 threads per row (fibers, simd_sum, threadgroup memory, barriers).
Each with bounds_check=False and True. --baseline DIR: the same kernels, both ways, with another copy of
the msl_host package too (say the runner as it was at a given commit: `git archive COMMIT lib/msl_host |
tar -x -C DIR`, then DIR/lib/msl_host), loaded under another name; each line then gives its ratio to the
baseline's line of the same kernel and mode. Calls are interleaved, round by round, so that every variant
sees the same machine; each call is a whole kernel call (Python included) on inputs prepared once.
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

Call = tuple[Callable[[], object], int]  # a call, and the threads it runs


def matmul_call(define: examples.Define, checked: bool) -> Call:
    """A call of the matrix-product kernel (64 x 8 times 8 x 2048), and its thread count."""
    a = mx.random.normal((64, 8), key=mx.random.key(0))
    b = mx.random.normal((8, 2048), key=mx.random.key(1))
    return (lambda: mx.eval(examples.matmul(a, b, define, bounds_check=checked))), 64 * 2048


def rms_call(define: examples.Define, checked: bool) -> Call:
    """A call of the RMSNorm row kernel on 64 rows of 4096, and its thread count."""
    x = mx.random.normal((64, 4096), key=mx.random.key(0))
    w = mx.random.normal((4096,), key=mx.random.key(1))
    launch = examples.row_launch(*x.shape)
    run = lambda: mx.eval(examples.rms_norm(x, w, 1e-5, define, bounds_check=checked))  # noqa: E731
    return run, launch["grid"][0] * launch["grid"][1]


def load_baseline(directory: Path) -> ModuleType:
    """The msl_host package in `directory`, imported as msl_host_baseline."""
    spec = importlib.util.spec_from_file_location("msl_host_baseline", directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["msl_host_baseline"] = module
    spec.loader.exec_module(module)
    return module


def variants(make: Callable[[examples.Define, bool], Call], what: str, baseline: ModuleType | None) -> dict[str, Call]:
    """The calls of one kernel: unchecked and checked, with the baseline's runner first when given."""
    runners = ([("baseline", baseline.metal_kernel)] if baseline else []) + [("msl_host", kernel.metal_kernel)]
    return {f"{what}, {runner}, bounds_check={checked}": make(define, checked)
            for runner, define in runners for checked in (False, True)}


def measure(calls: dict[str, Call], repeat: int) -> dict[str, list[float]]:
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


def report(rates: dict[str, list[float]]) -> None:
    """One line per variant: median and spread (10th..90th percentile) of threads/s and, for this runner's
    lines, the ratio of its median to the baseline's line of the same kernel and mode (if measured)."""
    print(f"{'variant':<46} {'median Mthreads/s':>17} {'p10..p90':>15} {'vs baseline':>11}")
    for name, values in rates.items():
        q = statistics.quantiles(values, n=10)
        reference = rates.get(name.replace(", msl_host,", ", baseline,"))
        ratio = (f"{statistics.median(values) / statistics.median(reference):.3f}"
                 if reference is not None and reference is not values else "")
        print(f"{name:<46} {statistics.median(values) / 1e6:>17.2f} {q[0] / 1e6:>7.2f}..{q[-1] / 1e6:<6.2f} "
              f"{ratio:>11}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--baseline", type=Path, help="directory of another msl_host package to compare with")
    args = parser.parse_args(argv)
    baseline = load_baseline(args.baseline) if args.baseline else None

    print(f"(a) matrix product, 64 x 8 times 8 x 2048 (131072 threads, a loop of 8 each), float32; "
          f"{args.repeat} calls each")
    report(measure(variants(matmul_call, "(a) matmul", baseline), args.repeat))
    print(f"\n(b) RMSNorm row kernel, 64 rows x 4096 (65536 threads in groups of 1024, as fibers); "
          f"{args.repeat} calls each")
    report(measure(variants(rms_call, "(b) rms_norm_row", baseline), args.repeat))


if __name__ == "__main__":
    main()
