"""The registry of contenders: every way to run an op that the sweep times, with how each gets its inputs, runs,
synchronises and hands its output back for checking. PyTorch's are in impls_torch and Triton's in impls_triton,
imported here only inside torch_support and triton_support (where torch imports and sees a GPU); they import
contender, never this module."""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Callable

import mlx.core as mx

from . import kernels
from .arrays import out_of_small_pool
from .backends import pick_backend
from .contender import HOST_MAX_OUTPUTS, Impl
from .dtypes import KERNEL_DTYPES
from .ops import EPS, GATE_DTYPE
from .reference import mlx_combine, mlx_combine_compiled, reference_kernel_order
from .timing import sync_mlx, sync_none

def mlx_processor() -> str:
    """'gpu' when MLX's default device is a GPU (Metal or CUDA), else 'cpu'."""
    return "gpu" if mx.default_device().type == mx.gpu else "cpu"


def prepare_mlx(args: Any, dtype: str) -> Any:
    """Fresh MLX arrays (mx.array copies the NumPy data), evaluated; a gate logit of 8 bytes or less (1 or 2
    tokens) as a view into a larger array (arrays.out_of_small_pool), so that the small calls time the kernels,
    not MLX's small-array pool (lesson 05 measures the pool)."""
    out = args.mlx(dtype, GATE_DTYPE)
    mx.eval([a for a in out if a is not None])
    if getattr(out, "sh_logit", None) is not None:
        out = out._replace(sh_logit=out_of_small_pool(out.sh_logit))
    return out


def prepare_numpy(args: Any, dtype: str) -> Any:
    """Fresh float32 NumPy copies."""
    return type(args)(*(None if a is None else a.copy() for a in args))


def numpy_impl() -> Impl:
    """float32 NumPy in the kernel's summation order, on the CPU."""
    return Impl("numpy", "cpu", "numpy", ("float32",), "numpy", prepare_numpy,
                lambda dtype: reference_kernel_order, sync_none)


def mlx_impl(compiled: bool) -> Impl:
    """The op as MLX array operations, eager or through mx.compile, on MLX's default device; called as a user
    calls them, with no per-call argument check (the check against the oracle comes before timing)."""
    proc = mlx_processor()
    fn = mlx_combine_compiled if compiled else mlx_combine
    return Impl("mlx_compile" if compiled else "mlx", proc, f"mlx-{proc}", KERNEL_DTYPES, "mlx",
                prepare_mlx, lambda dtype: fn, sync_mlx, mx.async_eval)


def placement(backend: str) -> tuple[str, int | None]:
    """(processor, max_outputs) of our kernels on a backend: the host path runs on the CPU, at tiny sizes only."""
    return ("cpu", HOST_MAX_OUTPUTS) if backend == "host" else ("gpu", None)


def kernel_impl(variant: str, backend: str) -> Impl:
    """kernels.moe_weighted_reduce with one variant ("auto": as launched by default) on one backend ('host' only
    at tiny sizes)."""

    def build(dtype: str) -> Callable[..., Any]:
        """The kernel call with backend and variant fixed."""
        return lambda *a: kernels.moe_weighted_reduce(*a, backend=backend, variant=variant)

    proc, limit = placement(backend)
    return Impl(f"kernel_{variant}", proc, backend, KERNEL_DTYPES, "mlx", prepare_mlx, build, sync_mlx,
                mx.async_eval, max_outputs=limit)


def fused_impls(backend: str) -> list[Impl]:
    """The combine + RMSNorm (lesson 04): our fused kernel, and our combine followed by mx.fast.rms_norm."""
    proc, limit = placement(backend)
    fused = lambda dtype: lambda *a: kernels.moe_combine_rmsnorm(*a, EPS, backend=backend)
    two_step = lambda dtype: lambda *a: kernels.combine_then_rmsnorm(*a, EPS, backend=backend)
    return [Impl(name, proc, backend, KERNEL_DTYPES, "mlx", prepare_mlx, build, sync_mlx, mx.async_eval,
                 max_outputs=limit, op="fused") for name, build in (("kernel_fused", fused), ("kernel_two_step", two_step))]


def kernel_backend() -> str | None:
    """The best backend the kernels run on here, or None when there is none."""
    try:
        return pick_backend()
    except RuntimeError:
        return None


@functools.cache
def torch_support() -> ModuleType | None:
    """The module impls_torch when PyTorch imports and sees a CUDA GPU, else None."""
    try:
        from . import impls_torch
    except ImportError:
        return None
    return impls_torch if impls_torch.torch.cuda.is_available() else None


@functools.cache
def triton_support() -> ModuleType | None:
    """The module impls_triton when Triton imports beside a CUDA-capable torch, else None."""
    if torch_support() is None:
        return None
    try:
        from . import impls_triton
    except ImportError:
        return None
    return impls_triton


def available_impls(quick: bool, op: str = "combine") -> dict[str, Impl]:
    """Every implementation of an op that runs here; kernels on the slow host path only in quick mode."""
    impls = [numpy_impl(), mlx_impl(False), mlx_impl(True)]
    backend = kernel_backend()
    if backend is not None and (backend != "host" or quick):
        impls += [kernel_impl(v, backend) for v in ("auto", *kernels.VARIANTS)] + fused_impls(backend)
    impls += [i for support in (torch_support(), triton_support()) if support for i in support.all_impls()]
    return {i.name: i for i in impls if i.op == op}
