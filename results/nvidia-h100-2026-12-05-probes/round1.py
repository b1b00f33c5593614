"""GPU probes of 2026-12-05, round 1 (one-off, on the lent H100/H200): where a small call's GPU time goes, before
changing the kernel. Run from the repository root as

    OUT=DIR PYTHONPATH=lib python3 results/nvidia-2026-12-05-probes/round1.py STEP [STEP ...]

STEP: env, empty, nographs (run with MLX_USE_CUDA_GRAPHS=0), candidates, latency, host, timeline, ncu
(ncu_target is what ncu runs). Each step writes <step>.json or .csv into $OUT and prints a short table.
Candidate kernel bodies not shipped in shaders/ are in variants/ beside this file."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx

from moe_reduce import counters, gputime, hostcost, kernels, latency, timeline
from moe_reduce.backends import make_kernel, read_source
from moe_reduce.check import rel_error, tolerance
from moe_reduce.impls import kernel_impl, torch_support, triton_support
from moe_reduce.inputs import CombineArgs
from moe_reduce.sweep import GPU_BUDGET, Size, SizeCase, n_sets, timed_call
from moe_reduce.timing import chained, rotation, run_calls

OUT = Path(os.environ.get("OUT", "/tmp/out"))
HERE = Path(__file__).parent
H, K = 2048, 8
CALLS, REPEATS = 64, 3
THREADS = (64, 128, 256, 512)
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BACKEND = "cuda"


def log(*a: Any) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def save(name: str, obj: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(obj, indent=1, default=str) + "\n")


def save_csv(name: str, rows: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def sync(outs: list) -> None:
    mx.eval(*outs)
    mx.synchronize()


# ---------------------------------------------------------------- candidates


@dataclasses.dataclass(frozen=True)
class Cand:
    """A kernel body and its switches: the shipped variants launch through kernels; the probes are
    variants/row.metal with `row_bytes` bytes of each row per thread."""

    name: str
    shipped: str | None = None  # kernels variant name
    row_bytes: int = 4
    grid2d: bool = True
    hh: bool = True  # h fixed when compiled
    fast: bool = True  # gate without a call to the division's slow path


CANDS = [Cand("scalar_k", "scalar_k"), Cand("vec_k", "vec_k"),
         Cand("b4"), Cand("b4_rt", hh=False), Cand("b4_1d", grid2d=False, hh=False), Cand("b4_slow", fast=False),
         Cand("b8", row_bytes=8), Cand("b8_slow", row_bytes=8, fast=False), Cand("b16", row_bytes=16), Cand("b16_slow", row_bytes=16, fast=False)]


def cand_fn(c: Cand, dtype: str, n: int, h: int, k: int, threads: int, backend: str) -> Callable[..., mx.array]:
    """fn(*CombineArgs) for one candidate and launch."""
    if c.shipped:
        return lambda *a: kernels.moe_weighted_reduce(*a, backend=backend, variant=c.shipped, threads=threads)
    kernel = make_kernel("cand_row", (HERE / "variants" / "row.metal").read_text(), kernels.INPUT_NAMES, backend)
    w = c.row_bytes // (4 if dtype == "float32" else 2)
    g = h // w
    template = [("T", getattr(mx, dtype)), ("W", w), ("TOP_K", k), ("HAS_SHARED", True), ("HAS_RESIDUAL", True),
                ("GRID2D", c.grid2d), ("HH", h if c.hh else 0), ("FAST", c.fast)]
    grid = (g, n, 1) if c.grid2d else (g * n, 1, 1)

    def fn(*a: mx.array) -> mx.array:
        p = kernels.validate(*a, allowed=kernels.KERNEL_DTYPES)
        ins = kernels.kernel_inputs(p, CombineArgs(*a))
        return kernel(inputs=ins, template=template, grid=grid, threadgroup=(min(threads, grid[0]), 1, 1),
                      output_shapes=[(n, h)], output_dtypes=[ins[1].dtype])[0]

    return fn


def view_logit(a: CombineArgs) -> CombineArgs:
    """The same arguments with sh_logit a view into a 16-element (or longer) array, out of MLX's small pool."""
    n = a.sh_logit.shape[0]
    big = mx.concatenate([a.sh_logit, mx.zeros((16,), a.sh_logit.dtype)])
    mx.eval(big)
    return a._replace(sh_logit=big[:n])


