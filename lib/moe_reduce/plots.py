"""Figures of a benchmark run (Agg, no pyplot state): throughput against n_tokens and h with the measured
copy ceiling, % of the ceiling over (n_tokens × h) for the kernels, and decode latency against the
empty-kernel floor; exported as PNG and SVG with deterministic metadata."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; these figures never open a window

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .results import Row, Run

IMPL_ORDER = ("kernel_auto", "kernel_vec_k", "kernel_vec", "kernel_scalar", "triton", "triton_graph", "torch_compile",
              "torch_compile_graph", "torch", "mlx_compile", "mlx", "numpy")
COLORS = dict(zip(IMPL_ORDER, ("C3", "C6", "C1", "C8", "C5", "C5", "C4", "C4", "C9", "C2", "C0", "C7")))
DPI = 80
SVG_SALT = "moe-reduce"
DECODE_TOKENS = 64  # n_tokens up to this count as decode sizes (the latency plot)


def impls_in(rows: Sequence[Row]) -> list[str]:
    """Implementation names present, in legend order."""
    present = {r.impl for r in rows}
    return [i for i in IMPL_ORDER if i in present] + sorted(present - set(IMPL_ORDER))


def ceilings(run: Run) -> dict[str, float]:
    """Copy ceiling in GB/s by device name, the GPU's first (where measured)."""
    names = {"gpu": run.meta.get("gpu"), "cpu": run.meta.get("cpu")}
    return {names[p]: run.meta["ceiling_gbps"][p] for p in ("gpu", "cpu") if names[p] and p in run.meta["ceiling_gbps"]}


def title(run: Run, what: str, dtype: str) -> str:
    """'<what>' over '<device> (<backend>, <dtype>)'."""
    backend = run.meta.get("kernel_backend") or run.meta.get("mlx_device", "?")
    return f"{what}\n{run.meta['device']} ({backend}, {dtype})"


def _line(ax: Axes, rows: Sequence[Row], x: str, y: str, label: str, band: tuple[str, str]) -> None:
    """One implementation: median line with markers and a shaded 20–80 percentile band."""
    rows = sorted(rows, key=lambda r: getattr(r, x))
    xs = [getattr(r, x) for r in rows]
    color = COLORS.get(label)
    ax.plot(xs, [getattr(r, y) for r in rows], marker="o", ms=3, lw=1.5, color=color, label=label)
    lo, hi = ([_stat(r, b) for r in rows] for b in band)
    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)


def _stat(r: Row, name: str) -> float:
    """A row's field, or GB/s at its 80th/20th percentile time ('gbps_p80' is the slower, lower one)."""
    if name.startswith("gbps_"):
        return r.bytes / (getattr(r, name[5:] + "_us") * 1e-6) / 1e9
    return getattr(r, name)


