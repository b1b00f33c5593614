"""What no implementation can beat, measured in the same run as the implementations: the copy ceiling
(GB/s of the best plain copy) and the empty-kernel floor (µs of a kernel that does nothing)."""
from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx
import numpy as np

from .impls import torch_support
from .backends import compile_shader
from .timing import TimerConfig, sync_mlx, sync_none, time_fn


def gbps(nbytes: int, seconds: float) -> float:
    """Bytes per second in GB/s (10^9)."""
    return nbytes / seconds / 1e9


def copy_ceilings(processor: str, nbytes: int, cfg: TimerConfig, backend: str | None = None) -> dict[str, float]:
    """GB/s of copying nbytes of float32, read + written, by every method at hand; the best is the ceiling.
    GPU: shaders/copy.metal (16 bytes a thread) on the kernel backend, MLX `x + 1`, and torch `y.copy_(x)`
    when torch sees the GPU. CPU: MLX `x + 1` and NumPy into a preallocated output (MLX's CPU path pays a
    fresh allocation's page faults per call, which is not the memory's limit)."""
    n = nbytes // 4
    found = {}

    def rate(call: Callable[[int, Any], Any], sync: Callable[[list], None], max_batch: int | None = 4,
             flush: Callable[[list], None] | None = None) -> float:
        """GB/s of one copy method: 2 * nbytes over its median time per call."""
        t = time_fn(call, sync, cfg=cfg, max_batch=max_batch, flush=flush, group=cfg.graph_calls)
        return gbps(2 * nbytes, t.median)

    with mx.stream(mx.Device(mx.gpu if processor == "gpu" else mx.cpu)):
        x = mx.ones((n,), mx.float32)
        mx.eval(x)
        found["mlx x + 1"] = rate(lambda i, prev: (x if prev is None else prev) + 1, sync_mlx, flush=mx.async_eval)
        if processor == "gpu" and backend in ("cuda", "metal"):
            copy = compile_shader("copy.metal", ("x",), backend)
            found["copy.metal kernel"] = rate(lambda i, prev: copy(
                inputs=[x if prev is None else prev], grid=(n // 4, 1, 1), threadgroup=(256, 1, 1),
                output_shapes=[(n,)], output_dtypes=[mx.float32])[0], sync_mlx, flush=mx.async_eval)
    support = torch_support() if processor == "gpu" else None
    if support is not None:
        torch = support.torch
        a = torch.ones(n, device="cuda")
        b = torch.empty_like(a)
        found["torch y.copy_(x)"] = rate(lambda i, prev: b.copy_(a), support.sync)
        del a, b
    if processor == "cpu":
        a = np.ones(n, np.float32)
        b = np.empty_like(a)
        found["numpy add(x, 1, out=y)"] = rate(lambda i, prev: np.add(a, 1, out=b), sync_none, max_batch=None)
    return found


def empty_kernel_us(backend: str, cfg: TimerConfig, compiled: bool = True) -> float:
    """Per-call µs of shaders/empty.metal launched with one thread, chained and flushed like the kernels and,
    on a GPU backend, through mx.compile as kernels.moe_weighted_reduce launches them (compiled=False: the
    plain kernel call); on the host backend, that path's per-call overhead."""
    kernel = compile_shader("empty.metal", ("x",), backend)
    x = mx.zeros((1,), mx.float32)
    mx.eval(x)

    def launch(a: mx.array) -> mx.array:
        """One empty launch on a."""
        return kernel(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
                      output_dtypes=[mx.float32])[0]

    fn = mx.compile(launch) if compiled and backend != "host" else launch

    def call(i: int, prev: mx.array | None) -> mx.array:
        """One launch, fed by the previous one."""
        return fn(x if prev is None else prev)

    return time_fn(call, sync_mlx, cfg=cfg, flush=mx.async_eval, group=cfg.graph_calls).median * 1e6


def floor_label(backend: str | None) -> str:
    """What the empty-kernel number means on a backend."""
    if backend is None:
        return "unavailable (no kernel backend)"
    if backend == "host":
        return "host path per-call overhead (CPU, not a GPU launch)"
    return f"empty kernel, 1 thread, compiled launch ({backend})"
