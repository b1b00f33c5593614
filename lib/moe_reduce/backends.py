"""The kernel sources in shaders/ (shipped as the package moe_reduce.shaders) and the backends that run
them: 'metal' (mx.fast.metal_kernel, Apple GPU), 'cuda' (mx.fast.cuda_kernel with metal_compat.cuh,
NVIDIA GPU) and 'host' (msl_host: the generated Metal source compiled as C++ and run on the CPU)."""
from __future__ import annotations

import functools
import importlib.resources
import shutil
import subprocess
from pathlib import Path
from typing import Any

import mlx.core as mx
import msl_host
import msl_host.build

BACKENDS = ("metal", "cuda", "host")
SHADERS = importlib.resources.files("moe_reduce.shaders")


def read_source(file: str) -> str:
    """The text of one file in shaders/."""
    return (SHADERS / file).read_text()


@functools.cache
def available_backends() -> tuple[str, ...]:
    """Backends that can run here, best first."""
    found = []
    if mx.metal.is_available():
        found.append("metal")
    if mx.cuda.is_available():
        found.append("cuda")
    command = msl_host.build.compiler()
    if command and shutil.which(command[0]):
        found.append("host")
    return tuple(found)


def pick_backend(backend: str = "auto") -> str:
    """Resolve 'auto' to the best backend present; check a named one is present."""
    present = available_backends()
    if backend == "auto":
        if not present:
            raise RuntimeError("no kernel backend: no Metal (Apple GPU), no CUDA (NVIDIA GPU with mlx[cuda13]) and "
                               "no C++ compiler for the host path: install g++ or clang++, or set $CXX")
        return present[0]
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend not in present:
        raise RuntimeError(f"backend: {backend!r} is not available here (available: {list(present)})")
    return backend


def without_comments(text: str) -> str:
    """The text without // comments and the spaces around each line, line for line (so a compiler's line numbers
    still match the file). MLX's CUDA kernel hashes its whole source at every launch (custom_kernel.cpp,
    MLX 0.32); std::hash took 0.67 µs for 4,300 bytes and 0.93 µs for 6,800 on our 2-core CPU (g++ -O2). What
    the cut saves per call on a GPU host is not yet measured (hostcost's longer-source case will show it)."""
    return "\n".join(line.split("//", 1)[0].strip() for line in text.splitlines()) + "\n"


@functools.cache
def cuda_header() -> str:
    """The header the cuda backend hands MLX: shaders/metal_compat.cuh without comments."""
    return without_comments(read_source("metal_compat.cuh"))


def make_kernel(name: str, source: str, input_names: tuple[str, ...], backend: str,
                output_names: tuple[str, ...] = ("out",), source_name: str | None = None) -> Any:
    """The MLX kernel object for a kernel body on a backend: mx.fast.metal_kernel, mx.fast.cuda_kernel with
    metal_compat.cuh, or msl_host's (`source_name` names the body in the host compiler's messages; every buffer
    access is checked, and one past a buffer's end raises msl_host.KernelFault)."""
    common = dict(name=name, input_names=list(input_names), output_names=list(output_names), source=source)
    if backend == "metal":
        return mx.fast.metal_kernel(**common)
    if backend == "cuda":
        common["source"] = without_comments(source)
        return mx.fast.cuda_kernel(**common, header=cuda_header())
    return msl_host.metal_kernel(**common, source_name=source_name)


@functools.cache
def nvidia_smi_gpu_name() -> str | None:
    """The first GPU's name as nvidia-smi gives it; None where nvidia-smi is missing, fails or prints nothing."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


@functools.cache
def device_name(backend: str) -> str | None:
    """The GPU a backend runs on, as MLX (or nvidia-smi) names it; None for the host backend."""
    if backend == "host":
        return None
    name = mx.device_info().get("device_name")
    if not name and backend == "cuda":
        name = nvidia_smi_gpu_name()
    return name or None


@functools.cache
def compile_shader(file: str, input_names: tuple[str, ...], backend: str,
                   output_names: tuple[str, ...] = ("out",)) -> Any:
    """The MLX kernel object for a body in shaders/ on a backend (make_kernel); cached."""
    return make_kernel(Path(file).stem, read_source(file), input_names, backend, output_names, f"shaders/{file}")
