"""What issuing one MLX call costs the host. At one token a call's GPU work is a few µs, so a chain of calls runs
as fast as the host can record and hand them over: `calls` chained calls (each output feeding the next), handed to
the device every `group` calls by mx.async_eval, then one sync; wall time per call, over repeated runs. The cases
are our API, empty custom kernels (one input; the combine's five inputs and its output) and built-in ops."""
from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import mlx.core as mx

from . import kernels
from .backends import make_kernel, pick_backend, without_comments
from .dtypes import KERNEL_DTYPES
from .impls import prepare_mlx
from .inputs import CombineArgs, make_inputs
from .validate import Problem, validate

Step = Callable[[mx.array], mx.array]  # one call: the previous output in, this call's output out
ONE_TOKEN_VARIANT = "row"  # what the launch tables run at one token, h 2048, top_k 8
# a body that reads two of its inputs' shapes (so MLX passes them) and does nothing with them
SHAPE_READS = "if (expert_w_shape[0] < 0 && y_expert_shape[1] < 0) {\n}\n"
# the row body's two shape reads (h and n_tokens), which fixed_shapes replaces by numbers
ROW_SHAPE_READS = ("y_expert_shape[1]", "expert_w_shape[0]")


def per_call_us(step: Step, first: mx.array, calls: int = 640, group: int = 64) -> float:
    """Wall µs per call of `calls` chained calls handed over every `group` calls, closed by one sync."""
    out = first
    start = time.perf_counter()
    for j in range(1, calls + 1):
        out = step(out)
        if j % group == 0:
            mx.async_eval(out)
    mx.eval(out)
    mx.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def empty_kernel(inputs: tuple[str, ...], shape: tuple[int, ...], threads: int, backend: str,
                 compiled: bool, body: str = "", template: tuple = ()) -> Callable[..., mx.array]:
    """A custom kernel that does nothing (`body`: empty statements, or reads of its inputs' shapes, at most) over
    these inputs, one output of `shape`, launched with one thread per output in threadgroups of `threads`, with
    `template` arguments it does not use; through mx.compile as our API launches, or plain."""
    kernel = make_kernel(f"empty_{len(body)}_{len(template)}_" + "_".join(inputs), body, inputs, backend)
    n = 1
    for d in shape:
        n *= d
    extra = {"template": list(template)} if template else {}

    def launch(*args: mx.array) -> mx.array:
        """One launch."""
        return kernel(inputs=list(args), grid=(n, 1, 1), threadgroup=(min(threads, n), 1, 1),
                      output_shapes=[shape], output_dtypes=[args[-1].dtype], **extra)[0]

    return mx.compile(launch) if compiled and backend != "host" else launch


def fixed_shapes(source: str, h: int, n_tokens: int) -> str:
    """The row body with h and n_tokens written in as numbers: MLX passes no shapes to a body whose text names
    none (an A/B on what passing them costs our own kernel's call)."""
    for read in ROW_SHAPE_READS:
        if read not in source:
            raise ValueError(f"source: expected the row body's read {read!r}, not found")
    fixed = source.replace(ROW_SHAPE_READS[0], f"{h}u").replace(ROW_SHAPE_READS[1], f"{n_tokens}u")
    if "_shape" in fixed:
        raise ValueError("source: a shape read is left after fixing h and n_tokens")
    return fixed


def row_call(source: str, name: str, p: Problem, config: kernels.LaunchConfig,
             backend: str) -> Callable[..., mx.array]:
    """A text of our row body launched with `config` for problem p, through mx.compile, without the API's Python
    (the choice of variant, the validation): the kernel call alone."""
    kernel = make_kernel(name, source, kernels.INPUT_NAMES, backend)

    def launch(*args: mx.array) -> mx.array:
        """One launch."""
        return kernels.dispatch(kernel, config, p, CombineArgs(*args))

    return mx.compile(launch) if backend != "host" else launch