def throughput_panel(ax: Axes, run: Run, rows: Sequence[Row], x: str) -> None:
    """GB/s against x (log2) per implementation, with each device's copy ceiling dashed."""
    for impl in impls_in(rows):
        _line(ax, [r for r in rows if r.impl == impl], x, "gbps", impl, ("gbps_p80", "gbps_p20"))
    devices = {r.device for r in rows}
    for i, (device, value) in enumerate(ceilings(run).items()):
        if device in devices:
            ax.axhline(value, ls="--", lw=1, color="k" if i == 0 else "0.5",
                       label=f"copy ceiling {value:,.0f} GB/s ({device})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel({"n_tokens": "n_tokens (tokens per call)", "h": "h (hidden size, elements)"}[x])
    ax.set_ylabel("throughput (GB/s, minimum bytes / time)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def legend(fig: Figure) -> None:
    """One legend below the panels with every distinct label of every panel."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    ncol = 2 if len(fig.axes) == 1 else 3  # a one-panel figure is too narrow for three columns of labels
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncol=ncol, fontsize=7, frameon=False)


def _figure(panels: int, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    """A row of panels."""
    fig = Figure(figsize=(5.2 * panels, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, panels)))


def tokens_figure(run: Run, dtype: str) -> Figure:
    """(a) Throughput against n_tokens at the plan's h, one panel per top_k."""
    h = run.meta["plan"]["tokens_h"]
    top_ks = sorted({r.top_k for r in run.select(dtype=dtype, h=h)} & set(run.meta["plan"]["top_ks"]))
    fig, axes = _figure(max(1, len(top_ks)))
    for ax, k in zip(axes, top_ks):
        throughput_panel(ax, run, run.select(dtype=dtype, h=h, top_k=k), "n_tokens")
        ax.set_title(f"h = {h}, top_k = {k}", fontsize=9)
    fig.suptitle(title(run, "Throughput vs n_tokens", dtype), fontsize=10)
    legend(fig)
    return fig


def hidden_figure(run: Run, dtype: str) -> Figure:
    """(b) Throughput against h at the plan's n_tokens."""
    plan = run.meta["plan"]
    n, k = plan["hiddens_tokens"], plan["top_ks"][0]
    fig, (ax,) = _figure(1)
    throughput_panel(ax, run, run.select(dtype=dtype, n_tokens=n, top_k=k), "h")
    ax.set_title(f"n_tokens = {n}, top_k = {k}", fontsize=9)
    fig.suptitle(title(run, "Throughput vs h", dtype), fontsize=10)
    legend(fig)
    return fig


def heat_grid(rows: Sequence[Row]) -> tuple[list[int], list[int], np.ndarray]:
    """(n_tokens values, h values, % of ceiling with NaN where unmeasured) from one impl's rows."""
    ts, hs = sorted({r.n_tokens for r in rows}), sorted({r.h for r in rows})
    grid = np.full((len(ts), len(hs)), np.nan)
    for r in rows:
        grid[ts.index(r.n_tokens), hs.index(r.h)] = r.pct_of_ceiling
    return ts, hs, grid


def heatmap_figure(run: Run, dtype: str) -> Figure:
    """(c) % of the copy ceiling over n_tokens × h, one annotated panel per kernel variant."""
    plan = run.meta["plan"]
    k = plan["heat_top_k"]
    grid = {(t, h) for t in plan["heat_tokens"] for h in plan["heat_hiddens"]}
    kernels = [i for i in impls_in(run.rows) if i.startswith("kernel_")
               and 2 * len({(r.n_tokens, r.h) for r in run.select(dtype=dtype, impl=i, top_k=k)} & grid) >= len(grid)]
    fig, axes = _figure(max(1, len(kernels)))
    for ax, impl in zip(axes, kernels):
        ts, hs, grid = heat_grid([r for r in run.select(dtype=dtype, impl=impl, top_k=k)
                                  if r.n_tokens in plan["heat_tokens"] and r.h in plan["heat_hiddens"]])
        image = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=7, color="w" if v < 60 else "k")
        ax.set_xticks(range(len(hs)), [str(h) for h in hs], fontsize=7)
        ax.set_yticks(range(len(ts)), [str(t) for t in ts], fontsize=7)
        ax.set_xlabel("h (hidden size, elements)")
        ax.set_ylabel("n_tokens (tokens per call)")
        ax.set_title(f"{impl}, top_k = {k}", fontsize=9)
        fig.colorbar(image, ax=ax, label="% of copy ceiling")
    fig.suptitle(title(run, "Kernel throughput as % of copy ceiling", dtype), fontsize=10)
    return fig


def latency_figure(run: Run, dtype: str) -> Figure:
    """(d) Per-call µs at decode sizes (n_tokens ≤ 64) against the empty-kernel floor."""
    plan = run.meta["plan"]
    h, k = plan["tokens_h"], plan["top_ks"][0]
    rows = [r for r in run.select(dtype=dtype, h=h, top_k=k) if r.n_tokens <= DECODE_TOKENS]
    fig, (ax,) = _figure(1)
    for impl in impls_in(rows):
        _line(ax, [r for r in rows if r.impl == impl], "n_tokens", "median_us", impl, ("p20_us", "p80_us"))
    floor = run.meta.get("empty_kernel_us")
    if floor:
        ax.axhline(floor, ls="--", lw=1, color="k", label=f"{run.meta['empty_kernel_label']}: {floor:.1f} µs")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("n_tokens (tokens per call)")
    ax.set_ylabel("time per call (µs, median; band 20–80%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"decode sizes, h = {h}, top_k = {k}", fontsize=9)
    fig.suptitle(title(run, "Per-call latency", dtype), fontsize=10)
    legend(fig)
    return fig


def compare_figure(runs: Sequence[Run], labels: Sequence[str], dtype: str, top_k: int = 8) -> Figure:
    """Throughput against n_tokens for several runs side by side (one panel each), in `dtype` or,
    for a run without it, the run's first dtype."""
    fig, axes = _figure(len(runs))
    for ax, run, label in zip(axes, runs, labels):
        h = run.meta["plan"]["tokens_h"]
        d = dtype if run.select(dtype=dtype) else run.meta["dtypes"][0]
        throughput_panel(ax, run, run.select(dtype=d, h=h, top_k=top_k), "n_tokens")
        ax.set_title(f"{label}: {run.meta['device']}\n({run.meta.get('kernel_backend')}, {d}, h = {h}, "
                     f"top_k = {top_k})", fontsize=8)
    fig.suptitle("Throughput vs n_tokens across runs", fontsize=10)
    legend(fig)
    return fig


def export(fig: Figure, folder: Path, stem: str) -> list[Path]:
    """Save <stem>.png and <stem>.svg with no date or software stamp and a fixed SVG id salt."""
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(png, dpi=DPI, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


FIGURES = {"tokens": tokens_figure, "hidden": hidden_figure, "heatmap": heatmap_figure, "latency": latency_figure}


def plot_run(run: Run, folder: Path) -> list[Path]:
    """Every figure of a run, for every dtype in it, exported into folder; returns the files written."""
    written = []
    for dtype in sorted({r.dtype for r in run.rows}):
        for name, make in FIGURES.items():
            if name == "heatmap" and not any(r.impl.startswith("kernel_") for r in run.select(dtype=dtype)):
                continue
            written += export(make(run, dtype), folder, f"{name}_{dtype}")
    return written
