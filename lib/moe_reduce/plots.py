"""Figures of a benchmark run (Agg, no pyplot state), sized and lettered to be read at a notebook's width
(~1000 px): throughput against n_tokens and h with the ceiling and the datasheet bandwidth, the default
kernel's % of the ceiling over (n_tokens × h), time per call at decode sizes, and GPU time beside wall time
with our kernel against the Triton peer; throughput on log axes with every line told apart (colour-blind-safe), and
a roofline from Nsight Compute's DRAM bytes; exported as PNG and SVG with deterministic metadata."""
from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; these figures never open a window

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .contender import HOST_MAX_OUTPUTS
from .results import Row, Run

IMPL_ORDER = ("kernel_auto", "kernel_row", "kernel_vec_k", "kernel_vec", "kernel_scalar_k", "kernel_scalar", "kernel_fused",
              "kernel_two_step", "triton", "triton_graph", "triton_fused", "torch_compile", "torch_compile_graph",
              "torch_compile_two_step", "torch", "mlx_compile", "mlx", "numpy")
COLORS = dict(zip(IMPL_ORDER, ("#d62728", "#17becf", "#e377c2", "#ff7f0e", "#bcbd22", "#ffbb78", "#d62728", "#ff7f0e", "#8c564b",
                               "#8c564b", "#8c564b", "#9467bd", "#9467bd", "#9467bd", "#c5b0d5", "#2ca02c", "#1f77b4",
                               "#7f7f7f")))
DASHED = {"triton_graph", "torch_compile_graph"}  # the CUDA-graph launches of a contender drawn dashed
DPI = 100
STYLE = {"font.size": 10.5, "axes.titlesize": 11, "axes.labelsize": 10.5, "xtick.labelsize": 9.5,
         "ytick.labelsize": 9.5, "legend.fontsize": 9.5, "figure.titlesize": 12}  # 9.5 pt at 100 dpi = 13 px
SVG_SALT = "moe-reduce"
DECODE_TOKENS = 64  # n_tokens up to this count as decode sizes (the latency plot)


