"""An explorer of one combine call: choose the shape, dtype, terms, variant and device, and see the bytes the
call must move, its arithmetic intensity, its predicted time at the device's bandwidth, the measured point
where a run has one, and which thread makes which output. Everything it shows comes from the pure functions
here (tested directly); `explorer()` only wires them to ipywidgets. Importing this module runs nothing slow."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from matplotlib.figure import Figure

from . import launch_table
from .diagrams import draw_thread_panel
from .dtypes import GATE_DTYPE, ITEMSIZE, KERNEL_DTYPES
from .results import Row, Run
from .traffic import bytes_moved, flops

TOKENS = tuple(2**i for i in range(15))  # 1 … 16384, the sweeps' n_tokens
HIDDENS = (1, 255, 256, 257, 1000, 1024, 2048, 2880, 3584, 4096, 7168, 8192, 16384)  # awkward sizes and presets
ROW_BYTES = {"scalar": 0, "scalar_k": 0, "vec": 16, "vec_k": 16, "row": 4}  # kernels.VARIANTS' row_bytes
VARIANTS = ("auto", *ROW_BYTES)  # "auto": the launch table's variant for the shape on the device's card
THIS_MACHINE = "this machine: "
MAP_TOKENS, MAP_TOP_K, MAP_ROW = 2, 3, 8  # the thread map's small version: at most this many tokens, k, columns


@dataclass(frozen=True)
class Device:
    """Where a call runs: a bandwidth and what it rests on (a run's measured ceiling, or a datasheet)."""

    label: str
    gbps: float
    basis: str  # "measured ceiling" or "datasheet peak"
    source: str  # the run's folder, or the vendor's page
    backend: str  # the kernels' backend there (cuda, metal, host): where variant="auto" looks in the launch table
    run: Run | None = None


# Peak memory bandwidth from the vendors' pages (not measured here).
PRESETS = (
    Device("NVIDIA H100 SXM (datasheet)", 3350.0, "datasheet peak", "https://www.nvidia.com/en-us/data-center/h100/",
           "cuda"),
    Device("NVIDIA H200 (datasheet)", 4800.0, "datasheet peak", "https://www.nvidia.com/en-us/data-center/h200/",
           "cuda"),
    Device("Apple M4 (datasheet)", 120.0, "datasheet peak", "https://www.apple.com/macbook-pro/specs/", "metal"),
    Device("Apple M4 Pro (datasheet)", 273.0, "datasheet peak", "https://www.apple.com/macbook-pro/specs/", "metal"),
    Device("Apple M4 Max, 40-core GPU (datasheet)", 546.0, "datasheet peak", "https://www.apple.com/macbook-pro/specs/",
           "metal"),
)


class Choice(NamedTuple):
    """What the controls select: one call's shape, dtype, optional terms and kernel variant."""

    n_tokens: int = 256
    h: int = 2048
    top_k: int = 8
    dtype: str = "float32"
    residual: bool = True
    shared: bool = True
    variant: str = "vec_k"


def run_device(run: Run, label: str) -> Device:
    """A run as a device: its kernels' processor (the GPU where it has one) at its measured ceiling."""
    processor = "gpu" if run.meta.get("gpu") else "cpu"
    return Device(label, run.meta["ceiling_gbps"][processor], "measured ceiling", run.source or label,
                  run.meta.get("kernel_backend") or "host", run)


def devices(run: Run | None = None, committed: Sequence[Run] = ()) -> list[Device]:
    """This machine's run (if given), the committed runs (GPU runs first), then the datasheet presets."""
    found = [run_device(run, f"{THIS_MACHINE}{run.meta['device']}")] if run is not None else []
    combine = [r for r in committed if r.meta.get("op", "combine") == "combine"]
    for r in sorted(combine, key=lambda r: (r.meta.get("gpu") is None, r.source or "")):
        found.append(run_device(r, f"{r.meta['device']}, {'/'.join(r.meta['dtypes'])} run of {r.meta['date']}"))
    return found + list(PRESETS)


def default_device(choices: Sequence[Device], dtype: str = Choice().dtype) -> Device:
    """The device shown first: this machine's run where one is given, else a GPU run holding `dtype` (the kernel's
    real setting), else the first device."""
    mine = (d for d in choices if d.label.startswith(THIS_MACHINE))
    gpu_runs = (d for d in choices if d.run is not None and d.run.meta.get("gpu") and dtype in d.run.meta["dtypes"])
    return next(mine, next(gpu_runs, choices[0]))


def launch(c: Choice, device: Device) -> launch_table.Choice:
    """The variant and threadgroup size the call launches on the device: as chosen, or for "auto" the launch
    table's entry for the device's card (its stated rule where no card of that backend was measured)."""
    if c.variant != "auto":
        return launch_table.Choice(c.variant, launch_table.DEFAULT_THREADS, "asked")
    name = device.run.meta.get("gpu") if device.run is not None else device.label
    return launch_table.choose(device.backend, name, c.dtype, c.n_tokens, c.h, c.top_k)


def launched(c: Choice, device: Device) -> Choice:
    """The choice with "auto" replaced by the variant it launches on the device."""
    return c._replace(variant=launch(c, device).variant)


def call_bytes(c: Choice) -> int:
    """Minimum bytes one call moves (traffic.bytes_moved, float32 gates)."""
    return bytes_moved(c.n_tokens, c.top_k, c.h, c.dtype, c.residual, gate_dtype=GATE_DTYPE, shared=c.shared)


def intensity(c: Choice) -> float:
    """Arithmetic intensity: flops per byte moved."""
    return flops(c.n_tokens, c.top_k, c.h, c.residual, c.shared) / call_bytes(c)


def predicted_us(c: Choice, device: Device) -> float:
    """The call's minimum bytes at the device's bandwidth, in µs."""
    return call_bytes(c) / (device.gbps * 1e3)


def curve(c: Choice, device: Device) -> list[Row]:
    """The device's run's rows for the chosen variant, dtype, h, top_k and terms, by n_tokens ([] without a run)."""
    if device.run is None:
        return []
    rows = device.run.select(impl=f"kernel_{c.variant}", dtype=c.dtype, h=c.h, top_k=c.top_k, residual=c.residual,
                             shared=c.shared)
    return sorted(rows, key=lambda r: r.n_tokens)


def measured(c: Choice, device: Device) -> Row | None:
    """The run's row at exactly this choice, or None."""
    return next((r for r in curve(c, device) if r.n_tokens == c.n_tokens), None)


def readout(c: Choice, device: Device) -> dict[str, str]:
    """The lines the explorer shows, by name."""
    row, go = measured(c, device), launch(c, device)
    if row is not None:
        seen = (f"{row.median_us:,.1f} µs per call, {row.gbps:,.0f} GB/s, {row.pct_of_ceiling:.1f}% of the run's "
                f"ceiling ({row.backend}, median of its timed batches)")
    elif device.run is not None:
        seen = f"not measured in this run (kernel_{c.variant}, {c.dtype}, h = {c.h}, top_k = {c.top_k} at these terms)"
    else:
        seen = "no run: datasheet figures only"
    return {
        "bytes": f"{call_bytes(c):,} bytes per call",
        "intensity": f"{intensity(c):.3f} flop/byte",
        "predicted": f"{predicted_us(c, device):,.2f} µs at {device.gbps:,.1f} GB/s ({device.basis})",
        "measured": seen,
        "launch": f"{go.variant}, {go.threads} threads per threadgroup ({go.source})",
        "source": device.source,
    }


def map_shape(c: Choice) -> tuple[int, int, int, int]:
    """(n_tokens, top_k, h, W) of the thread map's small version of a choice of a named variant (see `launched`
    for "auto"): W outputs per thread."""
    w = max(1, ROW_BYTES[c.variant] // ITEMSIZE[c.dtype])
    return min(c.n_tokens, MAP_TOKENS), min(c.top_k, MAP_TOP_K), min(c.h, max(MAP_ROW, 2 * w)), w


def map_threads(c: Choice) -> int:
    """Threads in the thread map's small version."""
    t, _, h, w = map_shape(c)
    return t * -(-h // w)


def throughput_figure(c: Choice, device: Device) -> Figure:
    """GB/s against n_tokens: the run's measured curve, the device's bandwidth dashed, the choice marked; the
    legend below the axes, where it covers no point."""
    fig = Figure(figsize=(4.8, 4.4), dpi=100)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.36, top=0.88)
    ax = fig.subplots()
    rows = curve(c, device)
    if rows:
        ax.plot([r.n_tokens for r in rows], [r.gbps for r in rows], "o-", ms=3, color="C3", label=f"kernel_{c.variant}")
    ax.axhline(device.gbps, ls="--", color="k", lw=1, label=f"{device.gbps:,.0f} GB/s ({device.basis})")
    row = measured(c, device)
    if row is not None:
        ax.plot([row.n_tokens], [row.gbps], "o", ms=10, mfc="none", mec="C0", mew=2, label="measured at this size")
    else:
        ax.axvline(c.n_tokens, color="C0", lw=1.5, label="this size (not measured)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(TOKENS[::2], [str(t) for t in TOKENS[::2]])  # plain labels: quicker to draw than 2^n mathtext
    ax.minorticks_off()
    ax.set_xlim(0.7, 2**15 * 1.4)
    ax.set_ylim(0, 1.15 * max([device.gbps] + [r.gbps for r in rows]))
    ax.set_xlabel("n_tokens")
    ax.set_ylabel("GB/s (minimum bytes / time)")
    ax.set_title(f"{device.label}\n{c.dtype}, h = {c.h}, top_k = {c.top_k}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    return fig


def thread_map_figure(c: Choice, thread: int) -> Figure:
    """The thread → data map of the small version of the choice, one thread highlighted."""
    t, k, h, w = map_shape(c)
    width, height = max(t * h, 2 * h + 2.5) + 2.5, t * k + 6.2  # the panel's extent in cells (diagrams' layout)
    cell = min(0.36, 7.5 / width)  # inches per cell: at 130 dpi the cells' 7-point labels are about 13 px tall
    fig = Figure(figsize=(max(cell * width, 4.0), cell * height + 0.4), dpi=130)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92)
    kind = "scalar" if w == 1 else f"{c.variant}, {w} outputs per thread"
    draw_thread_panel(fig.subplots(), t, k, h, w, min(thread, map_threads(c) - 1),
                      f"T={t}, K={k}, H={h} ({kind}): thread {min(thread, map_threads(c) - 1)}")
    return fig


def png(fig: Figure) -> bytes:
    """A figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def explorer(run: Run | None = None, committed: Sequence[Run] | None = None) -> Any:
    """The explorer as an ipywidgets box: `run` is this machine's (e.g. notebook 03's quick run); `committed`
    defaults to every run under results/."""
    import ipywidgets as widgets

    from .results import find_results, load_runs

    choices = devices(run, load_runs(find_results()) if committed is None else committed)
    by_label = {d.label: d for d in choices}
    start = Choice()
    w = dict(
        n_tokens=widgets.SelectionSlider(options=TOKENS, value=start.n_tokens, description="n_tokens"),
        h=widgets.SelectionSlider(options=HIDDENS, value=start.h, description="h"),
        top_k=widgets.IntSlider(value=start.top_k, min=1, max=16, description="top_k"),
        dtype=widgets.Dropdown(options=KERNEL_DTYPES, value=start.dtype, description="dtype"),
        residual=widgets.Checkbox(value=start.residual, description="residual"),
        shared=widgets.Checkbox(value=start.shared, description="shared expert"),
        variant=widgets.ToggleButtons(options=VARIANTS, value=start.variant, description="variant"),
    )
    device = widgets.Dropdown(options=list(by_label), value=default_device(choices).label, description="device",
                              layout=widgets.Layout(width="95%"))
    thread = widgets.IntSlider(value=0, min=0, max=0, description="thread")  # its max is set by update()
    text = widgets.HTML()
    plot = widgets.Image(format="png", layout=widgets.Layout(width="50%", height="auto", object_fit="contain"))
    tmap = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto", object_fit="contain"))
    for name, control in [*w.items(), ("device", device), ("thread", thread)]:
        control.add_class(f"moe-explorer-{name.replace('_', '-')}")
    text.add_class("moe-explorer-readout")

    def update(_: object = None) -> None:
        """Recompute everything shown from the controls."""
        c = Choice(**{name: control.value for name, control in w.items()})
        d = by_label[device.value]
        mapped = launched(c, d)
        thread.max = map_threads(mapped) - 1
        plot.value, tmap.value = png(throughput_figure(c, d)), png(thread_map_figure(mapped, thread.value))
        lines = readout(c, d)  # the text last: when it shows, the figures above have been sent too
        text.value = "".join(f'<div class="moe-{key}"><b>{key}</b>: {value}</div>' for key, value in lines.items())

    for control in [*w.values(), device, thread]:
        control.observe(update, names="value")
    update()
    controls = widgets.VBox([*w.values(), device, thread, text], layout=widgets.Layout(width="50%"))
    return widgets.VBox([widgets.HBox([controls, plot]), tmap])
