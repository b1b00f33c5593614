"""Reading Nsight Compute's raw CSV page, building its command line, and the helpers that run it (ncu itself runs on
the GPU host only; here the process is faked)."""
from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

from moe_reduce import counters

RAW = '''"ID","Process ID","Kernel Name","dram__bytes_read.sum","gpu__time_duration.sum","launch__grid_size"
"","","","byte","ns",""
"0","77","custom_kernel_moe","1,048,576","2,345.5","128"
"1","77","triton_per_fused","4096","1000","n/a"
'''


def test_parse_raw_page():
    """Header, units line, then one row per kernel; thousands separators dropped; text kept as text."""
    rows = counters.parse("==PROF== Connected\n" + RAW)
    assert rows == [
        {"id": 0, "kernel": "custom_kernel_moe", "dram_read_bytes": 1048576.0, "duration_ns": 2345.5, "grid_blocks": 128.0},
        {"id": 1, "kernel": "triton_per_fused", "dram_read_bytes": 4096.0, "duration_ns": 1000.0, "grid_blocks": "n/a"}]
    assert counters.parse("no csv here") == []


def test_command_profiles_only_counted_ranges():
    """The NVTX filter matches the ranges `counted` opens; caches flushed, clocks left alone, every metric asked."""
    cmd = counters.command("ncu", ["python", "t.py"], Path("r"))
    assert cmd[:3] == ["ncu", "--nvtx", "--nvtx-include"] and cmd[3] == "regex:m:.*/"
    assert cmd[cmd.index("--metrics") + 1].split(",") == list(counters.METRICS)
    assert "--cache-control" in cmd and cmd[cmd.index("--clock-control") + 1] == "none" and cmd[-2:] == ["python", "t.py"]


def test_count_each_warms_up_outside_then_counts_each_once(monkeypatch):
    """Every call runs `warmup` times before any range opens, then once inside its own labelled range."""
    events = []

    @contextmanager
    def fake_counted(label):
        events.append(("open", label))
        yield
        events.append(("close", label))

    monkeypatch.setattr(counters, "counted", fake_counted)
    counters.count_each([("a", lambda: events.append("a")), ("b", lambda: events.append("b"))], warmup=2)
    assert events == ["a", "a", "b", "b", ("open", "a"), "a", ("close", "a"), ("open", "b"), "b", ("close", "b")]


def test_profile_runs_the_command_logs_tails_and_reads_the_report(monkeypatch, tmp_path):
    """profile runs command()'s line with lib/ importable, keeps the output tails in the log, reads the .ncu-rep."""
    seen = {}

    def fake_run(cmd, **kw):
        seen.update(cmd=cmd, env=kw["env"])
        return subprocess.CompletedProcess(cmd, 0, "x" * 30000, "err")

    monkeypatch.setattr(counters.subprocess, "run", fake_run)
    monkeypatch.setattr(counters, "read", lambda ncu, report: [{"report": report.name}])
    rows = counters.profile("ncu", ["python", "t.py"], tmp_path / "r", tmp_path / "log.txt")
    assert rows == [{"report": "r.ncu-rep"}]
    assert seen["cmd"] == counters.command("ncu", ["python", "t.py"], tmp_path / "r") and seen["env"]["PYTHONPATH"] == "lib"
    assert (tmp_path / "log.txt").read_text() == "x" * 20000 + "\n---\nerr"
