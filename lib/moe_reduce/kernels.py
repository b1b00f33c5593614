"""The combine kernels in shaders/, launched on whichever backend is present (see backends.py).

Read it top to bottom: the variants, the launch configuration, then the plain call, `moe_weighted_reduce`:
validate → choose the variant and threadgroup size → configure the launch → dispatch. variant="auto" (the
default) takes them from the table measured on the GPU host (launch_table.py). Below the line "Fast path" is
what a model's repeated calls on a GPU go through instead: the same steps traced once per (shape, dtype) by
mx.compile and replayed from C++."""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import mlx.core as mx

from . import launch_table
from .launch_table import DEFAULT_THREADS
from .arrays import as_mlx, to_mlx_dtype
from .backends import compile_shader, device_name, pick_backend, read_source
from .dtypes import ITEMSIZE, KERNEL_DTYPES
from .inputs import CombineArgs
from .validate import Problem, validate, validate_rmsnorm

INPUT_NAMES = CombineArgs._fields  # the kernel's buffers, in the order MLX numbers them


@dataclass(frozen=True)
class Variant:
    """One kernel in shaders/: its source, how many bytes of a row each thread makes (0: one output, whatever
    its size), whether top_k is fixed when it is compiled (the template argument TOP_K), and whether it can
    round as a model's separate ops do (the template argument ROUNDING; see COMBINE_ROUNDINGS)."""

    name: str
    file: str
    summary: str
    row_bytes: int = 0
    unroll_k: bool = False
    per_op: bool = False

    @property
    def vector(self) -> bool:
        """Whether each thread makes a 16-byte vector of outputs (the vec bodies)."""
        return self.row_bytes == 16

    def outputs_per_thread(self, dtype: str) -> int:
        """W: consecutive outputs one thread makes (row_bytes of the activation dtype, else 1)."""
        return max(1, self.row_bytes // ITEMSIZE[dtype])


VARIANTS = {
    v.name: v
    for v in [
        Variant("scalar", "moe_weighted_reduce.metal", "one thread per output element"),
        Variant("scalar_k", "moe_weighted_reduce.metal", "scalar with top_k fixed at compile time: the k loop unrolls",
                unroll_k=True),
        Variant("vec", "moe_weighted_reduce_vec.metal", "16 bytes per row per thread: 4 (f32) or 8 (f16/bf16) outputs",
                row_bytes=16),
        Variant("vec_k", "moe_weighted_reduce_vec.metal", "vec with top_k fixed at compile time: the k loop unrolls",
                row_bytes=16, unroll_k=True),
        Variant("row", "moe_weighted_reduce_row.metal", "4 bytes per row per thread, all loads before any math, top_k fixed",
                row_bytes=4, unroll_k=True, per_op=True),
    ]
}
# Where the combine's sums are rounded to the activation dtype T: "once", at the store (every sum in float32), or
# "per_op", after every operation, as the separate MLX ops of a model round them (mlx-lm's combine: each weighted
# product, the sum over k, the gate, the gated shared term, each add). MLX's sums of half/bfloat add in that type
# on CUDA and Metal (by its reduce sources) and in float32 on the CPU (measured), so per_op also rounds the running
# sum over k on the GPU backends, and the sigmoid's 1 + e and 1 / (1 + e) as their half types do (by source);
# tests/test_rounding.py compares with MLX's ops on every backend present. Only the variants with per_op (and the
# fused kernel) can round per op; "auto" then runs "row".
COMBINE_ROUNDINGS = ("once", "per_op")


class LaunchConfig(NamedTuple):
    """Grid and threadgroup, both counted in threads (MLX's convention), and the template arguments."""

    grid: tuple[int, int, int]
    threadgroup: tuple[int, int, int]
    template: list[tuple[str, Any]]


@dataclass(frozen=True)
class RunInfo:
    """What ran: backend, variant, MLX kernel name, grid and threadgroup (both in threads), template, and what
    chose the variant and threadgroup size."""

    backend: str
    variant: str
    name: str
    grid: tuple[int, int, int]
    threadgroup: tuple[int, int, int]
    template: tuple
    chosen_by: str


def kernel_source(variant: str = "scalar") -> str:
    """The .metal body of a variant, as read from shaders/."""
    return read_source(get_variant(variant).file)


def get_variant(name: str) -> Variant:
    """The variant of that name, or a ValueError naming the choices."""
    if name not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {name!r}")
    return VARIANTS[name]


def choose_variant(name: str, p: Problem) -> Variant:
    """The variant that runs: one that casts rows falls back to the scalar body (with the same TOP_K choice) when
    n_tokens*h < 8 (MLX then passes y_shared in Metal's constant address space, where device-pointer casts do
    not compile), and row falls back to scalar_k when h is not a multiple of its W (its rows would not start
    on a W-element boundary)."""
    v = get_variant(name)
    if (v.row_bytes and p.n_tokens * p.h < 8) or (not v.vector and p.h % v.outputs_per_thread(p.dtype)):
        return VARIANTS["scalar_k" if v.unroll_k else "scalar"]
    return v


def rounding_level(rounding: str, backend: str) -> int:
    """The template argument ROUNDING for a rounding of COMBINE_ROUNDINGS on a backend: 0 rounds once; 1 per op;
    2 per op with the running sum over k and the sigmoid's steps in T too (MLX on the GPU backends)."""
    if rounding not in COMBINE_ROUNDINGS:
        raise ValueError(f"rounding: expected one of {list(COMBINE_ROUNDINGS)}, got {rounding!r}")
    return 0 if rounding == "once" else 1 if backend == "host" else 2


def choose_launch(backend: str, variant: str, threads: int | None, p: Problem,
                  rounding: str = "once") -> tuple[Variant, int, str]:
    """The variant and threadgroup size to run, and why: as asked, or for "auto" from the launch table; a per_op
    rounding runs "row" (for "auto") and needs a variant that has it, with no fallback to another body."""
    if rounding != "once":
        return per_op_variant(variant, p), threads or DEFAULT_THREADS, f"rounding {rounding}: {variant}"
    if variant == "auto":
        c = launch_table.choose(backend, device_name(backend), p.dtype, p.n_tokens, p.h, p.top_k)
        return choose_variant(c.variant, p), threads or c.threads, c.source
    return choose_variant(variant, p), threads or DEFAULT_THREADS, "asked"


def per_op_variant(variant: str, p: Problem) -> Variant:
    """The variant that rounds per op for `variant` ("auto": row), or a ValueError saying what stops it."""
    v = get_variant("row" if variant == "auto" else variant)
    if not v.per_op:
        raise ValueError(f"variant: rounding 'per_op' needs one of "
                         f"{['auto'] + [n for n, u in VARIANTS.items() if u.per_op]}, got {variant!r}")
    if choose_variant(v.name, p) is not v:
        w = v.outputs_per_thread(p.dtype)
        raise ValueError(f"h: rounding 'per_op' runs the {v.name} body, which needs h a multiple of {w} and "
                         f"n_tokens * h >= 8, got h={p.h}, n_tokens={p.n_tokens}")
    return v


def launch_config(variant: str, p: Problem, threads: int = DEFAULT_THREADS, rounding: int = 0) -> LaunchConfig:
    """A 1-D grid of n_tokens * ceil(h / W) threads in threadgroups of `threads`, and the template: the
    activation dtype T, TOP_K (0 = read at run time), which optional terms exist, for the vector body NV
    (4-wide vectors per row) and ALIGNED (h a multiple of W), for the row body W, and for a body that can round
    per op ROUNDING (rounding_level's value)."""
    v = get_variant(variant)
    w = v.outputs_per_thread(p.dtype)
    n = p.n_tokens * -(-p.h // w)
    if n >= 2**31:
        raise ValueError(f"n_tokens * h: expected under 2^31 threads ({w} outputs each), got {n}")
    template = [("T", to_mlx_dtype(p.dtype))] + ([("NV", w // 4)] if v.vector else [("W", w)] if v.row_bytes else [])
    template += [("TOP_K", p.top_k if v.unroll_k else 0), ("HAS_SHARED", p.shared), ("HAS_RESIDUAL", p.residual)]
    if v.vector:
        template += [("ALIGNED", p.h % w == 0)]
    if v.per_op:
        template += [("ROUNDING", rounding)]
    elif rounding:
        raise ValueError(f"rounding: the {v.name} body rounds once only, got ROUNDING={rounding}")
    return LaunchConfig((n, 1, 1), (min(threads, n), 1, 1), template)


def build(variant: str, backend: str) -> Callable[..., list]:
    """The MLX kernel object of a variant on a backend; built once per process."""
    return compile_shader(get_variant(variant).file, INPUT_NAMES, backend)


@functools.cache
def placeholder(dtype: str) -> mx.array:
    """Stand-in for an absent input (no residual, no shared expert): 16 zeros, so MLX passes it in the device
    address space like a real one; the kernel never reads it (its template flag is false)."""
    z = mx.zeros((16,), to_mlx_dtype(dtype))
    mx.eval(z)
    return z


def kernel_inputs(p: Problem, args: CombineArgs) -> list[mx.array]:
    """The combine's arguments as a kernel takes them: MLX arrays, y_expert viewed as (n_tokens*top_k, h), absent
    inputs replaced by placeholders."""
    w, y, s, ys, r = (as_mlx(a) for a in args)
    rows = (p.n_tokens * p.top_k, p.h)
    return [w, y if y.shape == rows else y.reshape(rows),
            placeholder(p.gate_dtype) if s is None else s,
            placeholder(p.dtype) if ys is None else ys,
            placeholder(p.dtype) if r is None else r]


def dispatch(kernel: Callable[..., list], config: LaunchConfig, p: Problem, args: CombineArgs,
             init_value: float | None = None) -> mx.array:
    """One kernel call (inputs as kernel_inputs makes them); returns out (n_tokens, h) in the activation dtype."""
    inputs = kernel_inputs(p, args)
    (out,) = kernel(inputs=inputs, template=config.template, grid=config.grid, threadgroup=config.threadgroup,
                    output_shapes=[(p.n_tokens, p.h)], output_dtypes=[inputs[1].dtype], init_value=init_value)
    return out


def moe_weighted_reduce(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None, *, backend: str = "auto",
                        variant: str = "auto", threads: int | None = None, rounding: str = "once",
                        init_value: float | None = None, return_info: bool = False):
    """Run the combine kernel: returns out (n_tokens, h) as an mx.array, or (out, RunInfo).
    Arguments are checked before anything runs; `init_value` pre-fills the output (NaN poisons it).
    sh_logit and y_shared may both be None (no gated shared expert). variant: "auto" (from the launch table) or
    a name in VARIANTS; threads: threadgroup size (None: the table's, or 256 for a named variant); rounding: one
    of COMBINE_ROUNDINGS. MLX arrays on a GPU backend take the fast path below; NumPy inputs, init_value,
    return_info and the host backend take this plain one."""
    if init_value is None and not return_info and all_mlx(expert_w, y_expert, sh_logit, y_shared, residual):
        fast = compiled_launch(backend, variant, threads, rounding)
        if fast is not None:
            return fast(expert_w, y_expert, sh_logit, y_shared, residual)
    backend = pick_backend(backend)
    level = rounding_level(rounding, backend)
    args = CombineArgs(expert_w, y_expert, sh_logit, y_shared, residual)
    p = validate(*args, allowed=KERNEL_DTYPES)
    v, n_threads, chosen_by = choose_launch(backend, variant, threads, p, rounding)
    config = launch_config(v.name, p, n_threads, level)
    out = dispatch(build(v.name, backend), config, p, args, init_value)
    if not return_info:
        return out
    return out, RunInfo(backend, v.name, Path(v.file).stem, config.grid, config.threadgroup, tuple(config.template),
                        chosen_by)


# ---------------------------------------------------------------- Fast path


def all_mlx(*args: object) -> bool:
    """Every given argument is an mx.array or None (what mx.compile can trace). On our 2-core CPU this loop takes
    0.20 µs for five arguments, frozenset.issuperset(map(type, args)) 0.29 µs: every call of the API pays it."""
    for a in args:
        if type(a) is not mx.array and a is not None:
            return False
    return True


@functools.cache
def compiled_launch(backend: str, variant: str, threads: int | None,
                    rounding: str = "once") -> Callable[..., mx.array] | None:
    """The plain call's steps traced by mx.compile, for a GPU backend (None for the host backend): on the first
    call with a new (shape, dtype) signature the Python below runs (validate, choose, configure, dispatch) and
    raises on bad input before any kernel; later calls with that signature replay the recorded kernel call
    from C++, skipping the Python that would rebuild it (notebook 03 measures what that saves)."""
    backend = pick_backend(backend)
    rounding_level(rounding, backend)  # a bad rounding fails here, before anything is traced
    if backend == "host":
        return None

    def launch(*args: mx.array | None) -> mx.array:
        """combine_call (runs at trace time only)."""
        return combine_call(backend, variant, threads, CombineArgs(*args), rounding)

    return mx.compile(launch)


def combine_call(backend: str, variant: str, threads: int | None, args: CombineArgs,
                 rounding: str = "once") -> mx.array:
    """Validate, choose the launch, configure and dispatch the combine: the Python a compiled call traces."""
    p = validate(*args, allowed=KERNEL_DTYPES)
    v, n_threads, _ = choose_launch(backend, variant, threads, p, rounding)
    return dispatch(build(v.name, backend), launch_config(v.name, p, n_threads, rounding_level(rounding, backend)),
                    p, args)


# ---------------------------------------------------------------- The combine fused with the next RMSNorm (lesson 04)

FUSED_FILE = "moe_combine_rmsnorm.metal"
FUSED_INPUTS = INPUT_NAMES + ("weight",)
FUSED_OUTPUTS = ("hidden", "normed")
# Where normed is rounded to the activation dtype: "once", after the weight multiply (Hugging Face's Qwen3-Next
# order), or "before_weight": hidden * rsqrt(...) rounded first, then times the weight and rounded again, the
# order of mx.fast.rms_norm and of Hugging Face's Llama/Qwen2 RMSNorm. The two agree in float32.
NORM_ROUNDINGS = ("once", "before_weight")


def mlx_cuda_sum(norm_rounding: str, backend: str) -> bool:
    """Whether the fused norm adds up its squares in the order of MLX's CUDA RMSNorm (its threads per row and its
    block reduce): when it rounds as mx.fast.rms_norm does, on the cuda backend."""
    return norm_rounding == "before_weight" and backend == "cuda"


def mlx_cuda_norm_threads(p: Problem) -> int:
    """Threads per row of MLX's CUDA RMSNorm at this width and dtype (the dispatch in mlx/backend/cuda/rms_norm.cu,
    read from MLX's source): 16-byte accesses, 64 threads up to 64 of them, 128 or 64 to cover the row in at most
    8 accesses each, 1024 beyond."""
    per_access = 16 // ITEMSIZE[p.dtype]
    accesses = -(-p.h // per_access)
    if p.h > per_access * 1024:
        return 1024
    if p.h <= per_access * 64 or (accesses % 128 and accesses % 64 == 0 and accesses // 64 <= 8):
        return 64
    return 128


def fused_config(p: Problem, eps: float, threads: int | None = None, norm_rounding: str = "once",
                 rounding: int = 0, mlx_sum: bool = False) -> LaunchConfig:
    """One threadgroup per token, of `threads` threads (default: enough 32-thread SIMD groups to cover the row in
    16-byte accesses, at most 1024; with mlx_sum, MLX's CUDA RMSNorm's), each thread striding along the row ITERS
    times; the template carries W (elements per access: 16 bytes' worth when h allows, else 1), TOP_K,
    HAS_SHARED, ITERS, eps's bits, ROUND_BEFORE_WEIGHT (norm_rounding, one of NORM_ROUNDINGS), ROUNDING
    (rounding_level's value) and MLX_CUDA_SUM (mlx_sum: the sum of squares in MLX's CUDA order)."""
    if norm_rounding not in NORM_ROUNDINGS:
        raise ValueError(f"norm_rounding: expected one of {list(NORM_ROUNDINGS)}, got {norm_rounding!r}")
    vec = VARIANTS["vec"].outputs_per_thread(p.dtype)
    w = vec if p.h % vec == 0 else 1
    groups = -(-p.h // w)
    threads = threads or (mlx_cuda_norm_threads(p) if mlx_sum else min(1024, 32 * -(-groups // 32)))
    if threads % 32 or not 32 <= threads <= 1024:
        raise ValueError(f"threads: expected a multiple of 32 from 32 to 1024, got {threads}")
    eps_bits = struct.unpack("<i", struct.pack("<f", eps))[0]
    template = [("T", to_mlx_dtype(p.dtype)), ("W", w), ("TOP_K", p.top_k), ("HAS_SHARED", p.shared),
                ("ITERS", -(-groups // threads)), ("EPS_BITS", eps_bits),
                ("ROUND_BEFORE_WEIGHT", norm_rounding == "before_weight"), ("ROUNDING", rounding),
                ("MLX_CUDA_SUM", mlx_sum)]
    return LaunchConfig((p.n_tokens * threads, 1, 1), (threads, 1, 1), template)


def fused_call(backend: str, args: CombineArgs, weight, eps: float, threads: int | None, norm_rounding: str,
               rounding: str = "once", init_value: float | None = None) -> tuple[mx.array, mx.array, LaunchConfig]:
    """Validate, configure and dispatch the fused kernel: (hidden, normed, config)."""
    p = validate_rmsnorm(*args, weight, eps, allowed=KERNEL_DTYPES)
    config = fused_config(p, eps, threads, norm_rounding, rounding_level(rounding, backend),
                          mlx_cuda_sum(norm_rounding, backend))
    hidden, normed = fused_dispatch(build_fused(backend), config, p, args, weight, init_value)
    return hidden, normed, config


def build_fused(backend: str) -> Callable[..., list]:
    """The MLX kernel object of the fused body on a backend; built once per process."""
    return compile_shader(FUSED_FILE, FUSED_INPUTS, backend, FUSED_OUTPUTS)


def fused_dispatch(kernel: Callable[..., list], config: LaunchConfig, p: Problem, args: CombineArgs, weight,
                   init_value: float | None = None) -> tuple[mx.array, mx.array]:
    """One call of a fused kernel object (the combine's inputs as kernel_inputs makes them, then weight):
    (hidden, normed), each (n_tokens, h) in the activation dtype."""
    inputs = kernel_inputs(p, args) + [as_mlx(weight)]
    hidden, normed = kernel(inputs=inputs, template=config.template, grid=config.grid, threadgroup=config.threadgroup,
                            output_shapes=[(p.n_tokens, p.h)] * 2, output_dtypes=[inputs[1].dtype] * 2,
                            init_value=init_value)
    return hidden, normed


def moe_combine_rmsnorm(expert_w, y_expert, sh_logit, y_shared, residual, weight, eps: float = 1e-6, *,
                        backend: str = "auto", threads: int | None = None, norm_rounding: str = "once",
                        rounding: str = "once", init_value: float | None = None, return_info: bool = False):
    """The combine and the RMSNorm after it in one kernel: returns (hidden, normed), or (hidden, normed, RunInfo).
    hidden = the combine with the residual (required); normed = hidden / sqrt(mean(hidden^2) + eps) * weight,
    weight of shape (h,) in the activations' dtype. Models whose norm scales by 1 + weight (Qwen3-Next) pass
    1 + weight. norm_rounding: "once" (normed rounded after the weight multiply) or "before_weight" (as
    mx.fast.rms_norm rounds; see NORM_ROUNDINGS); rounding: the combine's, one of COMBINE_ROUNDINGS (per_op also
    rounds the combine before the residual add). Checked before anything runs; MLX arrays on a GPU backend take
    an mx.compile fast path."""
    args = CombineArgs(expert_w, y_expert, sh_logit, y_shared, residual)
    if init_value is None and not return_info:
        fast = compiled_fused(backend, threads, eps, norm_rounding, rounding)
        if fast is not None and all_mlx(*args, weight):
            return fast(*args, weight)
    backend = pick_backend(backend)
    hidden, normed, config = fused_call(backend, args, weight, eps, threads, norm_rounding, rounding, init_value)
    if not return_info:
        return hidden, normed
    return hidden, normed, RunInfo(backend, "fused", Path(FUSED_FILE).stem, config.grid, config.threadgroup,
                                   tuple(config.template), "asked" if threads
                                   else "rule: MLX's CUDA RMSNorm's" if dict(config.template)["MLX_CUDA_SUM"]
                                   else "rule: threads cover the row")


@functools.cache
def compiled_fused(backend: str, threads: int | None, eps: Any, norm_rounding: str,
                   rounding: str = "once") -> Callable[..., tuple[mx.array, mx.array]] | None:
    """fused_call traced by mx.compile for a GPU backend (None for the host backend), as compiled_launch."""
    backend = pick_backend(backend)
    rounding_level(rounding, backend)  # a bad rounding fails here, before anything is traced
    if backend == "host":
        return None

    def launch(*args: mx.array | None) -> tuple[mx.array, mx.array]:
        """Validate, configure and dispatch (runs at trace time only)."""
        hidden, normed, _ = fused_call(backend, CombineArgs(*args[:5]), args[5], eps, threads, norm_rounding,
                                       rounding)
        return hidden, normed

    return mx.compile(launch)


def combine_then_rmsnorm(expert_w, y_expert, sh_logit, y_shared, residual, weight, eps: float = 1e-6, *,
                         backend: str = "auto") -> tuple[mx.array, mx.array]:
    """Lesson 04's baseline, two kernels: our combine, then MLX's own RMSNorm (mx.fast.rms_norm), which reads
    hidden back from memory. Checked before anything runs; MLX arrays on a GPU backend take an mx.compile fast
    path, as moe_combine_rmsnorm does, so the two are timed alike."""
    args = CombineArgs(expert_w, y_expert, sh_logit, y_shared, residual)
    fast = compiled_two_step(backend, eps)
    if fast is not None and all_mlx(*args, weight):
        return fast(*args, weight)
    return two_step_call(pick_backend(backend), args, weight, eps)


def two_step_call(backend: str, args: CombineArgs, weight, eps: float) -> tuple[mx.array, mx.array]:
    """Validate, our combine (variant "auto"), then mx.fast.rms_norm of its output: (hidden, normed)."""
    validate_rmsnorm(*args, weight, eps, allowed=KERNEL_DTYPES)
    hidden = combine_call(backend, "auto", None, args)
    return hidden, mx.fast.rms_norm(hidden, as_mlx(weight), eps)


@functools.cache
def compiled_two_step(backend: str, eps: Any) -> Callable[..., tuple[mx.array, mx.array]] | None:
    """two_step_call traced by mx.compile for a GPU backend (None for the host backend), as compiled_launch."""
    backend = pick_backend(backend)
    if backend == "host":
        return None

    def launch(*args: mx.array | None) -> tuple[mx.array, mx.array]:
        """Validate, then the two kernels (runs at trace time only)."""
        return two_step_call(backend, CombineArgs(*args[:5]), args[5], eps)

    return mx.compile(launch)
