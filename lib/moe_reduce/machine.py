"""What the sweep runs on: the CPU's name and last-level cache, the GPU's name, library versions."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import mlx.core as mx

from .backends import nvidia_smi_gpu_name
from .impls import mlx_processor, torch_support, triton_support


def cpu_name() -> str:
    """CPU model (from /proc/cpuinfo, else platform) and the CPUs this process may use."""
    name = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                     if ln.startswith("model name")), None)
    name = name or platform.processor() or platform.machine()
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({n} CPUs)"


def llc_bytes() -> int:
    """The CPU's last-level cache from sysfs, or 32 MiB when unknown."""
    for level in ("index3", "index2"):
        path = Path(f"/sys/devices/system/cpu/cpu0/cache/{level}/size")
        if path.exists():
            text = path.read_text().strip()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            return int(text.rstrip("KM")) * scale
    return 32 << 20


def gpu_name() -> str | None:
    """The GPU MLX runs on: nvidia-smi or torch on CUDA, MLX's device_info on Metal; None without one."""
    if mlx_processor() != "gpu":
        return None
    if mx.cuda.is_available():
        name = nvidia_smi_gpu_name()
        support = torch_support()
        return name or (support.device_name() if support else None) or "NVIDIA GPU"
    return str(mx.device_info().get("device_name", "Apple GPU"))


def device_label() -> str:
    """What a run is named by: the GPU's name where MLX runs on one, else the CPU's."""
    return gpu_name() or cpu_name()


# Peak memory bandwidth from the vendors' datasheets, in GB/s, matched against the GPU's name in order.
DATASHEET_GBPS = (
    ("H100 NVL", 3900, "NVIDIA H100 Tensor Core GPU datasheet: H100 NVL, 3.9 TB/s"),
    ("H100 PCIe", 2000, "NVIDIA H100 Tensor Core GPU datasheet: H100 PCIe, 2 TB/s"),
    ("H100", 3350, "NVIDIA H100 Tensor Core GPU datasheet: H100 SXM, 3.35 TB/s HBM3"),
    ("H200", 4800, "NVIDIA H200 Tensor Core GPU datasheet: 4.8 TB/s HBM3e"),
)

# Lesson 01's roofline: float32 FLOP/s without tensor cores and HBM bytes/s, from NVIDIA's H100 (SXM) and H200
# Tensor Core GPU datasheets (67 TFLOPS FP32 on both; 3.35 TB/s HBM3, 4.8 TB/s HBM3e).
DATASHEET_PEAKS = {"H100 SXM": (67e12, 3.35e12), "H200": (67e12, 4.8e12)}

def datasheet(gpu: str | None) -> tuple[float, str] | None:
    """(GB/s, source) of a GPU's datasheet memory bandwidth, or None for a GPU (or CPU) not in the table."""
    for key, value, source in DATASHEET_GBPS:
        if gpu and key in gpu:
            return float(value), source
    return None


def versions() -> dict[str, str | None]:
    """Python, MLX and (where they import with a GPU) PyTorch and Triton versions."""
    support, tri = torch_support(), triton_support()
    return {"python": platform.python_version(), "mlx": mx.__version__,
            "torch": support.torch.__version__ if support else None,
            "triton": tri.triton.__version__ if tri else None}
