"""Instruction counts of our cuda kernels as an H100/H200 would run them, on a machine without a GPU: each body as
MLX's CUDA custom kernel generates it (nvrtc_check.units), compiled by NVRTC for sm_90a to a cubin and
disassembled by nvdisasm; printed per body: instructions in all, before the first global load, and the loads.
The row8/row16 bodies are the width probe's (device-2026-12-06-width.py).

    pip install "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*" "nvidia-cuda-nvdisasm==13.*"
    PYTHONPATH=lib python results/cpu-2026-12-06-sass.py --mlx-source MLX_CHECKOUT > results/nvidia-h100-2026-12-06-width/sass.txt
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import re
import subprocess
import tempfile
from pathlib import Path

from moe_reduce import nvrtc_check

LABELS = [f"{v} ({v}) {d}/{d} top_k=8 shared=True residual=True h=2048"
          for v in ("row", "row8", "row16", "vec_k") for d in ("float32", "bfloat16")]


def cubin(nv: nvrtc_check.Nvrtc, source: str) -> bytes:
    """The source compiled by NVRTC for sm_90a (nv's options with the architecture swapped)."""
    options = [b"--gpu-architecture=sm_90a" if o.startswith(b"--gpu-architecture") else o for o in nv.options]
    prog, n = ctypes.c_void_p(), len(nv.names)
    nv.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", n,
                              (ctypes.c_char_p * n)(*nv.headers), (ctypes.c_char_p * n)(*nv.names))
    try:
        if nv.lib.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options)):
            raise RuntimeError("NVRTC failed")
        size = ctypes.c_size_t()
        nv.lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        nv.lib.nvrtcGetCUBIN(prog, buf)
        return buf.raw
    finally:
        nv.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def instructions(root: Path, binary: bytes) -> list[str]:
    """The cubin's instructions as nvdisasm prints them, NOPs left out."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(binary)
        f.flush()
        text = subprocess.run([str(root / "bin/nvdisasm"), "-c", f.name], capture_output=True, text=True,
                              check=True).stdout
    found = [re.sub(r"^\s+/\*[0-9a-f]{4}\*/\s+", "", line).split(";")[0].strip()
             for line in text.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", line)]
    return [i for i in found if i and not i.startswith("NOP")]


def main() -> None:
    """Print one line per body in LABELS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlx-source", type=Path, required=True)
    spec = importlib.util.spec_from_file_location("width", Path(__file__).with_name("device-2026-12-06-width.py"))
    width = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(width)
    width.register()
    root = nvrtc_check.cuda_root()
    nv = nvrtc_check.Nvrtc(root, parser.parse_args().mlx_source)
    units = {u.label: u for u in nvrtc_check.units()}
    print("body | instructions | before the first global load | global loads (widths)")
    for label in LABELS:
        ins = instructions(root, cubin(nv, units[label].source))
        loads = [i for i in ins if "LDG" in i]
        first = next(k for k, i in enumerate(ins) if "LDG" in i)
        print(f"{label} | {len(ins)} | {first} | {len(loads)} ({', '.join(sorted({i.split()[0] for i in loads}))})")
    print("\nrow float32, up to its first global load:")
    ins = instructions(root, cubin(nv, units[LABELS[0]].source))
    print("\n".join("  " + i for i in ins[:next(k for k, i in enumerate(ins) if "LDG" in i) + 1]))


if __name__ == "__main__":
    main()
