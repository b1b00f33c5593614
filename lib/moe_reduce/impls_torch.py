"""PyTorch's contenders on an NVIDIA GPU (the op eager and through torch.compile), and what the sweep needs
to know of torch: its version, its peak memory, how to free its caches. Loaded through impls.torch_support."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from .contender import GRAPH_MAX_OUTPUTS, Impl
from .inputs import CombineArgs, cast_args
from .dtypes import KERNEL_DTYPES
from .ops import EPS, GATE_DTYPE
from .reference_torch import torch_combine, torch_combine_rmsnorm
from .timing import chained

GRAPH_CALLS = 64  # at least this many chained calls in one captured graph


def prepare(args: Any, dtype: str) -> Any:
    """Fresh CUDA tensors of the same named tuple: activations in `dtype`, gate inputs float32."""
    return cast_args(args, lambda a, dt: torch.from_numpy(a).to(device="cuda", dtype=getattr(torch, dt)), dtype,
                     GATE_DTYPE)


def sync(outs: list) -> None:
    """Wait for the GPU."""
    torch.cuda.synchronize()


def to_host(out: torch.Tensor | tuple) -> Any:
    """Float32 NumPy copies (of each output) for the check against the oracle."""
    if isinstance(out, tuple):
        return tuple(to_host(o) for o in out)
    return out.float().cpu().numpy()


def torch_impl(name: str, build: Callable[[str], Callable[..., Any]], op: str = "combine",
               backend: str = "torch-cuda", **options: Any) -> Impl:
    """One contender on CUDA tensors (PyTorch's, or with backend="triton-cuda" a Triton one); `options` are
    further Impl fields (max_outputs, graphed)."""
    return Impl(name, "gpu", backend, KERNEL_DTYPES, "torch", prepare, build, sync, to_host=to_host,
                op=op, **options)


@functools.cache
def compiled(dtype: str) -> Callable[..., Any]:
    """torch.compile of torch_combine with static shapes (Inductor's best kernel for each size); one object per
    dtype, shared by the per-call and the graphed contender."""
    return torch.compile(torch_combine, dynamic=False)


def two_step(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The combine with the residual, then the RMSNorm, as PyTorch ops."""
    return torch_combine_rmsnorm(*args, EPS)


def all_impls() -> list[Impl]:
    """Eager torch_combine; torch.compile(dynamic=False) of it, launched per call and captured in CUDA graphs
    as a serving engine runs its decode steps. `release` resets dynamo between sizes so each size compiles
    afresh, under the recompile limit."""
    return [torch_impl("torch", lambda dtype: torch_combine), torch_impl("torch_compile", compiled),
            torch_impl("torch_compile_graph", compiled, max_outputs=GRAPH_MAX_OUTPUTS, graphed=True),
            torch_impl("torch_compile_two_step", lambda dtype: torch.compile(two_step, dynamic=False), "fused")]


def graph_call(fn: Callable[..., Any], sets: list[CombineArgs],
               min_calls: int = GRAPH_CALLS) -> tuple[Callable[[int, Any], Any], int]:
    """fn captured into one CUDA graph as a chain of calls over the input sets (each call fed by the previous
    one, as in timing.chained), repeated until the chain has at least min_calls calls; returns a timer call
    that replays the graph, and the number of op calls in one replay."""
    step, _ = chained(fn, sets)
    calls = len(sets) * -(-min_calls // len(sets))

    def chain() -> torch.Tensor:
        """The chained calls, in order."""
        out = None
        for j in range(calls):
            out = step(j % len(sets), out)
        return out

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        chain()  # warm up (compilation, autotuning, allocator) outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = chain()

    def replay(i: int, prev: Any) -> torch.Tensor:
        """One replay of the whole chain."""
        graph.replay()
        return out

    return replay, calls


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
