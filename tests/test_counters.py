"""Reading Nsight Compute's raw CSV page and building its command line (ncu itself runs on the GPU host only)."""
from __future__ import annotations

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
