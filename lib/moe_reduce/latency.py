"""How long one load waits for memory, measured by pointer chasing (shaders/chase.metal): one thread follows a
random cycle through an array, so each load starts only when the one before returns. Over a few footprints the
latency steps from the L2 to DRAM; lesson 05 uses it in Little's law (bytes in flight = bandwidth × latency)."""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .backends import compile_shader
from .gputime import device_activities
from .timing import sync_mlx

LINE = 128  # bytes between the elements a chain visits: one load per cache line
FOOTPRINTS = (1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30)  # bytes the chain spreads over
STEPS = (2048, 8192)  # two chain lengths: the time difference over the step difference is one load's latency


@dataclass(frozen=True)
class Latency:
    """One footprint's latency per load in ns, and the kernel times it came from."""

    footprint: int
    ns: float
    short_us: float
    long_us: float


def chase_chain(footprint: int, seed: int = 0) -> np.ndarray:
    """A uint32 array of footprint bytes whose elements at multiples of LINE bytes form one random cycle
    (next[a] = b); the other elements are never read."""
    stride = LINE // 4
    n = footprint // 4
    slots = n // stride
    if slots < 2:
        raise ValueError(f"footprint: expected at least {2 * LINE} bytes, got {footprint}")
    order = np.random.default_rng(seed).permutation(slots).astype(np.uint32) * stride
    chain = np.zeros(n, np.uint32)
    chain[order] = np.roll(order, -1)
    return chain


def on_device(chain: np.ndarray) -> mx.array:
    """The chain in memory the GPU allocated (a kernel's output), not the managed memory MLX gives arrays made on
    the host."""
    a = mx.array(chain) + mx.array(0, dtype=mx.uint32)
    mx.eval(a)
    return a


def chase(chain: mx.array, steps: int, backend: str) -> mx.array:
    """One launch of chase.metal over `chain`: the index reached after `steps` loads, as a 1-element array."""
    kernel = compile_shader("chase.metal", ("next",), backend)
    return kernel(inputs=[chain], template=[("STEPS", steps)], grid=(1, 1, 1), threadgroup=(1, 1, 1),
                  output_shapes=[(1,)], output_dtypes=[mx.uint32])[0]


def end_of_chain(chain: np.ndarray, steps: int) -> int:
    """Where the chain is after `steps` loads from element 0, followed in NumPy (the check of `chase`)."""
    j = 0
    for _ in range(steps):
        j = int(chain[j])
    return j


def kernel_us(chain: mx.array, steps: int, backend: str, repeats: int) -> float:
    """Median GPU µs of `repeats` chase launches (CUPTI; RuntimeError without it)."""
    def run() -> None:
        outs = [chase(chain, steps, backend) for _ in range(repeats)]
        sync_mlx(outs)

    run()  # compile and warm the TLB outside the profile
    acts = device_activities(run)
    if acts is None:
        raise RuntimeError("latency needs GPU time (torch with CUDA for CUPTI)")
    times = sorted(us for name, us in acts if "chase" in name)
    return times[len(times) // 2]


def measure(backend: str, footprints: tuple[int, ...] = FOOTPRINTS, repeats: int = 5) -> list[Latency]:
    """Latency per load at each footprint: (long - short kernel time) / (long - short steps)."""
    found = []
    for size in footprints:
        chain = on_device(chase_chain(size))
        short, long = (kernel_us(chain, s, backend, repeats) for s in STEPS)
        found.append(Latency(size, (long - short) * 1e3 / (STEPS[1] - STEPS[0]), short, long))
        del chain
        mx.clear_cache()
    return found
