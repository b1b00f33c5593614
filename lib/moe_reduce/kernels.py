"""Build and dispatch the kernels in shaders/ on whichever backend is present:
'metal' (mx.fast.metal_kernel, Apple GPU), 'cuda' (mx.fast.cuda_kernel with the
shaders/metal_compat.cuh header, NVIDIA GPU) or 'host' (the generated Metal source
compiled with the C++ compiler and run thread by thread, any CPU)."""
from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from . import host
from .dtypes import to_mlx_dtype
from .validate import Problem, validate

SHADERS = Path(__file__).resolve().parents[2] / "shaders"
INPUT_NAMES = ["expert_w", "y_expert", "sh_logit", "y_shared", "residual"]
KERNEL_DTYPES = ("float32", "float16", "bfloat16")
BACKENDS = ("metal", "cuda", "host")


@dataclass(frozen=True)
class Variant:
    """One kernel source in shaders/ and how many outputs each of its threads makes."""

    name: str
    file: str
    summary: str


VARIANTS = {
    v.name: v
    for v in [
        Variant("scalar", "moe_weighted_reduce.metal", "one thread per output element"),
        Variant("vec", "moe_weighted_reduce_vec.metal", "16-byte vector loads, 4 (f32) or 8 (f16/bf16) outputs per thread"),
    ]
}


@dataclass(frozen=True)
class RunInfo:
    """What ran: backend, variant, MLX kernel name, grid and threadgroup (both in threads)."""

    backend: str
    variant: str
    name: str
    grid: tuple[int, int, int]
    threadgroup: tuple[int, int, int]
    template: tuple


@functools.cache
def kernel_source(variant: str = "scalar") -> str:
    """The .metal body of a variant, as read from shaders/."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
    return (SHADERS / VARIANTS[variant].file).read_text()


@functools.cache
def available_backends() -> tuple[str, ...]:
    """Backends that can run here, best first."""
    found = []
    if mx.metal.is_available():
        found.append("metal")
    if mx.cuda.is_available():
        found.append("cuda")
    if shutil.which(os.environ.get("CXX", "c++")):
        found.append("host")
    return tuple(found)


def pick_backend(backend: str = "auto") -> str:
    """Resolve 'auto' to the best backend present; check a named one is present."""
    present = available_backends()
    if backend == "auto":
        if not present:
            raise RuntimeError("no backend: no Metal, no CUDA, and no C++ compiler ($CXX or c++) for the host path")
        return present[0]
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend not in present:
        raise RuntimeError(f"backend: {backend!r} is not available here (available: {list(present)})")
    return backend


@functools.cache
def compile_shader(file: str, input_names: tuple[str, ...], backend: str):
    """The MLX kernel object for any body in shaders/ (one output, `out`) on a backend; cached."""
    common = dict(name=Path(file).stem, input_names=list(input_names), output_names=["out"],
                  source=(SHADERS / file).read_text())
    if backend == "metal":
        return mx.fast.metal_kernel(**common)
    if backend == "cuda":
        return mx.fast.cuda_kernel(**common, header=(SHADERS / "metal_compat.cuh").read_text())
    return host.metal_kernel(**common, source_name=f"shaders/{file}")


def build(variant: str, backend: str):
    """The MLX kernel object of a variant on a backend; built once per process."""
    kernel_source(variant)  # checks the name
    return compile_shader(VARIANTS[variant].file, tuple(INPUT_NAMES), backend)


def outputs_per_thread(variant: str, dtype: str) -> int:
    """W: consecutive outputs one thread makes (16 bytes of the activation dtype for 'vec')."""
    return 1 if variant == "scalar" else 16 // to_mlx_dtype(dtype).size


def effective_variant(variant: str, p: Problem) -> str:
    """The variant that runs: 'vec' falls back to 'scalar' when n_tokens*h < 8 (see the vec shader)."""
    kernel_source(variant)  # checks the name
    return "scalar" if variant == "vec" and p.n_tokens * p.h < 8 else variant


def launch_config(variant: str, p: Problem, threads: int = 256) -> tuple[tuple, tuple, list]:
    """Grid and threadgroup in threads (MLX's convention: a 1-D grid of n_tokens * ceil(h / W)
    threads) and the template arguments for one call."""
    w = outputs_per_thread(variant, p.dtype)
    n = p.n_tokens * -(-p.h // w)
    if n >= 2**31:
        raise ValueError(f"n_tokens * h: expected under 2^31 threads ({w} outputs each), got {n}")
    template = [("T", to_mlx_dtype(p.dtype)), ("HAS_RESIDUAL", p.residual)]
    if variant == "vec":
        aligned = p.h % w == 0
        template += [("NV", w // 4), ("ALIGNED", aligned)]
    return (n, 1, 1), (min(threads, n), 1, 1), template


@functools.cache
def _no_residual(dtype: str) -> mx.array:
    """Stand-in for the residual input when there is none: 16 zeros, so MLX passes it in the
    device address space like a real residual (never read: HAS_RESIDUAL is false)."""
    z = mx.zeros((16,), to_mlx_dtype(dtype))
    mx.eval(z)
    return z


def _as_mx(x) -> mx.array:
    """An MLX array from a NumPy or MLX array."""
    return x if isinstance(x, mx.array) else mx.array(x)


def moe_weighted_reduce(expert_w, y_expert, sh_logit, y_shared, residual=None, *, backend: str = "auto",
                        variant: str = "scalar", threads: int = 256, init_value: float | None = None,
                        return_info: bool = False):
    """Run the combine kernel: returns out (n_tokens, h) as an mx.array, or (out, RunInfo).
    Arguments are checked before anything runs; `init_value` pre-fills the output (NaN poisons it)."""
    p = validate(expert_w, y_expert, sh_logit, y_shared, residual, allowed=KERNEL_DTYPES)
    backend = pick_backend(backend)
    variant = effective_variant(variant, p)
    kernel = build(variant, backend)
    grid, group, template = launch_config(variant, p, threads)
    y = _as_mx(y_expert).reshape(p.n_tokens * p.top_k, p.h)
    res = _as_mx(residual) if residual is not None else _no_residual(p.dtype)
    inputs = [_as_mx(expert_w), y, _as_mx(sh_logit), _as_mx(y_shared), res]
    (out,) = kernel(
        inputs=inputs, template=template, grid=grid, threadgroup=group,
        output_shapes=[(p.n_tokens, p.h)], output_dtypes=[to_mlx_dtype(p.dtype)], init_value=init_value,
    )
    if not return_info:
        return out
    return out, RunInfo(backend, variant, Path(VARIANTS[variant].file).stem, grid, group, tuple(template))
