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
from typing import Any, Callable

import mlx.core as mx

import msl_host as host
from .dtypes import to_mlx_dtype
from .validate import Problem, validate

SHADERS = Path(__file__).resolve().parents[2] / "shaders"
INPUT_NAMES = ["expert_w", "y_expert", "sh_logit", "y_shared", "residual"]
KERNEL_DTYPES = ("float32", "float16", "bfloat16")
BACKENDS = ("metal", "cuda", "host")


@dataclass(frozen=True)
class Variant:
    """One kernel in shaders/: its source, and whether top_k is fixed when it is compiled (TOP_K > 0)."""

    name: str
    file: str
    summary: str
    unroll_k: bool = False


VARIANTS = {
    v.name: v
    for v in [
        Variant("scalar", "moe_weighted_reduce.metal", "one thread per output element"),
        Variant("vec", "moe_weighted_reduce_vec.metal", "16 bytes per row per thread: 4 (f32) or 8 (f16/bf16) outputs"),
        Variant("vec_k", "moe_weighted_reduce_vec.metal", "vec with top_k fixed at compile time: the k loop unrolls",
                unroll_k=True),
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
    """W: consecutive outputs one thread makes (16 bytes of the activation dtype for the vec variants)."""
    return 1 if VARIANTS[variant].file == VARIANTS["scalar"].file else 16 // to_mlx_dtype(dtype).size


def effective_variant(variant: str, p: Problem) -> str:
    """The variant that runs: the vec ones fall back to 'scalar' when n_tokens*h < 8 (see the vec shader)."""
    kernel_source(variant)  # checks the name
    return "scalar" if outputs_per_thread(variant, p.dtype) > 1 and p.n_tokens * p.h < 8 else variant


def launch_config(variant: str, p: Problem, threads: int = 256) -> tuple[tuple, tuple, list]:
    """Grid and threadgroup in threads (MLX's convention: a 1-D grid of n_tokens * ceil(h / W)
    threads) and the template arguments for one call."""
    w = outputs_per_thread(variant, p.dtype)
    n = p.n_tokens * -(-p.h // w)
    if n >= 2**31:
        raise ValueError(f"n_tokens * h: expected under 2^31 threads ({w} outputs each), got {n}")
    flags = [("HAS_SHARED", p.shared), ("HAS_RESIDUAL", p.residual)]
    if w == 1:
        template = [("T", to_mlx_dtype(p.dtype))] + flags
    else:
        top_k = p.top_k if VARIANTS[variant].unroll_k else 0
        template = [("T", to_mlx_dtype(p.dtype)), ("NV", w // 4), ("TOP_K", top_k)] + flags + [("ALIGNED", p.h % w == 0)]
    return (n, 1, 1), (min(threads, n), 1, 1), template


@functools.cache
def _placeholder(dtype: str) -> mx.array:
    """Stand-in for an input that is absent (no residual, no shared expert): 16 zeros, so MLX passes it
    in the device address space like a real one; the kernel never reads it (its template flag is false)."""
    z = mx.zeros((16,), to_mlx_dtype(dtype))
    mx.eval(z)
    return z


def _as_mx(x) -> mx.array:
    """An MLX array from a NumPy or MLX array."""
    return x if isinstance(x, mx.array) else mx.array(x)


@dataclass(frozen=True)
class _Spec:
    """Shape and dtype of an argument: all validate() looks at."""

    shape: tuple
    dtype: Any


@dataclass(frozen=True)
class Launch:
    """Everything one call needs besides the arrays, worked out once per argument signature."""

    kernel: Callable[..., list]
    y_rows: tuple[int, int]  # y_expert viewed as (n_tokens*top_k, h)
    gate_dtype: str
    dtype: str
    grid: tuple
    group: tuple
    template: list
    out_shape: tuple[int, int]
    info: RunInfo


@functools.lru_cache(maxsize=1024)
def plan(signature: tuple, backend: str, variant: str, threads: int) -> Launch:
    """Validate a call's (shape, dtype) signature and choose kernel, grid and template: once per signature,
    so a model's repeated calls skip straight to the dispatch. Raises before any kernel is built."""
    p = validate(*(None if s is None else _Spec(*s) for s in signature), allowed=KERNEL_DTYPES)
    backend = pick_backend(backend)
    variant = effective_variant(variant, p)
    kernel = build(variant, backend)
    grid, group, template = launch_config(variant, p, threads)
    info = RunInfo(backend, variant, Path(VARIANTS[variant].file).stem, grid, group, tuple(template))
    return Launch(kernel, (p.n_tokens * p.top_k, p.h), p.gate_dtype, p.dtype, grid, group, template,
                  (p.n_tokens, p.h), info)


def _signature(args: tuple) -> tuple:
    """(shape, dtype) of each argument (None stays None); validate() names a non-array argument."""
    try:
        return tuple(None if a is None else (tuple(a.shape), a.dtype) for a in args)
    except AttributeError:
        validate(*args, allowed=KERNEL_DTYPES)
        raise


def _dispatch(run: Launch, args: tuple, init_value: float | None) -> mx.array:
    """One kernel call on MLX arrays, absent inputs replaced by placeholders."""
    w, y, s, ys, r = args
    inputs = [w, y if y.ndim == 2 else y.reshape(run.y_rows),
              _placeholder(run.gate_dtype) if s is None else s,
              _placeholder(run.dtype) if ys is None else ys,
              _placeholder(run.dtype) if r is None else r]
    (out,) = run.kernel(inputs=inputs, template=run.template, grid=run.grid, threadgroup=run.group,
                        output_shapes=[run.out_shape], output_dtypes=[y.dtype], init_value=init_value)
    return out


@functools.cache
def compiled_launch(backend: str, variant: str, threads: int) -> Callable[..., mx.array]:
    """The launch traced by mx.compile: on the first call with a new (shape, dtype) signature the Python
    below runs (validate, plan, kernel call) and raises on bad input before any kernel; later calls with that
    signature replay the recorded kernel call from C++, skipping the Python that would rebuild it."""

    def launch(*args: mx.array | None) -> mx.array:
        """Validate, plan and dispatch (runs at trace time only)."""
        return _dispatch(plan(_signature(args), backend, variant, threads), args, None)

    return mx.compile(launch)


def moe_weighted_reduce(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None, *, backend: str = "auto",
                        variant: str = "scalar", threads: int = 256, init_value: float | None = None,
                        return_info: bool = False):
    """Run the combine kernel: returns out (n_tokens, h) as an mx.array, or (out, RunInfo).
    Arguments are checked before anything runs; `init_value` pre-fills the output (NaN poisons it).
    sh_logit and y_shared may both be None (no gated shared expert). MLX arrays on a GPU backend go through
    compiled_launch; NumPy inputs, init_value, return_info and the host backend take the plain path."""
    args = (expert_w, y_expert, sh_logit, y_shared, residual)
    backend = pick_backend(backend)
    plain = init_value is not None or return_info or backend == "host"
    if not plain and all(a is None or isinstance(a, mx.array) for a in args):
        return compiled_launch(backend, variant, threads)(*args)
    run = plan(_signature(args), backend, variant, threads)
    out = _dispatch(run, tuple(None if a is None else _as_mx(a) for a in args), init_value)
    return (out, run.info) if return_info else out