def kernel_times(calls: dict[Any, Callable], count: int, match: Callable[[str], bool]) -> dict[Any, list[float]]:
    """Per choice, the per-repeat median GPU µs of REPEATS x CALLS chained calls, one profiler session."""
    at = rotation(count)
    for call in calls.values():
        run_calls(call, 2, at, sync, mx.async_eval, CALLS)
    mx.synchronize()

    def run() -> None:
        for c, _ in itertools.product(calls, range(REPEATS)):
            run_calls(calls[c], CALLS, at, sync, mx.async_eval, CALLS)

    acts = [us for name, us in gputime.device_activities(run) if match(name)]
    if len(acts) != len(calls) * REPEATS * CALLS:
        raise RuntimeError(f"expected {len(calls) * REPEATS * CALLS} kernels, got {len(acts)}")
    out = {}
    for i, c in enumerate(calls):
        out[c] = [statistics.median(acts[(i * REPEATS + r) * CALLS:(i * REPEATS + r + 1) * CALLS])
                  for r in range(REPEATS)]
    return out


def triton_time(case: SizeCase, count: int) -> tuple[list[float], str]:
    """The Triton peer's per-repeat median GPU µs under the same rotation, and its configuration."""
    it = triton_support()
    impl = it.all_impls()[0]
    fn = impl.build(case.dtype)
    sets = case.sets(impl, count)
    cfg = it.best_config(it.signature(sets[0]))
    call, _, _, rotate = timed_call(impl, fn, sets)
    at = rotation(rotate)
    run_calls(call, CALLS, at, impl.sync)
    reps = []
    for _ in range(REPEATS):
        acts = gputime.device_activities(lambda: run_calls(call, CALLS, at, impl.sync))
        reps.append(statistics.median(us for name, us in acts if "combine_kernel" in name))
    return reps, f"block={cfg.block} warps={cfg.warps}"


def step_candidates() -> None:
    rows, configs = [], {}
    for dtype in ("float32", "bfloat16"):
        for n in TOKENS:
            case = SizeCase(Size(n, H, K), dtype, True)
            count = n_sets(case.bytes, GPU_BUDGET)
            impl = kernel_impl("auto", BACKEND)
            sets = [view_logit(s) if n <= 2 else s for s in case.sets(impl, count)]
            ref = case.ref[0]
            calls = {}
            for c in CANDS:
                for t in THREADS:
                    fn = cand_fn(c, dtype, n, H, K, t, BACKEND)
                    err = rel_error(fn(*sets[0]), ref)
                    if not err < tolerance(dtype):
                        log("WRONG", c.name, t, dtype, n, err)
                        continue
                    calls[(c.name, t)] = chained(fn, sets)[0]
            got = kernel_times(calls, count, lambda s: "moe_weighted" in s or "cand_" in s)
            for (name, t), reps in got.items():
                rows.append(dict(dtype=dtype, n_tokens=n, kernel=name, threads=t, gpu_us=statistics.median(reps),
                                 spread=(max(reps) - min(reps)) / statistics.median(reps), sets=count))
            try:
                reps, cfg = triton_time(case, count)
                configs[f"{dtype} {n}"] = cfg
                rows.append(dict(dtype=dtype, n_tokens=n, kernel="triton", threads=0, gpu_us=statistics.median(reps),
                                 spread=(max(reps) - min(reps)) / statistics.median(reps), sets=count))
            except Exception as e:  # noqa: BLE001 - a probe records what failed and goes on
                log("triton failed", dtype, n, e)
            best = sorted((r for r in rows if r["dtype"] == dtype and r["n_tokens"] == n), key=lambda r: r["gpu_us"])
            log(dtype, n, " ".join(f"{r['kernel']}/{r['threads']}={r['gpu_us']:.2f}" for r in best[:6]))
            del case, sets, calls
            mx.clear_cache()
            torch_support().release()
            save_csv("candidates", rows)
            save("triton_configs", configs)


