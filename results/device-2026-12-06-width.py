"""Issue 18, target 1: does more work per thread close the gap to Triton at 4-1024 tokens? The row body with
8 and 16 bytes of each row per thread (`row8`, `row16`: W = 2 or 4 floats, 4 or 8 bfloat16s; the shipped
`row` makes 4 bytes), beside `row`, `vec_k` and the Triton peer, timed as `bench` times them (CUPTI GPU time,
the fixed timer), h 2048, top_k 8, both dtypes, one process, so the run's empty kernels set each framework's
launch aside. The two variants exist only in this probe (registered in kernels.VARIANTS here); every row is
checked against the float64 oracle before it is timed, as bench checks.

    OUT=DIR python3 results/device-2026-12-06-width.py [--quick]    # from the repository root, PYTHONPATH=lib
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from moe_reduce import kernels, results
from moe_reduce.impls import available_impls
from moe_reduce.sweep import default_settings, run_sweep

TOKENS = (4, 16, 32, 64, 128, 256, 512, 1024)
IMPLS = ("kernel_row", "kernel_row8", "kernel_row16", "kernel_vec_k", "triton")


class RowBody(kernels.Variant):
    """A row-body variant: W outputs per thread as its template argument, even at 16 bytes a row."""

    @property
    def vector(self) -> bool:
        """Never the vec body's template (NV, ALIGNED)."""
        return False


def register() -> None:
    """Add row8 and row16 to kernels.VARIANTS for this process."""
    for width in (8, 16):
        kernels.VARIANTS[f"row{width}"] = RowBody(f"row{width}", "moe_weighted_reduce_row.metal",
                                                  f"row with {width} bytes per row per thread", row_bytes=width,
                                                  unroll_k=True, per_op=True)  # the row body's ROUNDING (0 here)


def main() -> None:
    """Run the sweep and save it under $OUT/width."""
    quick = "--quick" in sys.argv
    register()
    impls = available_impls(quick)
    chosen = {n: impls[n] for n in IMPLS if n in impls}
    s = default_settings(quick, ("float32", "bfloat16"), ("tokens",), progress=False)
    s.plan = dataclasses.replace(s.plan, tokens=TOKENS[:3] if quick else TOKENS, top_ks=(8,))
    run = run_sweep(chosen, s, ["results/device-2026-12-06-width.py", *sys.argv[1:]])
    out = Path(os.environ.get("OUT", "bench-runs")) / "width"
    results.save_run(run, out)
    print(f"{len(run.rows)} rows, failures {run.meta['failures']}, empty_gpu_us {run.meta['empty_gpu_us']}")
    for r in run.rows:
        print(f"{r.dtype:8s} {r.n_tokens:5d} {r.impl:14s} gpu {r.gpu_us} wall {r.median_us:.2f}")


if __name__ == "__main__":
    main()
