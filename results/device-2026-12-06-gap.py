"""GPU probe of 2026-12-06, round 3 (one-off): where does the wall-minus-GPU gap of `bench` come from at
2048-16384 tokens? Run from the repository root as

    OUT=DIR PYTHONPATH=lib python3 results/device-2026-12-06-gap.py gap ncu

`gap`: for our kernel (`auto`, through MLX) and the eager Triton kernel, float32 and bfloat16, h 2048, top_k 8,
at 2048, 8192 and 16384 tokens, exactly as `bench` times them (sweep.timed_call, time_fn with GPU_TIMER, the
same rotation of input sets): the wall time per call and its batch size; the same with batches 5x longer
(batch_s 0.05: a cost paid once per batch shrinks 5x per call, one paid per call does not); the GPU time as bench
takes it; and a CUPTI timeline (host API calls and device activities) of three consecutive timed batches, with
every device idle gap over 2 µs and the host API calls that overlap it. Writes gap.json and gap_timeline.csv.
`ncu`: Nsight Compute counters (counters.METRICS, caches flushed) of our kernel and Triton's at 16384 tokens,
float32 and bfloat16 (rows of 05's counter table at the size it lacked). Writes ncu16k.csv."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import mlx.core as mx

from moe_reduce import counters, timeline
from moe_reduce.gputime import chained_gpu_time
from moe_reduce.impls import kernel_impl, torch_support, triton_support
from moe_reduce.sweep import GPU_BUDGET, GPU_TIME_CALLS, Size, SizeCase, n_sets, timed_call
from moe_reduce.timing import GPU_TIMER, rotation, run_calls, time_fn

OUT = Path(os.environ.get("OUT", "/tmp/out"))
H, K = 2048, 8
TOKENS = (2048, 8192, 16384)
SHORT_TIMER = dataclasses.replace(GPU_TIMER, batch_s=0.01)  # GPU_TIMER's batches until 2026-12-06
LONG_TIMER = dataclasses.replace(GPU_TIMER, batch_s=0.05)  # its batches since (the H200 run of that day timed both
# columns with GPU_TIMER, by then 50 ms: set both here so that a later run is an A/B again)
MIN_GAP_US = 2.0


def log(*a: Any) -> None:
    """A timestamped line."""
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def contenders() -> list:
    """Our kernel through MLX and the eager Triton kernel, as bench names them."""
    return [kernel_impl("auto", "cuda")] + ([triton_support().all_impls()[0]] if triton_support() else [])


def idle_gaps(found: list[timeline.Span]) -> list[dict]:
    """Device idle gaps over MIN_GAP_US: where, how long, after which device activity, and the host API calls
    overlapping the gap (name: overlapped µs, the five longest)."""
    dev = [s for s in found if s.lane == "device"]
    host = [s for s in found if s.lane == "host"]
    gaps, end, last = [], None, None
    for i, s in enumerate(dev):
        if end is not None and s.start_us - end > MIN_GAP_US:
            lap: dict[str, float] = {}
            for x in host:
                o = min(s.start_us, x.start_us + x.dur_us) - max(end, x.start_us)
                if o > 0:
                    lap[x.name] = lap.get(x.name, 0.0) + o
            top = dict(sorted(lap.items(), key=lambda kv: -kv[1])[:5])
            gaps.append(dict(at_us=end, gap_us=s.start_us - end, after_activity=i, after=last, host=top))
        end = s.start_us + s.dur_us if end is None else max(end, s.start_us + s.dur_us)
        last = s.name[:60]
    return gaps


def host_totals(found: list[timeline.Span]) -> dict[str, dict[str, float]]:
    """Per host API name: how many calls and their µs in all."""
    out: dict[str, dict[str, float]] = {}
    for s in found:
        if s.lane == "host":
            d = out.setdefault(s.name, {"count": 0, "us": 0.0})
            d["count"] += 1
            d["us"] += s.dur_us
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["us"]))


def step_gap() -> None:
    """Wall, wall with long batches, GPU time and a three-batch timeline per contender, dtype and size."""
    rows, spans_out = [], []
    for dtype in ("float32", "bfloat16"):
        for n in TOKENS:
            case = SizeCase(Size(n, H, K), dtype, True)
            count = n_sets(case.bytes, GPU_BUDGET)
            for impl in contenders():
                fn = impl.build(dtype)
                call, linked, per, rotate = timed_call(impl, fn, case.sets(impl, count))
                group = GPU_TIMER.graph_calls if linked else 1
                t = time_fn(call, impl.sync, rotate, SHORT_TIMER, flush=impl.flush, group=group)
                t_long = time_fn(call, impl.sync, rotate, LONG_TIMER, flush=impl.flush, group=group)
                g = chained_gpu_time(call, max(1, min(t.calls, GPU_TIME_CALLS)), rotate, impl.sync, impl.flush, group)
                at = rotation(rotate)
                found = timeline.record(lambda: [run_calls(call, t.calls, at, impl.sync, impl.flush, group)
                                                 for _ in range(3)])
                s = timeline.summarise(found)
                gaps = idle_gaps(found)
                row = dict(impl=impl.name, dtype=dtype, n_tokens=n, sets=count, calls=t.calls, wall_us=t.median * 1e6,
                           wall_p20_us=t.p20 * 1e6, wall_p80_us=t.p80 * 1e6, calls_long=t_long.calls,
                           wall_long_us=t_long.median * 1e6, gpu_us=g.us if g else None,
                           timeline=dataclasses.asdict(s) | {"calls": 3 * t.calls}, gaps=gaps,
                           host_api=host_totals(found))
                rows.append(row)
                spans_out += [dict(impl=impl.name, dtype=dtype, n_tokens=n, **dataclasses.asdict(x)) for x in found]
                log(f"{impl.name:12s} {dtype} n={n}: wall {row['wall_us']:.1f} µs ({t.calls} calls/batch), long "
                    f"{row['wall_long_us']:.1f} ({t_long.calls}), gpu {row['gpu_us']:.1f}; timeline busy "
                    f"{s.device_busy_us / (3 * t.calls):.1f}/call, idle {s.device_idle_us:.0f} µs in {len(gaps)} gaps: "
                    + "; ".join(f"{x['gap_us']:.0f}@{x['after_activity']} {list(x['host'])[:2]}" for x in gaps[:6]))
                (OUT / "gap.json").write_text(json.dumps(dict(mlx=mx.__version__, rows=rows), indent=1) + "\n")
            del case
            mx.clear_cache()
            if torch_support():
                torch_support().release()
    with open(OUT / "gap_timeline.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(spans_out[0]))
        w.writeheader()
        w.writerows(spans_out)


def step_ncu_target() -> None:
    """Run under ncu: each call of our kernel and Triton's at 16384 tokens inside counted(label)."""
    import torch

    todo = []
    for dtype in ("float32", "bfloat16"):
        case = SizeCase(Size(16384, H, K), dtype, True)
        for impl in contenders():
            fn, a = impl.build(dtype), case.sets(impl, 1)[0]
            sync = (lambda out: mx.eval(out) or mx.synchronize()) if impl.backend == "cuda" else \
                (lambda out: torch.cuda.synchronize())
            todo.append((f"{impl.name} {dtype} n=16384", lambda fn=fn, a=a, sync=sync: sync(fn(*a))))
    counters.count_each(todo)


def step_ncu() -> None:
    """ncu over step_ncu_target in a child process; the rows as ncu16k.csv."""
    ncu = counters.require_ncu()
    report = OUT / "ncu16k"
    rows = counters.profile(ncu, [sys.executable, __file__, "ncu_target"], report, OUT / "ncu16k_log.txt")
    with open(OUT / "ncu16k.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        log(f"{r['label'][:40]:40s} {r.get('duration_ns', 0) / 1e3:8.2f} µs dram {r.get('dram_read_bytes', 0) / 1e6:8.2f} MB "
            f"occ {r.get('achieved_occupancy_pct', 0):5.1f}% elig {r.get('eligible_warps_per_cycle', 0):.2f}")
    report.with_suffix(".ncu-rep").unlink(missing_ok=True)


STEPS = {"gap": step_gap, "ncu": step_ncu, "ncu_target": step_ncu_target}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:]:
        log("step", name)
        try:
            STEPS[name]()
        except Exception:  # noqa: BLE001 - one failed step must not lose the others
            log("FAILED", name)
            traceback.print_exc()
            (OUT / f"{name}.error.txt").write_text(traceback.format_exc())
