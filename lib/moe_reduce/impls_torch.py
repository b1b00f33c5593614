"""PyTorch's contenders on an NVIDIA GPU (the op eager and through torch.compile), and what the sweep needs
to know of torch: its version, its peak memory, how to free its caches. Loaded through impls.torch_support."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .impls import GATE_DTYPE, Impl
from .inputs import CombineArgs
from .reference_torch import torch_combine


def prepare(args: CombineArgs, dtype: str) -> CombineArgs:
    """Fresh CUDA tensors: activations in `dtype`, gate inputs float32."""
    act, gate = getattr(torch, dtype), getattr(torch, GATE_DTYPE)
    put = lambda a, dt: None if a is None else torch.from_numpy(a).to(device="cuda", dtype=dt)
    return CombineArgs(put(args.expert_w, gate), put(args.y_expert, act), put(args.sh_logit, gate),
                       put(args.y_shared, act), put(args.residual, act))


def sync(outs: list) -> None:
    """Wait for the GPU."""
    torch.cuda.synchronize()


def to_host(out: torch.Tensor) -> Any:
    """A float32 NumPy copy for the check against the oracle."""
    return out.float().cpu().numpy()


def torch_impl(name: str, build: Callable[[str], Callable[..., Any]]) -> Impl:
    """One PyTorch contender on CUDA tensors."""
    return Impl(name, "gpu", "torch-cuda", ("float32", "bfloat16"), "torch", prepare, build, sync, to_host=to_host)


def all_impls() -> list[Impl]:
    """Eager torch_combine and torch.compile(dynamic=False) of it. Static shapes give Inductor's best kernel
    for each size; `release` resets dynamo between sizes so each size compiles afresh, under the recompile
    limit."""
    return [torch_impl("torch", lambda dtype: torch_combine),
            torch_impl("torch_compile", lambda dtype: torch.compile(torch_combine, dynamic=False))]


def release() -> None:
    """Hand cached GPU memory back and forget compiled graphs (called between sizes)."""
    torch.cuda.empty_cache()
    torch.compiler.reset()


def peak_gb() -> float:
    """torch's peak CUDA allocation in GB."""
    return torch.cuda.max_memory_allocated() / 1e9


def device_name() -> str:
    """The name torch gives the GPU."""
    return torch.cuda.get_device_name(0)
