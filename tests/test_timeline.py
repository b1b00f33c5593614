"""Reading a CUPTI timeline: which events are host API calls and which device work, and the idle time between."""
from __future__ import annotations

import pytest

from moe_reduce.timeline import Span, busy, spans, summarise


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