# ---------------------------------------------------------------- empty kernels and graph launches


def cupti_median(call: Callable[[int, Any], Any], match: str, flush: bool = True) -> tuple[float, int]:
    at = rotation(1)
    run_calls(call, CALLS, at, sync, mx.async_eval if flush else None, CALLS)
    acts = gputime.device_activities(lambda: [run_calls(call, CALLS, at, sync, mx.async_eval if flush else None, CALLS)
                                              for _ in range(REPEATS)])
    ks = [us for name, us in acts if match in name]
    return statistics.median(ks), len(ks)


def mlx_empty_cases() -> dict[str, tuple[float, int]]:
    res = {}
    one = hostcost.empty_kernel(("x",), (1,), 1, BACKEND, compiled=True)
    x1 = mx.zeros((1,))
    big = mx.zeros((4096,)) + 0
    mx.eval(x1, big)
    res["mlx empty, 1 thread, 1-element in/out (small pool)"] = cupti_median(
        lambda i, p: one(x1 if p is None else p), "empty_x")
    wide = hostcost.empty_kernel(("x",), (4096,), 256, BACKEND, compiled=True)
    res["mlx empty, 4096 threads, 4096-element in/out (device memory)"] = cupti_median(
        lambda i, p: wide(big if p is None else p), "empty_x")
    chase1 = make_kernel("empty_suite", read_source("empty.metal"), ("x",), BACKEND)
    f = mx.compile(lambda a: chase1(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
                                    output_dtypes=[mx.float32])[0])
    res["mlx shaders/empty.metal, 1 thread (the suite's floor)"] = cupti_median(
        lambda i, p: f(x1 if p is None else p), "empty_suite")
    return res


def step_empty() -> None:
    res = mlx_empty_cases()
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def nop(p):
        pass

    @triton.jit
    def nop5(a, b, c, d, e, o):
        pass

    t = torch.zeros(4096, device="cuda")
    for name, launch, match in (("triton nop, 1 program, 1 pointer", lambda: nop[(1,)](t), "nop"),
                                ("triton nop, 16 programs, 6 pointers", lambda: nop5[(16,)](t, t, t, t, t, t), "nop5")):
        launch()
        torch.cuda.synchronize()
        acts = gputime.device_activities(lambda: ([launch() for _ in range(CALLS * REPEATS)], torch.cuda.synchronize()))
        ks = [us for nm, us in acts if nm.startswith(match) and (match == "nop5" or not nm.startswith("nop5"))]
        res[name] = (statistics.median(ks), len(ks))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS):
            nop[(1,)](t)
    graph.replay()
    torch.cuda.synchronize()
    acts = gputime.device_activities(lambda: ([graph.replay() for _ in range(REPEATS)], torch.cuda.synchronize()))
    ks = [us for nm, us in acts if nm.startswith("nop")]
    res["triton nop, 1 program, in a CUDA graph"] = (statistics.median(ks), len(ks))
    save("empty", res)
    for k, v in res.items():
        log(f"{v[0]:7.3f} µs  {k}")


