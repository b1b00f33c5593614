"""Throughput of the suite's combine kernels on the CPU runner (msl_host), in threads per second (a
benchmark, not a test).

    python -m moe_reduce.hostbench [--repeat 30] [--baseline DIR]

The scalar and the vectorised body (shaders/) at 64 tokens, h = 2048, top_k = 8, float32, residual and
shared expert on, each with bounds_check=False and True; --baseline DIR adds the same calls with another
copy of the msl_host package (as `python -m msl_host.bench --baseline` does, whose measuring and table
this uses).
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

import mlx.core as mx
from msl_host import bench
from msl_host.examples import Define

from .inputs import make_inputs
from .kernels import INPUT_NAMES, kernel_source, launch_config
from .validate import validate

TOKENS, H, TOP_K = 64, 2048, 8


def combine_call(variant: str, define: Define, checked: bool) -> bench.Call:
    """A call of one combine body defined with `define` (a metal_kernel), and its thread count."""
    args = make_inputs(TOKENS, H, TOP_K, seed=0).mlx("float32")
    problem = validate(*args)
    grid, group, template = launch_config(variant, problem)
    k = define("moe_weighted_reduce", list(INPUT_NAMES), ["out"], kernel_source(variant), bounds_check=checked)
    call = dict(inputs=list(args), template=template, grid=grid, threadgroup=group,
                output_shapes=[(problem.n_tokens, problem.h)], output_dtypes=[mx.float32])
    return (lambda: mx.eval(k(**call))), grid[0] * grid[1] * grid[2]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table per body."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--baseline", type=Path, help="directory of another msl_host package to compare with")
    args = parser.parse_args(argv)
    baseline = bench.load_baseline(args.baseline) if args.baseline else None
    for variant in ("scalar", "vec"):
        print(f"\n{variant} body, {TOKENS} tokens x h {H}, top_k {TOP_K}, float32; {args.repeat} calls each")
        bench.report(bench.measure(bench.variants(functools.partial(combine_call, variant), variant, baseline),
                                   args.repeat))


if __name__ == "__main__":
    main()
