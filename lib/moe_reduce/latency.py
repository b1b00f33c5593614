"""How long one load waits for memory, measured by pointer chasing (shaders/chase.metal): one thread follows a
random cycle through an array, so each load starts only when the one before returns. Each launch starts where the
last ended, so after the L2 is flushed a load reads its line for the first time until the loads made outnumber the
cycle's lines (`timed_loads` says which timed loads those are); lesson 05 part 6 compares the two kinds.
"""
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
REPEATS = 5  # launches per timed set (kernel_us runs as many untimed first)
# Pointer chases published by others, not measured here: label -> (cycles per load, the clock in MHz the source
# gives). te42kyfo/gpu-benches gpu-latency/h100_pcie.txt (an H100 PCIe at 1755 MHz; its last row, 1.5 GB, and the
# plateau its rows hold from 0.4 to 20 MB); caps-tum/mt4g sample_results/"NVIDIA H100 80GB HBM3"/README.md (the
# means of its "main" and "l2" p-chases; 1980 MHz is the clock the card reports, not one read during the run).
PUBLISHED = {"H100 PCIe, gpu-benches, 1.5 GB": (658.4, 1755), "H100 PCIe, gpu-benches, 0.4-20 MB": (265.5, 1755),
             "H100 SXM, mt4g, main memory": (834.476, 1980), "H100 SXM, mt4g, L2": (219.345, 1980)}


@dataclass(frozen=True)
class Latency:
    """One footprint's latency per load in ns, (long - short) / step difference, and the kernel times it came from;
    `ns` means something only where both chains' timed loads are first reads, or both re-reads."""

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


def chase(chain: mx.array, start: mx.array, steps: int, backend: str) -> mx.array:
    """One launch of chase.metal over `chain` from the index in `start`: the index reached after `steps` loads,
    as a 1-element array."""
    kernel = compile_shader("chase.metal", ("next", "start"), backend)
    return kernel(inputs=[chain, start], template=[("STEPS", steps)], grid=(1, 1, 1), threadgroup=(1, 1, 1),
                  output_shapes=[(1,)], output_dtypes=[mx.uint32])[0]


def walk(chain: mx.array, start: mx.array, steps: int, launches: int, backend: str) -> mx.array:
    """`launches` chase launches, each from where the last ended (lazy); the index the last one reached."""
    for _ in range(launches):
        start = chase(chain, start, steps, backend)
    return start


def end_of_chain(chain: np.ndarray, steps: int, start: int = 0) -> int:
    """Where the chain is after `steps` loads from element `start`, followed in NumPy (the check of `chase`)."""
    j = start
    for _ in range(steps):
        j = int(chain[j])
    return j


def kernel_us(chain: mx.array, start: mx.array, steps: int, backend: str, repeats: int) -> tuple[float, mx.array]:
    """Median GPU µs of `repeats` chained chase launches (CUPTI; RuntimeError without it), and where they ended."""
    ended = []

    def run() -> None:
        ended.append(walk(chain, ended[-1] if ended else start, steps, repeats, backend))
        sync_mlx(ended[-1])

    run()  # compile outside the profile
    acts = device_activities(run)
    if acts is None:
        raise RuntimeError("latency needs GPU time (torch with CUDA for CUPTI)")
    times = sorted(us for name, us in acts if "chase" in name)
    return times[len(times) // 2], ended[-1]


def flush_l2(megabytes: int = 256) -> None:
    """Write and free an array larger than any L2 cache, so the chain's own writing (on_device) leaves none of it
    cached."""
    mx.eval(mx.zeros((megabytes << 18,), mx.float32) + 1)
    mx.clear_cache()


def timed_loads(which: int, repeats: int = REPEATS) -> range:
    """Which loads since the flush (counted along the cycle) measure's timed launches of length STEPS[which] make:
    each kernel_us call first runs `repeats` launches untimed, then `repeats` timed."""
    start = sum(2 * repeats * s for s in STEPS[:which]) + repeats * STEPS[which]
    return range(start, start + repeats * STEPS[which])


def measure(backend: str, footprints: tuple[int, ...] = FOOTPRINTS, repeats: int = REPEATS) -> list[Latency]:
    """Latency per load at each footprint: (long - short kernel time) / (long - short steps), with both kernel
    times (see Latency on when `ns` holds)."""
    found = []
    for size in footprints:
        chain = on_device(chase_chain(size))
        flush_l2()
        position = mx.array([0], dtype=mx.uint32)
        short, position = kernel_us(chain, position, STEPS[0], backend, repeats)
        long, position = kernel_us(chain, position, STEPS[1], backend, repeats)
        found.append(Latency(size, (long - short) * 1e3 / (STEPS[1] - STEPS[0]), short, long))
        del chain
        mx.clear_cache()
    return found