def step_nographs() -> None:
    """The same empties and two sizes of our kernel with MLX_USE_CUDA_GRAPHS=0 (in a process of its own)."""
    if os.environ.get("MLX_USE_CUDA_GRAPHS") != "0":
        subprocess.run([sys.executable, __file__, "nographs"], env=os.environ | {"MLX_USE_CUDA_GRAPHS": "0"},
                       check=True)
        return
    res = {k + " [no graphs]": v for k, v in mlx_empty_cases().items()}
    for n in (1, 64):
        case = SizeCase(Size(n, H, K), "float32", True)
        count = n_sets(case.bytes, GPU_BUDGET)
        impl = kernel_impl("auto", BACKEND)
        sets = [view_logit(s) if n <= 2 else s for s in case.sets(impl, count)]
        for v in ("scalar_k", "vec_k"):
            call = chained(lambda *a, v=v: kernels.moe_weighted_reduce(*a, backend=BACKEND, variant=v, threads=256),
                           sets)[0]
            at = rotation(count)
            run_calls(call, CALLS, at, sync, mx.async_eval, CALLS)
            acts = gputime.device_activities(lambda: [run_calls(call, CALLS, at, sync, mx.async_eval, CALLS)
                                                      for _ in range(REPEATS)])
            ks = [us for name, us in acts if "moe_weighted" in name]
            res[f"{v}/256 n={n} f32 [no graphs]"] = (statistics.median(ks), len(ks))
    save("nographs", res)
    for k, v in res.items():
        log(f"{v[0]:7.3f} µs  {k}")


# ---------------------------------------------------------------- latency, host cost, timeline


def step_latency() -> None:
    found = latency.measure(BACKEND)
    save("latency", [dataclasses.asdict(x) for x in found])
    for x in found:
        log(f"{x.footprint >> 20:6d} MiB  {x.ns:7.1f} ns/load  ({x.short_us:.1f} / {x.long_us:.1f} µs)")


def step_host() -> None:
    runs = hostcost.measure(repeats=7)
    save("host", {"runs_us": runs, "summary": hostcost.summary(runs)})
    for k, v in hostcost.summary(runs).items():
        log(f"{v['median']:7.2f} µs ({v['min']:.2f}-{v['max']:.2f})  {k}")


def old_run_calls(call, calls, sets, sync, flush=None, group=1) -> None:
    """timing.run_calls as it was before 2026-12-05: the first hand-over after a whole group."""
    out = None
    for j in range(1, calls + 1):
        out = call(next(sets), out)
        if flush is not None and (j % group == 0 or j == calls):
            flush([out])
    sync([out])


def step_timeline() -> None:
    from moe_reduce import impls_torch, impls_triton

    rows, summary = [], {}
    for n in (1, 8192):
        case = SizeCase(Size(n, H, K), "float32", True)
        count = n_sets(case.bytes, GPU_BUDGET)
        contenders = [("ours (MLX)", kernel_impl("auto", BACKEND), run_calls, 64),
                      ("ours (MLX), old hand-over", kernel_impl("auto", BACKEND), old_run_calls, 31),
                      ("triton", impls_triton.all_impls()[0], run_calls, 64),
                      ("triton in a CUDA graph", impls_triton.all_impls()[1], run_calls, 1)]
        for label, impl, runner, calls in contenders:
            if label.endswith("old hand-over") and n == 1:
                continue
            fn = impl.build("float32")
            sets = case.sets(impl, count)
            call, linked, per, rotate = timed_call(impl, fn, sets)
            at = rotation(rotate)
            group = 64 if linked else 1
            runner(call, calls, at, impl.sync, impl.flush, group)
            found = timeline.record(lambda: runner(call, calls, at, impl.sync, impl.flush, group))
            s = timeline.summarise(found)
            summary[f"{label} n={n}"] = dataclasses.asdict(s) | {"calls": calls * per}
            rows += [dict(case=label, n_tokens=n, **dataclasses.asdict(x)) for x in found]
            log(f"{label} n={n}: busy {s.device_busy_us:.0f} / span {s.device_span_us:.0f} µs, idle "
                f"{s.device_idle_us:.0f} µs, host API {s.host_api_us:.0f} µs, {s.kernels} kernels")
        del case
        mx.clear_cache()
        torch_support().release()
    save_csv("timeline", rows)
    save("timeline_summary", summary)


