"""Compile the cuda backend's kernels with NVRTC on any machine, no GPU needed: the source MLX's CUDA custom
kernel generates (custom_kernel.cpp, MLX 0.32: its default header, ours, the signature, the template constants,
the body) and the NVRTC options it passes (jit_module.cpp), for every variant, the dtype pairs in DTYPES and the
template values our calls set.

    pip install "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*"
    python -m moe_reduce.nvrtc_check --mlx-source PATH   # a checkout of MLX, for mlx/backend/cuda/device/*

It checks that the text compiles to PTX for compute_90a (the H100's and H200's); it runs nothing."""
from __future__ import annotations

import argparse
import ctypes
import itertools
import site
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from . import kernels
from .backends import cuda_header, read_source, without_comments
from .dtypes import dtype_name
from .inputs import GATE_FIELDS
from .validate import Problem

DEFAULT_HEADER = '\n#include "mlx/backend/cuda/device/utils.cuh"\n\n#include <cooperative_groups.h>\n\n'
CUDA_TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16", "float16": "__half"}
OPTIONS = ("--device-as-default-execution-space", "--gpu-architecture=compute_90a")
# (activation dtype, gate dtype): each dtype alone, and bfloat16 activations with float32 gates as tune measures them
DTYPES = (("float32", "float32"), ("bfloat16", "bfloat16"), ("float16", "float16"), ("bfloat16", "float32"))
# ROUNDING's values on cuda: one per rounding of kernels.COMBINE_ROUNDINGS
CUDA_ROUNDING_LEVELS = tuple(kernels.rounding_level(r, "cuda") for r in kernels.COMBINE_ROUNDINGS)


class Unit(NamedTuple):
    """One kernel as MLX would compile it: a label for messages and the generated source."""

    label: str
    source: str


def constant(name: str, value: Any) -> str:
    """A template argument as MLX writes it into the kernel: constexpr int/bool, or a type alias."""
    if isinstance(value, bool):
        return f"  constexpr bool {name} = {str(value).lower()};\n"
    if isinstance(value, int):
        return f"  constexpr int {name} = {value};\n"
    return f"  using {name} = {CUDA_TYPES[dtype_name(value)]};\n"


def generated_source(name: str, header: str, body: str, inputs: list[tuple[str, str]],
                     outputs: list[tuple[str, str]], template: list[tuple[str, Any]]) -> str:
    """The text MLX's build_kernel makes for inputs of ndim > 0: a shape, strides or ndim parameter follows an
    input only where the body names it."""
    params = []
    for arg, dtype in inputs:
        params.append(f"    const {CUDA_TYPES[dtype]}* {arg}")
        params += [f"    const __grid_constant__ {kind} {arg}{suffix}"
                   for suffix, kind in (("_shape", "Shape"), ("_strides", "Strides"), ("_ndim", "int"))
                   if arg + suffix in body]
    params += [f"    {CUDA_TYPES[dtype]}* {arg}" for arg, dtype in outputs]
    constants = "".join(constant(*t) for t in template) + ("\n" if template else "")
    return (DEFAULT_HEADER + header + "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
            f"__global__ void {name}(\n" + ",\n".join(params) + ") {\n" + constants + body
            + "\n}\n\n} // namespace mlx::core::cu\n")


