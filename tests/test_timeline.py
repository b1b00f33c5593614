"""Reading a CUPTI timeline: which events are host API calls and which device work, and the idle time between."""
from __future__ import annotations

import pytest

from moe_reduce.timeline import Span, batch_ends, busy, read_csv, spans, summarise


def trace(*events: tuple[str, str, float, float]) -> dict:
    """A Chrome trace of (cat, name, ts, dur) complete events, with one CPU op that must be ignored."""
    found = [{"ph": "X", "cat": c, "name": n, "ts": ts, "dur": d} for c, n, ts, d in events]
    return {"traceEvents": found + [{"ph": "X", "cat": "cpu_op", "name": "aten::empty", "ts": 0.0, "dur": 1.0}]}


def test_spans_lanes_and_times():
    """Runtime and driver calls go to the host lane, kernels/copies/fills to the device, times from the first."""
    got = spans(trace(("kernel", "k1", 110.0, 5.0), ("cuda_runtime", "cudaGraphLaunch", 100.0, 8.0),
                      ("gpu_memcpy", "Memcpy DtoD", 130.0, 2.0), ("cuda_driver", "cuLaunchKernel", 120.0, 3.0)))
    assert got == [Span("host", "runtime", "cudaGraphLaunch", 0.0, 8.0), Span("device", "kernel", "k1", 10.0, 5.0),
                   Span("host", "driver", "cuLaunchKernel", 20.0, 3.0), Span("device", "copy", "Memcpy DtoD", 30.0, 2.0)]
    assert spans({"traceEvents": []}) == []


def test_busy_is_the_union():
    """Overlaps count once; nested intervals add nothing."""
    assert busy([(0, 10), (5, 15), (20, 25), (21, 22)]) == 20
    assert busy([]) == 0


def test_summary_idle_between_kernels():
    """Two 5 µs kernels 20 µs apart: a 25 µs span, 10 µs busy, 15 µs idle; host time is its API calls."""
    s = summarise(spans(trace(("kernel", "a", 0.0, 5.0), ("kernel", "b", 20.0, 5.0),
                              ("cuda_runtime", "cudaLaunchKernel", 1.0, 3.0))))
    assert (s.device_busy_us, s.device_span_us, s.device_idle_us, s.host_api_us, s.kernels) == \
        pytest.approx((10.0, 25.0, 15.0, 3.0, 2))


def test_read_csv_filters_and_orders(tmp_path):
    """Rows whose extra columns match become Spans in start order; others are left out."""
    path = tmp_path / "t.csv"
    path.write_text("case,n_tokens,lane,kind,name,start_us,dur_us\n"
                    "a,1,device,kernel,k2,20.0,5.0\nb,1,device,kernel,x,0.0,1.0\na,1,host,runtime,cudaGraphLaunch,2.5,3.0\n")
    assert read_csv(path, case="a") == [Span("host", "runtime", "cudaGraphLaunch", 2.5, 3.0),
                                        Span("device", "kernel", "k2", 20.0, 5.0)]
    assert read_csv(path, case="c") == []


def test_batch_ends_every_calls_th_kernel():
    """Batches of 2 kernels end at the 2nd and 4th kernel's end; copies and host calls are not counted."""
    found = [Span("device", "kernel", "k", float(10 * i), 4.0) for i in range(5)]
    found.insert(1, Span("device", "copy", "c", 1.0, 1.0))
    assert batch_ends(found, 2) == [14.0, 34.0]