# ---------------------------------------------------------------- Nsight Compute


NCU_TOKENS = (1, 16, 64, 1024)
NCU_CANDS = ("scalar_k", "vec_k", "b4", "b4_slow", "b16")


def step_ncu_target() -> None:
    """Run under ncu: each measured call inside counted(label)."""
    import torch
    from moe_reduce import impls_triton as it
    from moe_reduce.impls_torch import compiled

    configs = json.loads((OUT / "triton_configs.json").read_text()) if (OUT / "triton_configs.json").exists() else {}
    todo = []
    for dtype in ("float32", "bfloat16"):
        for n in NCU_TOKENS:
            case = SizeCase(Size(n, H, K), dtype, True)
            a = case.sets(kernel_impl("auto", BACKEND), 1)[0]
            a = view_logit(a) if n <= 2 else a
            for c in CANDS:
                if c.name in NCU_CANDS:
                    todo.append((f"{c.name}/256 {dtype} n={n}", lambda fn=cand_fn(c, dtype, n, H, K, 256, BACKEND), a=a:
                                 sync([fn(*a)])))
            timpl = it.all_impls()[0]
            ta = case.sets(timpl, 1)[0]
            cfg = configs.get(f"{dtype} {n}")
            if cfg:
                b, w = (int(x.split("=")[1]) for x in cfg.split())
                todo.append((f"triton {cfg} {dtype} n={n}",
                             lambda ta=ta, b=b, w=w: (it.launch(it.Config(b, w), *ta), torch.cuda.synchronize())))
    for dtype in ("float32", "bfloat16"):
        case = SizeCase(Size(4096, H, K), dtype, True)
        ta = case.sets(it.all_impls()[0], 1)[0]
        fn = compiled(dtype)
        todo.append((f"torch_compile {dtype} n=4096", lambda fn=fn, ta=ta: (fn(*ta), torch.cuda.synchronize())))
    counters.count_each(todo)


def step_ncu() -> None:
    ncu = counters.require_ncu()
    log("ncu", ncu, subprocess.run([ncu, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1])
    report = OUT / "ncu_round1"
    rows = counters.profile(ncu, [sys.executable, __file__, "ncu_target"], report, OUT / "ncu_log.txt")
    save_csv("ncu", rows)
    for r in rows:
        log(f"{r['label'][:44]:44s} {r.get('duration_ns', 0) / 1e3:8.2f} µs dram {r.get('dram_read_bytes', 0) / 1e6:8.2f} MB "
            f"occ {r.get('achieved_occupancy_pct', 0):5.1f}% elig {r.get('eligible_warps_per_cycle', 0):.2f}")
    sass = subprocess.run([ncu, "-i", str(report.with_suffix(".ncu-rep")), "--page", "source", "--csv",
                           "--print-source", "sass"], capture_output=True, text=True)
    (OUT / "ncu_sass.txt").write_text((sass.stdout or sass.stderr)[:3_000_000])


def step_env() -> None:
    import torch
    info = {"mlx": mx.__version__, "device_info": mx.device_info(), "torch": torch.__version__,
            "triton": triton_support().triton.__version__, "python": sys.version,
            "nvidia_smi": subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm,"
                                          "clocks.max.mem", "--format=csv"], capture_output=True, text=True).stdout,
            "ncu": counters.ncu_binary()}
    save("env", info)
    log(json.dumps(info, default=str)[:600])


STEPS = {"env": step_env, "empty": step_empty, "nographs": step_nographs, "candidates": step_candidates,
         "latency": step_latency, "host": step_host, "timeline": step_timeline, "ncu": step_ncu,
         "ncu_target": step_ncu_target}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        log("step", name)
        try:
            STEPS[name]()
        except Exception:  # noqa: BLE001 - one failed step must not lose the others
            log("FAILED", name)
            traceback.print_exc()
            (OUT / f"{name}.error.txt").write_text(traceback.format_exc())