def cases(a: CombineArgs, backend: str = "auto") -> dict[str, tuple[Step, mx.array]]:
    """Each case's step and first input for one set of combine arguments (MLX arrays): our API
    (moe_weighted_reduce, chained on the residual), its compiled call alone, empty kernels with 1 and with the
    combine's 5 inputs (through mx.compile, as our API; with 5, also with a longer source and with each of our
    call's differences, alone and all together), our row body called directly as it is and with h and n_tokens
    written in (no shapes passed), mx.add and x*w+y."""
    backend = pick_backend(backend)
    h = a.y_expert.shape[-1]
    five_input = functools.partial(empty_kernel, kernels.INPUT_NAMES, (1, h), 256, backend, compiled=True)
    p = validate(*a, allowed=KERNEL_DTYPES)
    launch = kernels.launch_config(ONE_TOKEN_VARIANT, p)
    body_len = len(without_comments(kernels.kernel_source(ONE_TOKEN_VARIANT)))
    # the empty kernel with the combine's 5 inputs; the same with 16 KiB more source (MLX's CUDA kernel hashes its
    # source at every launch, custom_kernel.cpp); and with what our kernel's call has that it lacks, one at a time
    # (an A/B per difference): the two shape parameters it reads, its template arguments, a body as long as the one
    # it runs at one token
    fives = {"": five_input(),
             ", 16 KiB more source": five_input(body=";\n" * 8192),
             ", reads 2 shapes": five_input(body=SHAPE_READS),
             ", our template": five_input(template=tuple(launch.template)),
             ", our body's length": five_input(body=";\n" * (body_len // 2)),
             ", all three": five_input(body=SHAPE_READS + ";\n" * ((body_len - len(SHAPE_READS)) // 2),
                                       template=tuple(launch.template))}
    one = empty_kernel(("x",), (1,), 1, backend, compiled=True)
    # the API's mx.compile'd call without the Python before it (kwargs, the type check, the cache lookup); on the
    # host backend, which has no compiled call, the API itself
    bare = kernels.compiled_launch(backend, "auto", None) or functools.partial(kernels.moe_weighted_reduce,
                                                                             backend=backend)
    # our row body called directly (no API Python, no variant choice), as it is and with the shapes written in
    row = kernels.kernel_source(ONE_TOKEN_VARIANT)
    rows = {"row body, called directly": row_call(row, "row_direct", p, launch, backend),
            "row body, h and n_tokens written in": row_call(fixed_shapes(row, h, p.n_tokens), "row_fixed", p, launch,
                                                            backend)}
    x1 = mx.zeros((1,))
    w = mx.full((1, h), 0.5)
    mx.eval(x1, w)

    def on_residual(fn: Callable[..., mx.array]) -> tuple[Step, mx.array]:
        """fn called on the combine's first four inputs and the previous output as the residual."""
        return (lambda r: fn(*a[:4], r)), a.residual

    return {
        "moe_weighted_reduce": (lambda r: kernels.moe_weighted_reduce(*a[:4], r, backend=backend), a.residual),
        "compiled call, no wrapper": on_residual(bare),
        **{name: on_residual(fn) for name, fn in rows.items()},
        **{f"empty kernel, 5 inputs{what}": on_residual(kernel) for what, kernel in fives.items()},
        "empty kernel, 1 input": (lambda x: one(x), x1),
        "mx.add": (lambda r: mx.add(r, a.y_shared), a.residual),
        "x*w+y": (lambda r: r * w + a.y_shared, a.residual),
    }


def measure(repeats: int = 7, calls: int = 640, group: int = 64, backend: str = "auto") -> dict[str, list[float]]:
    """µs per call of every case at one token (h 2048, top_k 8, float32), `repeats` runs each, the cases
    interleaved so drift hits them alike; one untimed run of each first (compilation, allocation)."""
    found = cases(prepare_mlx(make_inputs(1, 2048, 8), "float32"), backend)
    for step, first in found.values():
        per_call_us(step, first, group, group)
    runs: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(repeats):
        for name, (step, first) in found.items():
            runs[name].append(per_call_us(step, first, calls, group))
    return runs


def summary(runs: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median, min and max µs per call of each case."""
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in runs.items()}
