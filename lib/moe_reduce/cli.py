"""Command line: `python -m moe_reduce bench [--quick] [--out DIR] ...` and `python -m moe_reduce plot DIR`.
Bad input, an --out folder that cannot be written included, gets one line and exit status 2, before anything
is measured."""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import plots, results, tune
from .impls import available_impls, kernel_backend, torch_support
from .backends import pick_backend
from .dtypes import KERNEL_DTYPES
from .machine import device_label
from .ops import OPS
from .sweep import DEFAULT_DTYPES, Plan, default_settings, run_sweep
from .timing import TimerConfig

IMPL_NAMES = plots.IMPL_ORDER  # every implementation name, in the figures' legend order


def names_of(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma list whose items must all be in `allowed`."""

    def parse(text: str) -> tuple[str, ...]:
        """'a,b' -> ('a', 'b'), or an ArgumentTypeError naming the bad items and the choices."""
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}; got {text!r}")
        return items

    return parse


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


DTYPES_HELP = f"comma list of {','.join(KERNEL_DTYPES)} (default: {','.join(DEFAULT_DTYPES)})"


def check_writable(parser: argparse.ArgumentParser, argument: str, folder: Path,
                   expected: str = "a folder that can be created or written to") -> None:
    """A parser error (exit status 2) naming the argument unless files can be written into `folder`; called
    before anything is measured."""
    why = results.unwritable(folder)
    if why:
        parser.error(f"argument {argument}: expected {expected}, got {folder}: {why}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: a `bench` and a `plot` command."""
    parser = argparse.ArgumentParser(prog="python -m moe_reduce", description="Benchmark the MoE combine step.")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bench", help="run the sweeps; write CSV, JSON and figures")
    b.add_argument("--op", choices=list(OPS), default="combine",
                   help="the combine, or the combine fused with the next RMSNorm (lesson 04) (default: combine)")
    b.add_argument("--quick", action="store_true", help="few sizes and repeats (under a minute on 2 CPU cores; default: the full sweep)")
    b.add_argument("--out", type=Path,
                   help=f"output folder (default: ./{results.RUNS_DIR}/<device>-<date>/, -fused for --op fused; git "
                        "ignores it: committed runs go in results/)")
    b.add_argument("--dtypes", type=names_of(KERNEL_DTYPES), default=DEFAULT_DTYPES, help=DTYPES_HELP)
    b.add_argument("--impls", type=names_of(IMPL_NAMES),
                   help=f"comma list of {', '.join(IMPL_NAMES)} (default: every one that runs here)")
    b.add_argument("--sweeps", type=names_of(Plan.sweeps), default=Plan.sweeps,
                   help=f"comma list of {','.join(Plan.sweeps)} (default: all three)")
    b.add_argument("--no-residual", action="store_true", help="time the op without the residual add")
    b.add_argument("--no-shared", action="store_true", help="time the op without the gated shared expert")
    b.add_argument("--graph-calls", type=positive_int, default=TimerConfig.graph_calls,
                   help="MLX calls per graph handed to the device (1 = one mx.async_eval per call; default: %(default)s)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = commands.add_parser("plot", help="redraw the figures of a saved run")
    p.add_argument("dir", type=Path, help="a folder holding bench.csv and bench.json")
    t = commands.add_parser("tune", help="measure the launch table behind variant='auto' (GPU and torch needed)")
    t.add_argument("--out", type=Path, required=True, help="folder for tune.csv and launch_table.json")
    t.add_argument("--dtypes", type=names_of(KERNEL_DTYPES), default=DEFAULT_DTYPES, help=DTYPES_HELP)
    return parser


def cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Run the sweep, save the run and its figures, print a summary."""
    out = args.out or results.default_out({"device": device_label(), "date": datetime.date.today().isoformat(),
                                           "op": args.op})
    check_writable(parser, "--out", out)
    available = available_impls(args.quick, args.op)
    names = args.impls or tuple(available)
    missing = [n for n in names if n not in available]
    if missing:
        parser.error(f"argument --impls: {', '.join(missing)} cannot run here (available: {', '.join(sorted(available))})")
    try:
        pick_backend()
    except RuntimeError as e:
        print(f"note: the kernels are not timed: {e}", file=sys.stderr)
    settings = default_settings(args.quick, args.dtypes, args.sweeps, not args.no_residual, not args.no_progress,
                                not args.no_shared, args.graph_calls, args.op)
    run = run_sweep({n: available[n] for n in names}, settings, ["python", "-m", "moe_reduce", *args.argv])
    files = results.save_run(run, out)  # the rows first: a figure that fails to draw loses nothing measured
    figures, not_drawn = plots.plot_run(run, out)
    files += figures
    print("\n".join([summary(run), *not_drawn, f"wrote {len(files)} files to {out}/"]))


def summary(run: results.Run) -> str:
    """Best GB/s and % of ceiling per impl and dtype, the ceilings, the empty-kernel reference time, skips and
    failures."""
    m = run.meta
    lines = [f"device {m['device']}; kernel backend {m['kernel_backend']}; {m['seconds']} s",
             "ceiling " + ", ".join(f"{p}: {v:,.1f} GB/s" for p, v in m["ceiling_gbps"].items()),
             f"reference time, {m['empty_kernel_label']}: " + (f"{m['empty_kernel_us']:.1f} µs" if m["empty_kernel_us"] else "-")]
    for impl in plots.impls_in(run.rows):
        for dtype in m["dtypes"]:
            rows = run.select(impl=impl, dtype=dtype)
            if rows:
                best = max(rows, key=lambda r: r.gbps)
                lines.append(f"  {impl:14s} {dtype:9s} best {best.gbps:9.1f} GB/s = {best.pct_of_ceiling:5.1f}% "
                             f"at T={best.n_tokens} h={best.h} k={best.top_k} ({len(rows)} sizes)")
    lines += [f"skipped: {s}" for s in m["skipped"]] + [f"FAILED: {f}" for f in m["failures"]]
    return "\n".join(lines)


def cmd_plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Redraw every figure of a saved run into its folder."""
    if not args.dir.is_dir():
        parser.error(f"argument dir: expected a folder written by `python -m moe_reduce bench`, got {args.dir}: "
                     f"{'it is a file' if args.dir.exists() else 'it does not exist'}")
    if not results.is_run(args.dir):
        parser.error(f"argument dir: {args.dir} holds no {results.CSV_NAME} and {results.JSON_NAME} "
                     "(a folder written by `python -m moe_reduce bench`)")
    check_writable(parser, "dir", args.dir, "a folder the figures can be written to")
    files, not_drawn = plots.plot_run(results.load_run(args.dir), args.dir)
    print("\n".join([*not_drawn, f"wrote {len(files)} figures to {args.dir}/"]))


def cmd_tune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Measure the launch table on this GPU and write it."""
    if kernel_backend() in (None, "host") or torch_support() is None:
        parser.error("tune: needs a GPU kernel backend (cuda or metal) and PyTorch with CUDA for GPU time")
    check_writable(parser, "--out", args.out)
    table = tune.tune(args.out, args.dtypes)
    print(f"wrote {args.out}/tune.csv and {args.out}/launch_table.json ({sum(map(len, table['cards'].values()))} entries)")


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    {"bench": cmd_bench, "plot": cmd_plot, "tune": cmd_tune}[args.command](args, parser)
