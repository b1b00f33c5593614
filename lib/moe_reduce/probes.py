"""The committed small-call probes (results/nvidia-h100-2026-12-05-probes/, and the H100 and H200 runs named
below), read for lesson 05."""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import latency, timeline
from .results import Row, Run, newest

PROBES = Path(__file__).resolve().parents[2] / "results" / "nvidia-h100-2026-12-05-probes"
SMALL_0612 = PROBES.parent / "nvidia-h100-2026-12-06-small"  # host-cost A/B and the chained chase, two calls
HOST_AB_FILES = [SMALL_0612 / f for f in ("smallcalls.json", "smallcalls-2.json")]
HOST_SPLIT_FILE = SMALL_0612 / "smallcalls-5.json"  # an H100 call that adds each of our call's differences alone
H200_SMALL = PROBES.parent / "nvidia-h200-2026-12-06-small"  # its chase (probes/) and counters (ncu/, ncu16k/)
HOST_FIXED_FILES = [H200_SMALL / f for f in ("smallcalls-3.json", "smallcalls-4.json")]  # + our body, shapes fixed
CHASE_RUNS = [SMALL_0612 / p for p in ("probes", "probes-2")]
REPEAT_SWEEPS = [SMALL_0612 / p for p in ("repeat-tokens", "repeat-tokens-2")]  # the H100 tokens sweep again, twice
STORE_SWEEP = SMALL_0612 / "repeat-tokens-3"  # kernel_auto and Triton, with the store kernels in empty_gpu_us
GRAPHS_FILE = SMALL_0612 / "graphs" / "graphs.json"  # results/device-2026-12-06-graphs.py on an H100
PARAMS_FILE = SMALL_0612 / "params" / "params.json"  # results/device-2026-12-06-params.py on an H100
GAP_RUN = PROBES.parent / "nvidia-h100-2026-12-06-gap"  # results/device-2026-12-06-gap.py on an H100
NCU_TOKENS = (1, 16, 64, 1024)  # the order round1.py profiled in (its NCU_TOKENS and NCU_CANDS)
NCU_CANDS = ("scalar_k", "vec_k", "b4", "b4_slow", "b16")
NCU_FIELDS = ("duration_ns", "dram_read_bytes", "dram_write_bytes", "ld_sectors", "ld_requests", "waves",
              "achieved_occupancy_pct", "eligible_warps_per_cycle", "stall_long_scoreboard", "registers", "grid_blocks", "block_threads")


def load_json(name: str, folder: Path = PROBES) -> Any:
    """One JSON file of the probes."""
    return json.loads((folder / name).read_text())


def per_call(folder: Path = PROBES) -> dict[str, dict[str, float]]:
    """timeline_summary.json per call: busy, span and idle µs of the device divided by the kernels recorded."""
    return {label: {k: s[f"device_{k}_us"] / s["kernels"] for k in ("busy", "span", "idle")} | {"kernels": s["kernels"]}
            for label, s in load_json("timeline_summary.json", folder).items()}


def empty_kernels(folder: Path = PROBES) -> list[tuple[str, float, int]]:
    """(case, CUPTI µs, sets) of empty.json then nographs.json. The 2026-12-05 run called the suite's empty kernel
    "the suite's floor"; kernels run below it (without graphs), so it is shown by what it is."""
    both = load_json("empty.json", folder) | load_json("nographs.json", folder)
    return [(case.replace("the suite's floor", "the suite's empty kernel"), float(us), int(sets))
            for case, (us, sets) in both.items()]


def candidates(folder: Path = PROBES) -> list[dict[str, Any]]:
    """candidates.csv as rows with numbers parsed."""
    with open(folder / "candidates.csv", newline="") as f:
        return [{"dtype": r["dtype"], "n_tokens": int(r["n_tokens"]), "kernel": r["kernel"],
                 "threads": int(r["threads"]), "gpu_us": float(r["gpu_us"]), "spread": float(r["spread"]),
                 "sets": int(r["sets"])} for r in csv.DictReader(f)]


