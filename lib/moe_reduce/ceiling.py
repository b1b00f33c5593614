"""What no implementation should beat, measured in the same run as the implementations.

The ceiling is the best rate of several pure-traffic kernels (bytes read + written per second): a copy, a
read-only pass, and `mix`, which reads 10 rows for every row it writes with 16-byte accesses, as the
combine does at top_k = 8. Each is measured in wall time and, where CUPTI is available, in GPU time (the
ceiling for GPU-time rows). An empty kernel is launched the way our kernels are; its GPU time, and
a Triton empty kernel's, are the launch costs the small-call comparison sets aside (empty_gpu_us, which also
times a one-thread kernel that reads its parameters and stores, under each framework)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx
import numpy as np

from .backends import compile_shader
from .gputime import chained_gpu_time, device_activities
from .impls import torch_support, triton_support
from .timing import TimerConfig, rotation, run_calls, sync_mlx, sync_none, time_fn

MIX_ROWS = 10  # rows read per row written by mix.metal: top_k + 2 at top_k = 8


@dataclass(frozen=True)
class Rate:
    """GB/s of one traffic method: from the median wall time per call, and from GPU time (None without CUPTI)."""

    wall_gbps: float
    gpu_gbps: float | None


def gbps(nbytes: int, seconds: float) -> float:
    """Bytes per second in GB/s (10^9)."""
    return nbytes / seconds / 1e9


def rate(call: Callable[[int, Any], Any], sync: Callable[[list], None], traffic: int, cfg: TimerConfig,
         flush: Callable[[list], None] | None = None, gpu: bool = False, chained: bool = True) -> Rate:
    """Wall and (on a GPU) device rate of one method moving `traffic` bytes per call. Calls that do not feed the
    next (chained=False) are each handed to the device, or a lazy one whose output is dropped would never run."""
    group = cfg.graph_calls if chained else 1
    t = time_fn(call, sync, cfg=cfg, max_batch=4, flush=flush, group=group)
    calls = 8
    g = chained_gpu_time(call, calls, calls, sync, flush, group) if gpu else None
    return Rate(gbps(traffic, t.median), None if g is None else gbps(traffic, g.us * 1e-6))


def kernel_methods(backend: str, nbytes: int, cfg: TimerConfig) -> dict[str, Rate]:
    """copy.metal, read.metal and mix.metal on a GPU kernel backend, each over about nbytes of float32."""
    n = nbytes // 4 // 4 * 4
    x = mx.ones((n,), mx.float32)
    rows = mx.ones((MIX_ROWS, 2 * n // (MIX_ROWS + 1) // 4 * 4), mx.float32)
    mx.eval(x, rows)
    copy = compile_shader("copy.metal", ("x",), backend)
    read = compile_shader("read.metal", ("x",), backend)
    mix = compile_shader("mix.metal", ("x",), backend)
    launch = dict(threadgroup=(256, 1, 1), output_dtypes=[mx.float32])
    m = rows.shape[1]
    return {
        "copy.metal": rate(lambda i, prev: copy(inputs=[x if prev is None else prev], grid=(n // 4, 1, 1),
                                                output_shapes=[(n,)], **launch)[0],
                           sync_mlx, 2 * 4 * n, cfg, mx.async_eval, gpu=True),
        "read.metal": rate(lambda i, prev: read(inputs=[x], grid=(n // 4, 1, 1), output_shapes=[(1,)], **launch)[0],
                           sync_mlx, 4 * n, cfg, mx.async_eval, gpu=True, chained=False),
        "mix.metal": rate(lambda i, prev: mix(inputs=[rows], grid=(m // 4, 1, 1), output_shapes=[(m,)],
                                              template=[("R", MIX_ROWS)], **launch)[0],
                          sync_mlx, (MIX_ROWS + 1) * 4 * m, cfg, mx.async_eval, gpu=True, chained=False),
    }


def traffic_ceilings(processor: str, nbytes: int, cfg: TimerConfig, backend: str | None = None) -> dict[str, Rate]:
    """The rate of every traffic method at hand; the best is the ceiling. GPU: our three traffic kernels on the
    kernel backend, MLX `x + 1` and torch `y.copy_(x)` when torch sees the GPU. CPU: MLX `x + 1` and NumPy
    into a preallocated output (MLX's CPU path pays a fresh allocation's page faults per call, which is not
    the memory's limit)."""
    n = nbytes // 4
    gpu = processor == "gpu"
    found = {}
    with mx.stream(mx.Device(mx.gpu if gpu else mx.cpu)):
        x = mx.ones((n,), mx.float32)
        mx.eval(x)
        found["mlx x + 1"] = rate(lambda i, prev: (x if prev is None else prev) + 1, sync_mlx, 2 * nbytes, cfg,
                                  mx.async_eval, gpu=gpu)
        if gpu and backend in ("cuda", "metal"):
            found.update(kernel_methods(backend, nbytes, cfg))
    support = torch_support() if gpu else None
    if support is not None:
        a = support.torch.ones(n, device="cuda")
        b = support.torch.empty_like(a)
        found["torch y.copy_(x)"] = rate(lambda i, prev: b.copy_(a), support.sync, 2 * nbytes, cfg, gpu=True,
                                         chained=False)
        del a, b
    if not gpu:
        a = np.ones(n, np.float32)
        b = np.empty_like(a)
        found["numpy add(x, 1, out=y)"] = rate(lambda i, prev: np.add(a, 1, out=b), sync_none, 2 * nbytes, cfg,
                                               chained=False)
    return found


def best(rates: dict[str, Rate], gpu: bool = False) -> float | None:
    """The ceiling: the best wall rate, or the best GPU-time rate (None where none was measured)."""
    values = [r.gpu_gbps if gpu else r.wall_gbps for r in rates.values()]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def empty_call(backend: str, compiled: bool = True, shader: str = "empty.metal") -> Callable[[int, Any], mx.array]:
    """A chained call of a one-thread kernel in shaders/ (empty.metal; store.metal reads its parameters and
    stores): through mx.compile as kernels.moe_weighted_reduce launches it on a GPU backend (compiled=False, or
    the host backend: the plain kernel call)."""
    kernel = compile_shader(shader, ("x",), backend)
    x = mx.zeros((1,), mx.float32)
    mx.eval(x)

    def launch(a: mx.array) -> mx.array:
        """One launch on a."""
        return kernel(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
                      output_dtypes=[mx.float32])[0]

    fn = mx.compile(launch) if compiled and backend != "host" else launch

    def call(i: int, prev: mx.array | None) -> mx.array:
        """One launch, fed by the previous one."""
        return fn(x if prev is None else prev)

    return call


def empty_kernel_us(backend: str, cfg: TimerConfig, compiled: bool = True) -> float:
    """Per-call wall µs of empty_call, chained and flushed like the kernels (on the host backend, that path's
    per-call overhead)."""
    return time_fn(empty_call(backend, compiled), sync_mlx, cfg=cfg, flush=mx.async_eval,
                   group=cfg.graph_calls).median * 1e6


def mlx_one_thread_gpu_us(backend: str, shader: str, calls: int, repeats: int) -> float:
    """Median GPU time (CUPTI) in µs of empty_call's kernel, handed over `calls` at a time."""
    call = empty_call(backend, shader=shader)
    run_calls(call, calls, rotation(1), sync_mlx, mx.async_eval, calls)  # compile outside the profile
    acts = device_activities(lambda: run_calls(call, calls * repeats, rotation(1), sync_mlx, mx.async_eval, calls))
    return statistics.median(us for name, us in acts if Path(shader).stem in name)


def triton_one_program_gpu_us(launch: Callable[[], Any], name: str, calls: int, repeats: int) -> float:
    """Median GPU time (CUPTI) in µs of a one-program Triton kernel whose name starts with `name`."""
    sync = triton_support().torch.cuda.synchronize
    launch(), sync()
    acts = device_activities(lambda: ([launch() for _ in range(calls * repeats)], sync()))
    return statistics.median(us for kernel, us in acts if kernel.startswith(name))


def empty_gpu_us(backend: str | None, calls: int = 64, repeats: int = 3) -> dict[str, float | None]:
    """Median GPU time (CUPTI) in µs of one-thread kernels under each framework, the launch costs the small-call
    comparison sets aside: "mlx", shaders/empty.metal handed over `calls` at a time (it reads no parameter);
    "mlx_store", shaders/store.metal the same way (it reads its parameters and stores one number); "triton" and
    "triton_store", impls_triton's empty_kernel and store_kernel on one program. The MLX entries are None without
    CUPTI or a GPU backend, the Triton entries without Triton (whatever the backend)."""
    found: dict[str, float | None] = dict.fromkeys(("mlx", "mlx_store", "triton", "triton_store"))
    if backend not in (None, "host") and torch_support() is not None:
        found["mlx"] = mlx_one_thread_gpu_us(backend, "empty.metal", calls, repeats)
        found["mlx_store"] = mlx_one_thread_gpu_us(backend, "store.metal", calls, repeats)
    support = triton_support()
    if support is not None:
        found["triton"] = triton_one_program_gpu_us(support.empty_launch(), "empty_kernel", calls, repeats)
        found["triton_store"] = triton_one_program_gpu_us(support.store_launch(), "store_kernel", calls, repeats)
    return found


def floor_label(backend: str | None) -> str:
    """What the empty-kernel number means on a backend."""
    if backend is None:
        return "unavailable (no kernel backend)"
    if backend == "host":
        return "host path per-call overhead (CPU, not a GPU launch)"
    return f"empty kernel, 1 thread, compiled launch ({backend})"