def units() -> Iterator[Unit]:
    """Every combine variant (as choose_variant maps it) and the fused kernel, for each dtype pair of DTYPES, over
    the template values a call can set, with the cuda backend's comment-free header and bodies."""
    header = cuda_header()
    files = {v.file for v in kernels.VARIANTS.values()} | {kernels.FUSED_FILE}
    bodies = {f: without_comments(read_source(f)) for f in files}
    for variant, (dtype, gate), top_k, shared, residual, h in itertools.product(
            kernels.VARIANTS, DTYPES, (1, 8), (True, False), (True, False), (2048, 1001)):
        p = Problem(3, top_k, h, dtype, gate, residual, shared)
        v = kernels.choose_variant(variant, p)
        for level in CUDA_ROUNDING_LEVELS if v.per_op else (0,):
            config = kernels.launch_config(v.name, p, rounding=level)
            yield Unit(f"{variant} ({v.name}) {dtype}/{gate} top_k={top_k} shared={shared} residual={residual} h={h}"
                       + (f" ROUNDING={level}" if level else ""),
                       generated_source(v.name, header, bodies[v.file], input_dtypes(p),
                                        [("out", dtype)], config.template))
    for (dtype, gate), top_k, rounding, level in itertools.product(DTYPES, (1, 8), kernels.NORM_ROUNDINGS,
                                                                   CUDA_ROUNDING_LEVELS):
        p = Problem(3, top_k, 2048, dtype, gate, True)
        mlx_sum = kernels.mlx_cuda_sum(rounding, "cuda")
        config = kernels.fused_config(p, 1e-6, None, rounding, level, mlx_sum)
        yield Unit(f"fused {dtype}/{gate} top_k={top_k} norm_rounding={rounding}"
                   + (f" ROUNDING={level}" if level else "") + (" MLX_CUDA_SUM" if mlx_sum else ""),
                   generated_source("fused", header, bodies[kernels.FUSED_FILE],
                                    input_dtypes(p) + [("weight", dtype)],
                                    [(n, dtype) for n in kernels.FUSED_OUTPUTS], config.template))


def input_dtypes(p: Problem) -> list[tuple[str, str]]:
    """The combine's kernel inputs with their dtypes: the gates (GATE_FIELDS) in the gate dtype."""
    return [(n, p.gate_dtype if n in GATE_FIELDS else p.dtype) for n in kernels.INPUT_NAMES]


def cuda_root() -> Path:
    """site-packages/nvidia/cu13, where the NVIDIA wheels put NVRTC and the CUDA headers."""
    for base in site.getsitepackages() + [site.getusersitepackages()]:
        if (Path(base) / "nvidia/cu13/lib/libnvrtc.so.13").is_file():
            return Path(base) / "nvidia/cu13"
    raise SystemExit('no NVRTC: pip install "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" '
                     '"nvidia-cuda-cccl==13.*"')


class Nvrtc:
    """NVRTC through ctypes, with MLX's device headers given by name as MLX does."""

    def __init__(self, root: Path, mlx_source: Path) -> None:
        """Load libnvrtc from `root` and read MLX's mlx/backend/cuda/device headers from `mlx_source`."""
        device = mlx_source / "mlx/backend/cuda/device"
        files = sorted(p for p in device.glob("*") if p.suffix in (".h", ".cuh"))
        if not files:
            raise SystemExit(f"--mlx-source: expected a checkout of MLX with {device.relative_to(mlx_source)}/*.cuh, "
                             f"found none under {mlx_source}")
        self.lib = ctypes.CDLL(str(root / "lib/libnvrtc.so.13"))
        self.names = [str(p.relative_to(mlx_source)).encode() for p in files]
        self.headers = [p.read_bytes() for p in files]
        self.options = [*map(str.encode, OPTIONS), f"--include-path={root}/include/cccl".encode(),
                        f"--include-path={root}/include".encode()]

    def compile(self, unit: Unit) -> tuple[bool, str]:
        """Whether the unit compiles, and NVRTC's log."""
        prog, n = ctypes.c_void_p(), len(self.names)
        if self.lib.nvrtcCreateProgram(ctypes.byref(prog), unit.source.encode(), b"kernel.cu", n,
                                       (ctypes.c_char_p * n)(*self.headers), (ctypes.c_char_p * n)(*self.names)):
            raise RuntimeError("nvrtcCreateProgram failed")
        try:
            status = self.lib.nvrtcCompileProgram(prog, len(self.options),
                                                  (ctypes.c_char_p * len(self.options))(*self.options))
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value + 1)
            self.lib.nvrtcGetProgramLog(prog, log)
            return status == 0, log.value.decode(errors="replace")
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def main(argv: list[str] | None = None) -> None:
    """Compile every unit; print each failure's log (first 40 lines) and a count; exit 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m moe_reduce.nvrtc_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlx-source", type=Path, required=True, help="a checkout of MLX's source")
    nvrtc = Nvrtc(cuda_root(), parser.parse_args(argv).mlx_source)
    failed = 0
    for count, unit in enumerate(units(), 1):
        ok, log = nvrtc.compile(unit)
        if not ok:
            failed += 1
            print(f"FAILED {unit.label}\n" + "\n".join(log.splitlines()[:40]))
    print(f"{count} kernels compiled with NVRTC (compute_90a): {count - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
