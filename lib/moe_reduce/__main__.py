"""Command line: `python -m moe_reduce bench [--quick] [--out DIR] ...` and `python -m moe_reduce plot DIR`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import bench, plots


def csv_list(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b')."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: a `bench` and a `plot` command."""
    parser = argparse.ArgumentParser(prog="python -m moe_reduce", description="Benchmark the MoE combine step.")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bench", help="run the sweeps; write CSV, JSON and figures")
    b.add_argument("--quick", action="store_true", help="few sizes and repeats (under a minute on 2 CPU cores)")
    b.add_argument("--out", type=Path, help="output folder (default results/<device>-<date>/)")
    b.add_argument("--dtypes", type=csv_list, default=("float32", "bfloat16"), help="comma list of dtypes")
    b.add_argument("--impls", type=csv_list, help="comma list of implementations (default: all present)")
    b.add_argument("--sweeps", type=csv_list, default=bench.Plan.sweeps, help="comma list of tokens,hidden,heatmap")
    b.add_argument("--no-residual", action="store_true", help="time the op without the residual add")
    b.add_argument("--no-shared", action="store_true", help="time the op without the gated shared expert")
    b.add_argument("--graph-calls", type=int, help="MLX calls per graph handed to the device (default "
                   f"{bench.TimerConfig.graph_calls}; 1 = one mx.async_eval per call)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = commands.add_parser("plot", help="re-plot a saved run")
    p.add_argument("dir", type=Path, help="a folder holding bench.csv and bench.json")
    return parser


def cmd_bench(args: argparse.Namespace) -> None:
    """Run the sweep, save the run and its figures, print a summary."""
    available = bench.available_impls(args.quick)
    names = args.impls or tuple(available)
    missing = [n for n in names if n not in available]
    if missing:
        sys.exit(f"--impls: {missing} not available here (available: {sorted(available)})")
    settings = bench.default_settings(args.quick, args.dtypes, args.sweeps, not args.no_residual, not args.no_progress,
                                      not args.no_shared, args.graph_calls)
    run = bench.run_sweep({n: available[n] for n in names}, settings, ["python", "-m", "moe_reduce", *args.argv])
    out = args.out or bench.default_out(run)
    files = bench.save_run(run, out) + plots.plot_run(run, out)
    print(summary(run))
    print(f"wrote {len(files)} files to {bench.rel(out)}/")


def summary(run: bench.Run) -> str:
    """Best GB/s and % of ceiling per impl and dtype, the ceilings, the floor, skips and failures."""
    m = run.meta
    lines = [f"device {m['device']}; kernel backend {m['kernel_backend']}; {m['seconds']} s",
             "ceiling " + ", ".join(f"{p}: {v:,.1f} GB/s" for p, v in m["ceiling_gbps"].items()),
             f"floor {m['empty_kernel_label']}: " + (f"{m['empty_kernel_us']:.1f} µs" if m["empty_kernel_us"] else "-")]
    for impl in plots.impls_in(run.rows):
        for dtype in m["dtypes"]:
            rows = run.select(impl=impl, dtype=dtype)
            if rows:
                best = max(rows, key=lambda r: r.gbps)
                lines.append(f"  {impl:14s} {dtype:9s} best {best.gbps:9.1f} GB/s = {best.pct_of_ceiling:5.1f}% "
                             f"at T={best.n_tokens} h={best.h} k={best.top_k} ({len(rows)} sizes)")
    lines += [f"skipped: {s}" for s in m["skipped"]] + [f"FAILED: {f}" for f in m["failures"]]
    return "\n".join(lines)


def cmd_plot(args: argparse.Namespace) -> None:
    """Re-draw every figure of a saved run into its folder."""
    files = plots.plot_run(bench.load_run(args.dir), args.dir)
    print(f"wrote {len(files)} figures to {bench.rel(args.dir)}/")


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    {"bench": cmd_bench, "plot": cmd_plot}[args.command](args)


if __name__ == "__main__":
    main()