def best(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The fastest row (over threads) per (dtype, kernel, n_tokens)."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["dtype"], r["kernel"], r["n_tokens"])
        if key not in out or r["gpu_us"] < out[key]["gpu_us"]:
            out[key] = r
    return out


def ncu_label(kernel: str, expected: str, dtype: str) -> bool:
    """Whether an Nsight Compute kernel name fits the candidate expected at its place in the profiled order."""
    mlx_dtype = "float" if dtype == "float32" else "bfloat16"
    if expected == "triton":
        return kernel == "combine_kernel"
    body = {"scalar_k": f"moe_weighted_reduce_{mlx_dtype}_", "vec_k": f"moe_weighted_reduce_vec_{mlx_dtype}_"}
    return body.get(expected, f"cand_row_{mlx_dtype}_") in kernel


def first_read_ns(folders: Sequence[Path] = tuple(CHASE_RUNS)) -> float:
    """Median ns per timed load of the committed chases (latency.json in each folder) over the chains whose timed
    loads are all first reads of their line since the L2 flush (latency.timed_loads)."""
    ns = []
    for folder in folders:
        for row in load_json("latency.json", folder):
            for chain, key in enumerate(("short_us", "long_us")):
                if latency.timed_loads(chain).stop <= row["footprint"] // latency.LINE:
                    ns.append(row[key] * 1e3 / latency.STEPS[chain])
    return statistics.median(ns)


def ncu_rows(folder: Path = PROBES) -> list[dict[str, Any]]:
    """ncu.csv's combine rows named by their place in round1.py's order (MLX's NVTX labels are not ours); raises
    ValueError when a kernel name does not fit the candidate at its place."""
    with open(folder / "ncu.csv", newline="") as f:
        raw = [r for r in csv.DictReader(f) if not r["kernel"].startswith("triton_")]
    orders = [[(d, n, c) for d in ("float32", "bfloat16") for n in NCU_TOKENS for c in cands]
              for cands in (NCU_CANDS + ("triton",), NCU_CANDS)]   # Triton's rows need its configs from a run
    order = next((o for o in orders if len(o) == len(raw)), None)
    if order is None:
        raise ValueError(f"ncu.csv: expected {' or '.join(str(len(o)) for o in orders)} combine rows, got {len(raw)}")
    out = []
    for r, (dtype, n, cand) in zip(raw, order):
        if not ncu_label(r["kernel"], cand, dtype):
            raise ValueError(f"ncu.csv row {r['id']}: expected {cand} {dtype}, got kernel {r['kernel'][:60]!r}")
        out.append({"dtype": dtype, "n_tokens": n, "kernel": cand} | {k: float(r[k]) for k in NCU_FIELDS})
    return out



# ---------------------------------------------------------------- The row kernel's runs (issue 18)

SMALL_DATE = "2026-12-05"  # the H100's runs of our kernels and Triton after the row variant shipped
SMALL_DATES = {"H100": SMALL_DATE, "H200": "2026-12-06"}  # each card's first such runs
RESULTS = PROBES.parent


def small_run(runs: Sequence[Run], card: str, dtype: str) -> Run | None:
    """The committed combine run of the card's SMALL_DATES date (the card named as in the GPU's name) in a dtype
    that times kernel_row; None if there is none."""
    found = [r for r in runs if r.meta["date"] == SMALL_DATES[card] and "kernel_row" in r.meta["impls"]]
    return newest(found, card, dtype)


def row_of(run: Run, impl: str, n_tokens: int, top_k: int, h: int = 2048) -> Row:
    """The one row of a run at a size."""
    (row,) = run.select(impl=impl, n_tokens=n_tokens, top_k=top_k, h=h)
    return row


def gpu_us(run: Run, impl: str, n_tokens: int, top_k: int, h: int = 2048) -> float:
    """The GPU µs of one row of a run."""
    return row_of(run, impl, n_tokens, top_k, h).gpu_us


def work_ratio(run: Run, n_tokens: int, top_k: int, impl: str = "kernel_row", baseline: str = "") -> float:
    """(ours − MLX's one-thread kernel) / (Triton − Triton's), GPU times and one-thread kernels of one run: the
    kernels' own work with each framework's launch set aside. baseline "": the empty kernels (they read no
    parameter); "_store": the kernels that read their parameters and store one number (runs from 2026-12-06 on)."""
    empty = run.meta["empty_gpu_us"]
    ours, triton = gpu_us(run, impl, n_tokens, top_k), gpu_us(run, "triton", n_tokens, top_k)
    return (ours - empty["mlx" + baseline]) / (triton - empty["triton" + baseline])


def work_ratio_runs(runs: Sequence[Run], dtype: str, n_tokens: int, top_k: int, impl: str = "kernel_row",
                    baseline: str = "") -> list[float]:
    """work_ratio of one dtype's rows in each run (each with its own one-thread kernels)."""
    return [work_ratio(Run([r for r in run.rows if r.dtype == dtype], run.meta, run.source), n_tokens, top_k, impl,
                       baseline) for run in runs]


def graph_medians(field: str, path: Path = GRAPHS_FILE) -> dict[tuple[str, bool, str, int], float]:
    """graphs.json as {(contender, MLX graphs on, dtype, n_tokens): median over its repeats of `field`}: "dur_us"
    (the median kernel duration) or "gap_us" (the median gap from one kernel's end to the next one's start), in
    µs. Contenders: ours, ours_each (handed over every call), triton, triton_graph, mlx_empty."""
    rows = json.loads(path.read_text())["rows"]
    return {(r["who"], r["graphs"], r["dtype"], r["n_tokens"]): statistics.median(x[field] for x in r["reps"])
            for r in rows}


def param_durations(path: Path = PARAMS_FILE) -> dict[tuple[str, bool, int], float]:
    """params.json as {(body, MLX graphs on, calls per hand-over): median over its repeats of the median kernel
    duration in µs}; bodies: empty, shape (reads parameters only), load, load5."""
    return {(r["body"], r["graphs"], r["group"]): statistics.median(x["dur_us"] for x in r["reps"])
            for r in json.loads(path.read_text())["rows"]}


def smallcalls(card: str) -> dict[str, Any] | None:
    """results/nvidia-<card>-<its SMALL_DATES date>-small/smallcalls.json (card "h100" or "h200"); None if not
    committed."""
    path = RESULTS / f"nvidia-{card.lower()}-{SMALL_DATES[card.upper()]}-small" / "smallcalls.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------- Nsight Compute rows as DRAM points (lesson 03)

DRAM_FILE = "ncu_dram.csv"  # ncu.csv in plots.read_dram_counters' columns, written by write_dram_csv
TORCH_COMPILE_ORDER = ("float32", "bfloat16")  # round1.py profiled torch.compile's kernel at 4096 tokens in this order
TORCH_COMPILE_TOKENS = 4096


def dram_rows(folder: Path = PROBES) -> list[dict[str, Any]]:
    """Every profiled kernel of ncu.csv as (label, n_tokens, dtype, dram_bytes, gpu_time_ns): the combine rows of
    ncu_rows (label kernel_<candidate>, or triton), then the timed torch.compile kernel (label torch_compile)."""
    rows = [{"label": "triton" if r["kernel"] == "triton" else f"kernel_{r['kernel']}", "n_tokens": r["n_tokens"],
             "dtype": r["dtype"], "dram_bytes": r["dram_read_bytes"] + r["dram_write_bytes"],
             "gpu_time_ns": r["duration_ns"]} for r in ncu_rows(folder)]
    with open(folder / "ncu.csv", newline="") as f:
        compiled = [r for r in csv.DictReader(f) if r["kernel"].startswith("triton_")]
    if len(compiled) != len(TORCH_COMPILE_ORDER):
        raise ValueError(f"ncu.csv: expected {len(TORCH_COMPILE_ORDER)} torch.compile rows, got {len(compiled)}")
    return rows + [{"label": "torch_compile", "n_tokens": TORCH_COMPILE_TOKENS, "dtype": dtype,
                    "dram_bytes": float(r["dram_read_bytes"]) + float(r["dram_write_bytes"]),
                    "gpu_time_ns": float(r["duration_ns"])} for r, dtype in zip(compiled, TORCH_COMPILE_ORDER)]


def save_dram_rows(rows: list[dict[str, Any]], folder: Path) -> Path:
    """Write rows of plots.read_dram_counters' columns as folder/DRAM_FILE; returns its path."""
    path = folder / DRAM_FILE
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "n_tokens", "dtype", "dram_bytes", "gpu_time_ns"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def write_dram_csv(folder: Path = PROBES) -> Path:
    """Write folder/DRAM_FILE from ncu.csv (dram_rows); returns its path."""
    return save_dram_rows(dram_rows(folder), folder)


# ---------------------------------------------------------------- A model of GPU time per call (lesson 05, part 8)

@dataclass(frozen=True)
class TimeModel:
    """GPU µs per call = launch + fixed + bytes / bandwidth: launch, an empty kernel's GPU time; fixed, what the
    one-token call takes beyond launch and bytes (fitted at n_tokens = 1, not measured on its own); bandwidth,
    the run's measured ceiling (GB/s)."""

    launch_us: float
    fixed_us: float
    gbps: float

    def us(self, nbytes: int) -> float:
        """Predicted GPU µs of a call that moves nbytes."""
        return self.launch_us + self.fixed_us + nbytes / self.gbps / 1e3


def fit_time_model(run: Run, impl: str = "kernel_row", top_k: int = 8) -> TimeModel:
    """The model of one run and impl: launch and bandwidth from the run's metadata, fixed from its one-token row."""
    launch, gbps = run.meta["empty_gpu_us"]["mlx"], run.meta["ceiling_gbps"]["gpu"]
    one = row_of(run, impl, 1, top_k)
    return TimeModel(launch, one.gpu_us - launch - one.bytes / gbps / 1e3, gbps)


def model_rows(run: Run, impl: str = "kernel_row", top_k: int = 8) -> list[tuple[int, float, float]]:
    """(n_tokens, measured GPU µs, predicted GPU µs) of each of the run's rows of impl at top_k, h 2048, by
    n_tokens; the bytes are the ones each row records."""
    model = fit_time_model(run, impl, top_k)
    rows = sorted(run.select(impl=impl, top_k=top_k, h=2048), key=lambda r: r.n_tokens)
    return [(r.n_tokens, r.gpu_us, model.us(r.bytes)) for r in rows]


NCU16K_ORDER = (("kernel_auto", "float32"), ("triton", "float32"), ("kernel_auto", "bfloat16"), ("triton", "bfloat16"))


def ncu16k_rows(folder: Path = GAP_RUN) -> list[dict[str, Any]]:
    """ncu16k.csv's rows at 16384 tokens, each named `impl` and `dtype` by its place in NCU16K_ORDER (the order
    device-2026-12-06-gap.py profiled in; MLX's range labels are not ours); ValueError if a kernel's name does not
    fit its place."""
    with open(folder / "ncu16k.csv", newline="") as f:
        rows = [{k: (float(v) if k in NCU_FIELDS else v) for k, v in r.items()} for r in csv.DictReader(f)]
    if len(rows) != len(NCU16K_ORDER):
        raise ValueError(f"ncu16k.csv: expected {len(NCU16K_ORDER)} rows, got {len(rows)}")
    for r, (impl, dtype) in zip(rows, NCU16K_ORDER):
        mark = "combine_kernel" if impl == "triton" else ("bfloat16" if dtype == "bfloat16" else "_float_")
        if mark not in r["kernel"]:
            raise ValueError(f"ncu16k.csv: row {r['id']} ({r['kernel'][:50]}) is not {impl} {dtype}")
        r.update(impl=impl, dtype=dtype, n_tokens=16384)
    return rows


def write_dram16k_csv(folder: Path = GAP_RUN, gpu: str = "NVIDIA H100 80GB HBM3") -> Path:
    """Write folder/DRAM_FILE from ncu16k.csv (ncu16k_rows) for plots.read_dram_counters: our rows labelled by the
    variant the card's launch table runs at 16384 tokens (what `auto` launched), Triton's as triton."""
    from .launch_table import choose

    rows = [{"label": "triton" if r["impl"] == "triton"
             else f"kernel_{choose('cuda', gpu, r['dtype'], r['n_tokens'], 2048, 8).variant}",
             "n_tokens": r["n_tokens"], "dtype": r["dtype"], "dram_bytes": r["dram_read_bytes"] + r["dram_write_bytes"],
             "gpu_time_ns": r["duration_ns"]} for r in ncu16k_rows(folder)]
    return save_dram_rows(rows, folder)


FIXED_BATCH_S = 0.05  # the batches of timing.GPU_TIMER since 2026-12-06, handed over from the first call


def fixed_timer(run: Run) -> bool:
    """Whether a run was timed with the fixed timer (FIXED_BATCH_S batches): the runs whose wall times lessons
    compare with GPU time."""
    return run.meta["timer"]["batch_s"] == FIXED_BATCH_S


def long_batch_runs(runs: Sequence[Run]) -> list[Run]:
    """The combine runs timed with the fixed timer that hold both kernel_auto and eager Triton, oldest first."""
    found = [r for r in runs if r.meta.get("op", "combine") == "combine" and fixed_timer(r)
             and {"kernel_auto", "triton"} <= set(r.meta["impls"])]
    return sorted(found, key=lambda r: (r.meta["gpu"], r.meta["date"], r.source))


def sweep_gaps(run: Run, n_min: int = 2048, h: int = 2048) -> list[tuple[str, int, int, float, float, float]]:
    """(dtype, top_k, n_tokens, ours, Triton's, our GPU µs): wall − GPU µs per call of kernel_auto and eager Triton
    in one run, at every swept n_tokens from n_min, h fixed, and kernel_auto's GPU time."""
    out = []
    for r in sorted(run.select(impl="kernel_auto", h=h), key=lambda r: (r.dtype, r.top_k, r.n_tokens)):
        if r.n_tokens >= n_min:
            (t,) = run.select(impl="triton", dtype=r.dtype, n_tokens=r.n_tokens, top_k=r.top_k, h=h)
            out.append((r.dtype, r.top_k, r.n_tokens, r.median_us - r.gpu_us, t.median_us - t.gpu_us, r.gpu_us))
    return out


def gap_rows(folder: Path = GAP_RUN) -> dict[tuple[str, str, int], dict[str, Any]]:
    """gap.json's rows by (impl, dtype, n_tokens), each with `gap_us` and `gap_long_us`: wall − GPU µs per call
    with the 10-ms and the 50-ms batches."""
    return {(r["impl"], r["dtype"], r["n_tokens"]): r | {"gap_us": r["wall_us"] - r["gpu_us"],
                                                         "gap_long_us": r["wall_long_us"] - r["gpu_us"]}
            for r in load_json("gap.json", folder)["rows"]}


def timeline_cases(before_us: float = 400, after_us: float = 800, one_token_us: float = 2000
                   ) -> dict[str, tuple[list[timeline.Span], float, float]]:
    """Lesson 05's timeline panels: at 8192 tokens (float32, gap run) ours and eager Triton around the end of their
    first timed batch, and Triton in a CUDA graph (the 2026-12-05 probes); at one token (those probes) ours, eager
    Triton and Triton in a CUDA graph; each graph panel from just before its first kernel."""
    rows, cases = gap_rows(), {}
    for impl, label in (("kernel_auto", "ours (MLX)"), ("triton", "Triton, eager")):
        found = timeline.read_csv(GAP_RUN / "gap_timeline.csv", impl=impl, dtype="float32", n_tokens="8192")
        end = timeline.batch_ends(found, rows[(impl, "float32", 8192)]["calls"])[0]
        cases[f"{label}, 8192 tokens: one timed batch ends, the next begins"] = (found, end - before_us, end + after_us)
    chains = [("triton in a CUDA graph", "8192", "Triton in a CUDA graph, 8192 tokens: chained calls (2026-12-05)",
               before_us + after_us)]
    chains += [(case, "1", f"{label}, 1 token: chained calls", one_token_us)
               for case, label in (("ours (MLX)", "ours (MLX)"), ("triton", "Triton, eager"),
                                   ("triton in a CUDA graph", "Triton in a CUDA graph"))]
    for case, n_tokens, label, width in chains:
        found = timeline.read_csv(PROBES / "timeline.csv", case=case, n_tokens=n_tokens)
        first = min(s.start_us for s in found if s.kind == "kernel")
        cases[label] = (found, first - 20, first - 20 + width)
    return cases