def styled(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under STYLE (fonts are fixed when artists are made)."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return make(*args, **kwargs)

    return wrapper


def impls_in(rows: Sequence[Row]) -> list[str]:
    """Implementation names present, in legend order."""
    present = {r.impl for r in rows}
    return [i for i in IMPL_ORDER if i in present] + sorted(present - set(IMPL_ORDER))


def on_gpu(run: Run) -> bool:
    """Whether the run's kernels ran on a GPU (it then has GPU times and a datasheet bandwidth)."""
    return run.meta.get("kernel_backend") in ("cuda", "metal")


def title(run: Run, what: str, dtype: str) -> str:
    """'<what> — <device> (<backend>, <dtype>)'."""
    backend = run.meta.get("kernel_backend") or run.meta.get("mlx_device", "?")
    return f"{what} — {run.meta['device']} ({backend}, {dtype})"


def line(ax: Axes, rows: Sequence[Row], x: str, y: str, label: str, band: tuple[str, str] | None = None,
         **style) -> None:
    """One implementation: median line with markers and, if given, a shaded 20–80 percentile band."""
    rows = sorted(rows, key=lambda r: getattr(r, x))
    xs = [getattr(r, x) for r in rows]
    kw = dict(marker="o", ms=3.5, lw=1.6, color=COLORS.get(label), label=label, ls="--" if label in DASHED else "-") | style
    ax.plot(xs, [getattr(r, y) for r in rows], **kw)
    if band:
        lo, hi = ([stat(r, b) for r in rows] for b in band)
        ax.fill_between(xs, lo, hi, color=kw["color"], alpha=0.15, lw=0)


def stat(r: Row, name: str) -> float:
    """A row's field, or GB/s at its 80th/20th percentile time ('gbps_p80' is the slower, lower one)."""
    if name.startswith("gbps_"):
        return r.bytes / (getattr(r, name[5:] + "_us") * 1e-6) / 1e9
    return getattr(r, name)


def limit_lines(ax: Axes, run: Run, processor: str) -> None:
    """The ceiling (best traffic kernel of the run) and, on a GPU, the datasheet bandwidth, as dashed lines."""
    ceiling = run.meta["ceiling_gbps"].get(processor)
    basis = run.meta.get("ceiling_methods", {}).get(processor, {}).get("basis", "wall time")
    if ceiling:
        ax.axhline(ceiling, ls="--", lw=1.2, color="k", label=f"ceiling: best traffic kernel, {ceiling:,.0f} GB/s "
                                                               f"({basis})")
    sheet = run.meta.get("datasheet_gbps", {}).get(processor)
    if sheet:
        ax.axhline(sheet, ls=":", lw=1.2, color="0.4", label=f"datasheet {sheet:,.0f} GB/s")


def log2_x(ax: Axes) -> None:
    """A base-2 log x-axis labelled with plain numbers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def throughput_panel(ax: Axes, run: Run, rows: Sequence[Row], x: str) -> None:
    """Wall-time GB/s against x (log2) per implementation, with the limits dashed."""
    for impl in impls_in(rows):
        line(ax, [r for r in rows if r.impl == impl], x, "gbps", impl, ("gbps_p80", "gbps_p20"))
    limit_lines(ax, run, "gpu" if on_gpu(run) else "cpu")
    log2_x(ax)
    ax.set_xlabel({"n_tokens": "n_tokens (tokens per call)", "h": "h (hidden size, elements)"}[x])
    ax.set_ylabel("GB/s (minimum bytes / wall time)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def legend(fig: Figure, ncol: int = 4) -> None:
    """One legend below the panels with every distinct label of every panel."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncol=ncol, frameon=False)


def panels(n: int, width: float = 10.0, height: float = 5.0) -> tuple[Figure, list[Axes]]:
    """A row of n panels sharing a figure `width` inches wide (1000 px at 100 dpi)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, n)))


@styled
def tokens_figure(run: Run, dtype: str) -> Figure:
    """(a) Throughput against n_tokens at the plan's h, one panel per top_k."""
    h = run.meta["plan"]["tokens_h"]
    top_ks = sorted({r.top_k for r in run.select(dtype=dtype, h=h)} & set(run.meta["plan"]["top_ks"]))
    fig, axes = panels(max(1, len(top_ks)), height=6.0)
    for ax, k in zip(axes, top_ks):
        throughput_panel(ax, run, run.select(dtype=dtype, h=h, top_k=k), "n_tokens")
        ax.set_title(f"h = {h}, top_k = {k}")
    fig.suptitle(title(run, "Throughput vs n_tokens", dtype))
    legend(fig, 3)
    return fig


@styled
def hidden_figure(run: Run, dtype: str) -> Figure:
    """(b) Throughput against h at the plan's n_tokens."""
    plan = run.meta["plan"]
    n, k = plan["hiddens_tokens"], plan["top_ks"][0]
    fig, (ax,) = panels(1, width=8.0, height=5.5)
    throughput_panel(ax, run, run.select(dtype=dtype, n_tokens=n, top_k=k), "h")
    ax.set_title(f"n_tokens = {n}, top_k = {k}")
    fig.suptitle(title(run, "Throughput vs h", dtype))
    legend(fig, 3)
    return fig


def heat_grid(rows: Sequence[Row]) -> tuple[list[int], list[int], np.ndarray]:
    """(n_tokens values, h values, % of ceiling with NaN where unmeasured) from one impl's rows."""
    ts, hs = sorted({r.n_tokens for r in rows}), sorted({r.h for r in rows})
    grid = np.full((len(ts), len(hs)), np.nan)
    for r in rows:
        grid[ts.index(r.n_tokens), hs.index(r.h)] = r.pct_of_ceiling
    return ts, hs, grid


@styled
def heatmap_figure(run: Run, dtype: str, impl: str = "kernel_auto") -> Figure:
    """(c) One kernel's % of the ceiling (wall time) over n_tokens × h, each cell annotated."""
    plan = run.meta["plan"]
    k = plan["heat_top_k"]
    ts, hs, grid = heat_grid([r for r in run.select(dtype=dtype, impl=impl, top_k=k)
                              if r.n_tokens in plan["heat_tokens"] and r.h in plan["heat_hiddens"]])
    fig, (ax,) = panels(1, width=8.0, height=5.5)
    image = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", color="w" if v < 60 else "k")
    ax.set_xticks(range(len(hs)), [str(h) for h in hs])
    ax.set_yticks(range(len(ts)), [str(t) for t in ts])
    ax.set_xlabel("h (hidden size, elements)")
    ax.set_ylabel("n_tokens (tokens per call)")
    ax.set_title(f"{impl}, top_k = {k} (blank: over the memory budget)")
    fig.colorbar(image, ax=ax, label="% of the ceiling (wall time)")
    fig.suptitle(title(run, "Where the kernel reaches memory speed", dtype))
    return fig


def log_axis(axis) -> None:
    """A log axis labelled with plain numbers at 1-2-5 steps (no crowded minor labels)."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


@styled
def latency_figure(run: Run, dtype: str) -> Figure:
    """(d) Time per call at decode sizes (n_tokens ≤ 64); on a GPU, against an empty kernel launched the same
    way (not drawn on the CPU-only host path, where MLX's own ops run faster than that per-call cost)."""
    plan = run.meta["plan"]
    h, k = plan["tokens_h"], plan["top_ks"][0]
    rows = [r for r in run.select(dtype=dtype, h=h, top_k=k) if r.n_tokens <= DECODE_TOKENS]
    fig, (ax,) = panels(1, width=9.0, height=5.5)
    for impl in impls_in(rows):
        line(ax, [r for r in rows if r.impl == impl], "n_tokens", "median_us", impl, ("p20_us", "p80_us"))
    empty = run.meta.get("empty_kernel_us")
    if empty and on_gpu(run):
        ax.axhline(empty, ls="--", lw=1.2, color="k", label=f"{run.meta['empty_kernel_label']}: {empty:.1f} µs")
    log2_x(ax)
    ax.set_yscale("log")
    log_axis(ax.yaxis)
    ax.set_xlabel("n_tokens (tokens per call)")
    ax.set_ylabel("wall time per call (µs, median; band 20–80%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"decode sizes, h = {h}, top_k = {k}")
    fig.suptitle(title(run, "Time per call", dtype))
    legend(fig, 3)
    return fig


@styled
def gpu_figure(run: Run, dtype: str, ours: str = "kernel_auto", peer: str = "triton") -> Figure:
    """(e) Left: wall time (solid) and GPU time (dashed) per call against n_tokens for our default kernel and the
    Triton peer. Right: our GPU time over the peer's at every size of the n_tokens sweep."""
    h = run.meta["plan"]["tokens_h"]
    fig, (left, right) = panels(2, height=5.5)
    for impl in (ours, peer):
        rows = run.select(dtype=dtype, h=h, top_k=run.meta["plan"]["top_ks"][0], impl=impl)
        line(left, rows, "n_tokens", "median_us", f"{impl}, wall", color=COLORS.get(impl))
        line(left, rows, "n_tokens", "gpu_us", f"{impl}, GPU", ls="--", marker="s", color=COLORS.get(impl))
    for k, marker in zip(run.meta["plan"]["top_ks"], "o^"):
        pairs = [(a, b) for a in run.select(dtype=dtype, h=h, top_k=k, impl=ours)
                 for b in run.select(dtype=dtype, h=h, top_k=k, impl=peer) if a.n_tokens == b.n_tokens]
        pairs.sort(key=lambda p: p[0].n_tokens)
        right.plot([a.n_tokens for a, _ in pairs], [a.gpu_us / b.gpu_us for a, b in pairs], marker=marker, color="C3",
                   lw=1.6, label=f"{ours} / {peer}, GPU time, top_k = {k}")
    right.axhline(1.0, color="k", lw=1)
    for ax in (left, right):
        log2_x(ax)
        ax.set_xlabel("n_tokens (tokens per call)")
        ax.grid(alpha=0.3, which="both")
    left.set_yscale("log")
    log_axis(left.yaxis)
    left.set_ylabel("µs per call (median)")
    left.set_title(f"wall and GPU time, h = {h}")
    right.set_ylabel("GPU time ratio (1 = level)")
    right.set_ylim(bottom=0)
    right.set_title("our kernel over the Triton peer")
    fig.suptitle(title(run, "GPU time beside wall time", dtype))
    legend(fig, 3)
    return fig


def export(fig: Figure, folder: Path, stem: str) -> list[Path]:
    """Save <stem>.png and <stem>.svg with no date or software stamp and a fixed SVG id salt."""
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(png, dpi=DPI, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


FIGURES = {"tokens": tokens_figure, "hidden": hidden_figure, "heatmap": heatmap_figure, "latency": latency_figure,
           "gpu": gpu_figure}


def widest(rows: Sequence[Row], x: str) -> int:
    """The most distinct values of x that one implementation has among rows (a line needs two)."""
    return max((len({getattr(r, x) for r in rows if r.impl == impl}) for impl in impls_in(rows)), default=0)


def measured_at(rows: Sequence[Row], x: str) -> str:
    """'kernel_fused at n_tokens 1; kernel_two_step at n_tokens 1', or 'nothing'."""
    return "; ".join(f"{impl} at {x} {', '.join(str(v) for v in sorted({getattr(r, x) for r in rows if r.impl == impl}))}"
                     for impl in impls_in(rows)) or "nothing"


def why_not_drawn(run: Run, name: str, dtype: str) -> str | None:
    """Why a run lacks what a figure needs, or None when it has it: a line figure needs one implementation at two
    or more sizes on its x-axis; the heatmap needs the default kernel over 4 cells of the grid; the GPU-time
    figure needs GPU times of our kernel and the Triton peer."""
    plan = run.meta["plan"]
    h, n, k = plan["tokens_h"], plan["hiddens_tokens"], plan["top_ks"][0]
    lines = {"tokens": (run.select(dtype=dtype, h=h), "n_tokens", f"h = {h}"),
             "hidden": (run.select(dtype=dtype, n_tokens=n, top_k=k), "h", f"n_tokens = {n}, top_k = {k}"),
             "latency": ([r for r in run.select(dtype=dtype, h=h, top_k=k) if r.n_tokens <= DECODE_TOKENS], "n_tokens",
                         f"h = {h}, top_k = {k}, n_tokens <= {DECODE_TOKENS}")}
    if name in lines:
        rows, x, where = lines[name]
        if widest(rows, x) >= 2:
            return None
        host = (f"; the host path times our kernels only at n_tokens·h <= {HOST_MAX_OUTPUTS}"
                if run.meta.get("kernel_backend") == "host" else "")
        return f"no implementation was measured at two or more {x} at {where} (measured: {measured_at(rows, x)}{host})"
    if name == "heatmap" and "heatmap" not in plan.get("sweeps", ["heatmap"]):
        return "the run has no heatmap sweep"
    if name == "heatmap":
        cells = len({(r.n_tokens, r.h) for r in run.select(dtype=dtype, impl="kernel_auto")})
        return None if cells >= 4 else f"kernel_auto was measured at {cells} of the grid's sizes, fewer than 4"
    rows = run.select(dtype=dtype, impl="triton") + run.select(dtype=dtype, impl="kernel_auto")
    if rows and not any(math.isnan(r.gpu_us) for r in rows):
        return None
    return "no GPU times of kernel_auto and triton in this run (a GPU run with PyTorch and Triton has them)"


def plot_run(run: Run, folder: Path) -> tuple[list[Path], list[str]]:
    """Every figure a run has data for, for every dtype in it, exported into folder; returns the files written
    and a sentence for each figure not drawn, saying why."""
    written, skipped = [], []
    for dtype in sorted({r.dtype for r in run.rows}):
        for name, make in FIGURES.items():
            why = why_not_drawn(run, name, dtype)
            if why is None:
                written += export(make(run, dtype), folder, f"{name}_{dtype}")
            else:
                skipped.append(f"{name}_{dtype} not drawn: {why}")
    return written, skipped


@styled
def roofline_figure(peaks: dict[str, tuple[float, float]], points: dict[str, float]) -> Figure:
    """Attainable FLOP/s, min(peak, intensity × bandwidth), against flop/byte for each card (`peaks`: card -> (peak
    FLOP/s, bytes/s)), log-log, with the balance points marked and each of `points` (label -> flop/byte) on each
    card's roof."""
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.geomspace(0.1, 100, 400)
    for (card, (peak, bandwidth)), color in zip(peaks.items(), ("#1f77b4", "#ff7f0e")):
        ax.plot(x, np.minimum(peak, x * bandwidth) / 1e12, color=color, lw=2,
                label=f"{card}: {peak / 1e12:g} TFLOP/s, {bandwidth / 1e12:g} TB/s")
        ax.plot([peak / bandwidth], [peak / 1e12], "o", mfc="white", color=color, ms=7)
        ax.annotate(f"balance {peak / bandwidth:.0f} flop/byte", (peak / bandwidth, peak / 1e12), color=color,
                    textcoords="offset points", xytext=(6, -16 if color == "#1f77b4" else 6), fontsize=9.5)
        for label, intensity in points.items():
            ax.plot([intensity], [intensity * bandwidth / 1e12], "s", color=color, ms=6)
    for label, intensity in points.items():
        ax.axvline(intensity, color="0.5", lw=1, ls=":")
        ax.annotate(label, (intensity, 0.12), rotation=90, fontsize=9.5, color="0.3", textcoords="offset points",
                    xytext=(-12, 0), va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.1, 100)
    ax.set_ylim(0.1, 200)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("arithmetic intensity (flop/byte)")
    ax.set_ylabel("attainable TFLOP/s (float32)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="upper left", frameon=False)
    return fig


FUSED_LABELS = {"kernel_fused": "our fused kernel", "kernel_two_step": "ours, two steps (mx.fast.rms_norm)",
                "torch_compile_two_step": "torch.compile, two steps", "triton_fused": "Triton, fused"}


def fused_time_panel(ax: Axes, run: Run, dtype: str, field: str, h: int, top_k: int) -> None:
    """Lesson 04's panel: one implementation per line against n_tokens, log-log; wall time with its 20-80% band."""
    for impl, label in FUSED_LABELS.items():
        rows = sorted(run.select(impl=impl, dtype=dtype, h=h, top_k=top_k), key=lambda r: r.n_tokens)
        line(ax, rows, "n_tokens", field, label, ("p20_us", "p80_us") if field == "median_us" else None,
             color=COLORS[impl], ms=4)
    log2_x(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel("µs (log scale)")
    ax.grid(alpha=0.3, which="both")


@styled
def fused_time_figure(runs: dict[str, Run], dtype: str, h: int, top_k: int) -> Figure:
    """Lesson 04's times: wall time above, GPU time below, one column per card (`runs`: card -> fused run)."""
    fig = Figure(figsize=(10.0, 8.0), layout="constrained")
    axes = fig.subplots(2, len(runs), sharex=True, squeeze=False)
    for col, (card, run) in enumerate(runs.items()):
        for row, (field, what) in enumerate((("median_us", "wall time per call"), ("gpu_us", "GPU time per call"))):
            fused_time_panel(axes[row, col], run, dtype, field, h, top_k)
            axes[row, col].set_title(f"{card}, {dtype}: {what}")
        axes[1, col].set_xlabel(f"n_tokens (h = {h}, top_k = {top_k})")
    legend(fig, ncol=2)
    return fig


# ------------------------------------------------------------------ throughput on a log axis, lines told apart

# Okabe & Ito's colour-blind-safe palette; a family shares a colour, its members differ by marker and line style,
# and launches replayed from a CUDA graph are dotted.
OKABE_ITO = {"vermillion": "#D55E00", "orange": "#E69F00", "purple": "#CC79A7", "blue": "#0072B2",
             "green": "#009E73", "sky": "#56B4E9", "black": "#000000", "grey": "#7F7F7F"}
LINE_STYLES = {  # impl: (colour, marker, line style)
    "kernel_auto": ("vermillion", "o", "-"), "kernel_row": ("vermillion", "D", "--"),
    "kernel_vec_k": ("orange", "s", "-"), "kernel_vec": ("orange", "D", "--"),
    "kernel_scalar_k": ("purple", "^", "-"), "kernel_scalar": ("purple", "v", "--"), "triton": ("blue", "P", "-"),
    "triton_graph": ("blue", "P", ":"), "torch_compile": ("green", "X", "-"), "torch_compile_graph": ("green", "X", ":"),
    "torch": ("sky", "h", "-"), "mlx_compile": ("black", "*", "-"), "mlx": ("grey", "d", "-"), "numpy": ("grey", "x", "--"),
}


def line_style(impl: str) -> dict:
    """Colour, marker and line style of an implementation's line (grey circles for one not in LINE_STYLES)."""
    colour, marker, ls = LINE_STYLES.get(impl, ("grey", "o", "-"))
    return dict(color=OKABE_ITO[colour], marker=marker, ls=ls, lw=2.4 if impl == "kernel_auto" else 1.5, ms=5)


def limit_labels(ax: Axes, run: Run, processor: str) -> None:
    """The ceiling (solid) and datasheet bandwidth (dashed) as thin grey lines, each named in the legend."""
    ceiling = run.meta["ceiling_gbps"].get(processor)
    if ceiling:
        ax.axhline(ceiling, lw=1.0, color="0.35", label=f"ceiling, {ceiling:,.0f} GB/s")
    sheet = run.meta.get("datasheet_gbps", {}).get(processor)
    if sheet:
        ax.axhline(sheet, lw=1.0, ls="--", color="0.55", label=f"datasheet, {sheet:,.0f} GB/s")


@styled
def tokens_log_figure(run: Run, dtype: str, basis: str = "gbps") -> Figure:
    """Throughput (GB/s of minimum bytes; `basis` 'gbps' for wall time, 'gpu_gbps' for GPU time) against n_tokens on
    log axes, one panel per top_k of the plan, every implementation told apart by colour family, marker and line
    style (LINE_STYLES)."""
    h = run.meta["plan"]["tokens_h"]
    top_ks = sorted({r.top_k for r in run.select(dtype=dtype, h=h)} & set(run.meta["plan"]["top_ks"]))
    fig, axes = panels(max(1, len(top_ks)), height=6.0)
    for ax, k in zip(axes, top_ks):
        rows = run.select(dtype=dtype, h=h, top_k=k)
        for impl in impls_in(rows):
            mine = sorted((r for r in rows if r.impl == impl and getattr(r, basis) == getattr(r, basis)),
                          key=lambda r: r.n_tokens)
            ax.plot([r.n_tokens for r in mine], [getattr(r, basis) for r in mine], label=impl, **line_style(impl))
        limit_labels(ax, run, "gpu" if on_gpu(run) else "cpu")
        log2_x(ax)
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xlabel("n_tokens (tokens per call)")
        ax.set_ylabel(f"GB/s (minimum bytes / {'GPU' if basis == 'gpu_gbps' else 'wall'} time)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"h = {h}, top_k = {k}")
    fig.suptitle(title(run, "Throughput vs n_tokens", dtype))
    legend(fig, 4)
    return fig


# ------------------------------------------------------------------ roofline from Nsight Compute's DRAM bytes

COUNTER_COLUMNS = ("label", "n_tokens", "dtype", "dram_bytes", "gpu_time_ns")
SERIES_COLOURS = ("vermillion", "blue", "green", "purple", "orange", "sky", "black")  # far apart in turn


@dataclass(frozen=True)
class DramPoint:
    """One profiled kernel launch: what ran (label, n_tokens, dtype), the bytes DRAM moved for it as Nsight Compute
    counted them (dram__bytes_read.sum + dram__bytes_write.sum, caches flushed) and its duration
    (gpu__time_duration.sum, ns)."""

    label: str
    n_tokens: int
    dtype: str
    dram_bytes: float
    gpu_time_ns: float

    @property
    def gbps(self) -> float:
        """Achieved DRAM bandwidth, GB/s (10^9 bytes/s)."""
        return self.dram_bytes / self.gpu_time_ns


def read_dram_counters(path: Path) -> list[DramPoint]:
    """Rows of a counters CSV with the columns COUNTER_COLUMNS (others ignored); ValueError naming the file and the
    missing columns, or the row with a non-positive byte count or time."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COUNTER_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: expected the columns {', '.join(COUNTER_COLUMNS)}; missing {', '.join(missing)}")
        points = [DramPoint(r["label"], int(r["n_tokens"]), r["dtype"], float(r["dram_bytes"]), float(r["gpu_time_ns"]))
                  for r in reader]
    bad = next((p for p in points if not (p.dram_bytes > 0 and p.gpu_time_ns > 0)), None)
    if bad:
        raise ValueError(f"{path}: dram_bytes and gpu_time_ns must be positive, got {bad}")
    return points


@styled
def roofline(points: Sequence[DramPoint], ceiling_gbps: float, device: str, datasheet_gbps: float | None = None) -> Figure:
    """Left: GPU time against DRAM bytes per launch (log-log) under the roof bytes / ceiling, the fastest a launch
    moving those bytes can be at the measured ceiling. Right: achieved DRAM bandwidth (bytes / time) against the
    same bytes, with the ceiling (and the datasheet figure, if given) as lines. One series per (label, dtype),
    each point annotated with its n_tokens."""
    fig, (left, right) = panels(2, height=5.5)
    series = sorted({(p.label, p.dtype) for p in points})
    for i, (label, dtype) in enumerate(series):
        mine = sorted((p for p in points if (p.label, p.dtype) == (label, dtype)), key=lambda p: p.dram_bytes)
        colour = OKABE_ITO[SERIES_COLOURS[i % len(SERIES_COLOURS)]]
        style = dict(color=colour, marker="os^Dv*"[i % 6], ls="-", lw=1.5, ms=6, label=f"{label}, {dtype}")
        left.plot([p.dram_bytes for p in mine], [p.gpu_time_ns / 1e3 for p in mine], **style)
        right.plot([p.dram_bytes for p in mine], [p.gbps for p in mine], **style)
        for p in mine:
            right.annotate(f"{p.n_tokens}", (p.dram_bytes, p.gbps), textcoords="offset points", xytext=(-5, 5),
                           ha="right", fontsize=8, color=colour)
    span = np.geomspace(min(p.dram_bytes for p in points) / 1.5, max(p.dram_bytes for p in points) * 1.5, 50)
    left.plot(span, span / ceiling_gbps / 1e3, color="k", lw=1.2, label=f"roof: bytes / ceiling ({ceiling_gbps:,.0f} GB/s)")
    right.axhline(ceiling_gbps, color="k", lw=1.2, ls="-.", label="measured ceiling")
    if datasheet_gbps:
        right.axhline(datasheet_gbps, color="0.5", lw=1.0, ls="--", label=f"datasheet, {datasheet_gbps:,.0f} GB/s")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xlabel("DRAM bytes per launch (Nsight Compute)")
        ax.grid(alpha=0.3, which="both")
    left.set_ylabel("GPU time per launch (µs)")
    left.set_title("time against the roof")
    right.set_ylabel("achieved DRAM bandwidth (GB/s)")
    right.set_title("bandwidth against the ceiling")
    fig.suptitle(f"Roofline from Nsight Compute's DRAM bytes — {device}")
    legend(fig, 3)
    return fig


SMALL_KERNELS = {"scalar_k": "#d62728", "vec_k": "#ff7f0e", "b4": "#9467bd", "b16": "#8c564b", "triton": "#1f77b4"}


@styled
def small_calls_figure(best: dict[tuple[str, str, int], dict], floor_us: float, peak_gbps: float, top_k: int,
                       h: int) -> Figure:
    """Best GPU µs per kernel against n_tokens (log-log), float32 and bfloat16, with an empty kernel's time and
    the bytes at a peak bandwidth."""
    from .traffic import bytes_moved

    fig, axes = panels(2, height=4.5)
    for ax, dtype in zip(axes, ("float32", "bfloat16")):
        for kernel, colour in SMALL_KERNELS.items():
            pts = sorted((n, r["gpu_us"]) for (d, k, n), r in best.items() if d == dtype and k == kernel)
            ax.plot(*zip(*pts), marker="o", ms=3, color=colour, label=kernel)
        ns = np.array(sorted({n for (d, _, n) in best if d == dtype}))
        ax.plot(ns, [bytes_moved(int(n), top_k, h, dtype) / peak_gbps / 1e3 for n in ns], "k--", lw=1,
                label=f"bytes / {peak_gbps:,.0f} GB/s")
        ax.axhline(floor_us, color="0.5", lw=1, ls=":", label=f"empty MLX kernel, {floor_us:.2f} µs")
        log2_x(ax)
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xlabel("n_tokens")
        ax.set_title(dtype)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("GPU time per call (µs, CUPTI median)")
    fig.suptitle(f"Best over threads per kernel, h {h}, top_k {top_k} — NVIDIA H100 (2026-12-05 probes)")
    legend(fig, 4)
    return fig


def time_model_figure(rows: dict[str, list[tuple[int, float, float]]], device: str) -> Figure:
    """Left: measured GPU µs per call (points) and the model's (line) against n_tokens, per series (`rows`: a label
    such as a dtype, up to four -> (n_tokens, measured, model)), log-log. Right: the model's error,
    (model − measured) / measured, in %."""
    fig, (left, right) = panels(2, height=4.5)
    for (dtype, pts), colour in zip(rows.items(), ("#0072B2", "#D55E00", "#009E73", "#CC79A7")):
        n, meas, model = (np.array(v) for v in zip(*pts))
        left.plot(n, meas, "o", ms=4, color=colour, label=f"{dtype}, measured")
        left.plot(n, model, "-", lw=1.5, color=colour, label=f"{dtype}, model")
        right.plot(n, 100 * (model - meas) / meas, "o-", ms=4, color=colour, label=dtype)
    left.set_yscale("log")
    log_axis(left.yaxis)
    left.set_ylabel("GPU time per call (µs)")
    right.axhline(0, color="k", lw=1)
    right.set_ylabel("model error (% of measured)")
    for ax in (left, right):
        log2_x(ax)
        ax.set_xlabel("n_tokens")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"launch + fixed + bytes / ceiling against the row kernel — {device}")
    legend(fig, 4)
    return fig


LANES = {"kernel": ("#D55E00", "kernel"), "copy": ("#009E73", "copy or fill"), "fill": ("#009E73", "copy or fill"),
         "runtime": ("#0072B2", "CUDA runtime call"), "driver": ("#56B4E9", "CUDA driver call")}


@styled
def timeline_figure(cases: dict[str, tuple[list, float, float]], device: str) -> Figure:
    """One panel per case (`cases`: label -> (timeline Spans, window start µs, window end µs)): host API calls
    above, device activities below, µs from the window's start; white is where the lane does nothing."""
    fig = Figure(figsize=(10.0, 1.25 * len(cases) + 1.0), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(len(cases), 1)))
    for ax, (label, (found, lo, hi)) in zip(axes, cases.items()):
        for lane, y in (("host", 1), ("device", 0)):
            for kind in sorted({s.kind for s in found if s.lane == lane}):
                bars = [(s.start_us - lo, s.dur_us) for s in found
                        if s.lane == lane and s.kind == kind and s.start_us < hi and s.start_us + s.dur_us > lo]
                colour, name = LANES[kind]
                ax.broken_barh(bars, (y - 0.35, 0.7), color=colour, label=name)
        ax.set_xlim(0, hi - lo)
        ax.set_yticks([0, 1], ["device", "host API"])
        ax.set_ylim(-0.6, 1.6)
        ax.set_title(label, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("µs from the window's start")
    fig.suptitle(f"CUPTI timelines (torch.profiler, host activities on) — {device}")
    legend(fig, 4)
    return fig
