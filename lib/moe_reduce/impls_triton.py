"""Our Triton peers: the combine as a hand-written Triton kernel, written the way serving engines write theirs
(one program per token and block of h, top_k unrolled, float32 accumulation, 16-byte loads where h allows),
with (BLOCK, num_warps) chosen per size by a small sweep of kernel time, as triton.autotune would; and the
combine fused with the next RMSNorm (one program per token). Loaded through impls.triton_support where triton
imports with a CUDA GPU."""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import torch
import triton
import triton.language as tl

from .contender import GRAPH_MAX_OUTPUTS, Impl
from .impls_torch import torch_impl
from .ops import EPS
from .inputs import CombineArgs

BLOCKS = (64, 128, 256, 512, 1024, 2048, 4096)
WARPS = (1, 2, 4, 8)


@triton.jit
def add_experts(acc, w_ptr, y_ptr, s_ptr, ys_ptr, t, cols, mask, H, TOP_K: tl.constexpr, HAS_SHARED: tl.constexpr):
    """acc + the weighted expert rows of token t at `cols`, then the gated shared expert's, in float32."""
    for k in tl.static_range(TOP_K):
        w = tl.load(w_ptr + t * TOP_K + k).to(tl.float32)
        acc += w * tl.load(y_ptr + (t * TOP_K + k) * H + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_SHARED:
        gate = tl.sigmoid(tl.load(s_ptr + t).to(tl.float32))
        acc += gate * tl.load(ys_ptr + t * H + cols, mask=mask, other=0.0).to(tl.float32)
    return acc


@triton.jit
def combine_kernel(w_ptr, y_ptr, s_ptr, ys_ptr, r_ptr, out_ptr, H, TOP_K: tl.constexpr, HAS_SHARED: tl.constexpr,
                   HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):
    """Program (t, b) makes out[t, b*BLOCK : (b+1)*BLOCK]."""
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < H
    acc = add_experts(tl.zeros([BLOCK], dtype=tl.float32), w_ptr, y_ptr, s_ptr, ys_ptr, t, cols, mask, H, TOP_K,
                      HAS_SHARED)
    if HAS_RESIDUAL:
        acc += tl.load(r_ptr + t * H + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * H + cols, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def combine_rmsnorm_kernel(w_ptr, y_ptr, s_ptr, ys_ptr, r_ptr, wt_ptr, hid_ptr, out_ptr, H, eps,
                           TOP_K: tl.constexpr, HAS_SHARED: tl.constexpr, BLOCK: tl.constexpr):
    """Program t makes hidden[t, :] (the combine with the residual) and normed[t, :] (its RMSNorm): the whole
    row in one program, so the sum of squares needs no second pass."""
    t = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < H
    acc = add_experts(tl.load(r_ptr + t * H + cols, mask=mask, other=0.0).to(tl.float32), w_ptr, y_ptr, s_ptr,
                      ys_ptr, t, cols, mask, H, TOP_K, HAS_SHARED)
    hidden = acc.to(hid_ptr.dtype.element_ty)
    tl.store(hid_ptr + t * H + cols, hidden, mask=mask)
    x = hidden.to(tl.float32)
    scale = tl.rsqrt(tl.sum(x * x, axis=0) / H + eps)
    wt = tl.load(wt_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * H + cols, (x * scale * wt).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def empty_kernel(p):
    """Does nothing: its GPU time is what a Triton launch costs by itself."""
    pass


@triton.jit
def store_kernel(p):
    """Stores one number at p, a pointer it reads from its parameters; it loads nothing."""
    tl.store(p, 1.0)


def one_program_launch(kernel) -> Callable[[], None]:
    """One launch of a one-argument kernel on one program (a 1-element CUDA tensor as its argument)."""
    x = torch.zeros(1, device="cuda")
    return lambda: kernel[(1,)](x)


def empty_launch() -> Callable[[], None]:
    """One launch of empty_kernel."""
    return one_program_launch(empty_kernel)


def store_launch() -> Callable[[], None]:
    """One launch of store_kernel."""
    return one_program_launch(store_kernel)


class Config(NamedTuple):
    """One launch shape of the Triton kernel."""

    block: int
    warps: int


def launch(cfg: Config, w, y, s=None, ys=None, r=None) -> torch.Tensor:
    """One call of the kernel with a given configuration; absent inputs are passed as y, never read."""
    t, k = w.shape
    h = y.shape[-1]
    out = torch.empty((t, h), device=y.device, dtype=y.dtype)
    grid = (t, triton.cdiv(h, cfg.block))
    combine_kernel[grid](w, y, y if s is None else s, y if ys is None else ys, y if r is None else r, out, h,
                         TOP_K=k, HAS_SHARED=ys is not None, HAS_RESIDUAL=r is not None, BLOCK=cfg.block,
                         num_warps=cfg.warps)
    return out


def launch_fused(warps: int, w, y, s, ys, r, wt, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One call of the fused kernel with `warps` warps per program: (hidden, normed)."""
    t, k = w.shape
    h = y.shape[-1]
    hidden = torch.empty((t, h), device=y.device, dtype=y.dtype)
    normed = torch.empty_like(hidden)
    combine_rmsnorm_kernel[(t,)](w, y, y if s is None else s, y if ys is None else ys, r, wt, hidden, normed, h, eps,
                                 TOP_K=k, HAS_SHARED=ys is not None, BLOCK=triton.next_power_of_2(h), num_warps=warps)
    return hidden, normed


def draw(shape: tuple, residual: bool) -> tuple:
    """Fresh random CUDA inputs (w, y, s, ys, r) of one signature (see `signature`); s and ys None without the
    shared expert, r None without the residual."""
    (t, k), (rows, h), dtype, gate_dtype, shared, _ = shape
    dev = "cuda"
    return (torch.rand((t, k), device=dev, dtype=gate_dtype), torch.randn((rows, h), device=dev, dtype=dtype),
            torch.randn((t,), device=dev, dtype=gate_dtype) if shared else None,
            torch.randn((t, h), device=dev, dtype=dtype) if shared else None,
            torch.randn((t, h), device=dev, dtype=dtype) if residual else None)


def fastest(launches: dict[Any, Callable[[], Any]]) -> Any:
    """The key of the fastest launch by triton.testing.do_bench (median kernel time, L2 flushed between calls)."""
    timed = {key: triton.testing.do_bench(run, warmup=5, rep=20, return_mode="median") for key, run in launches.items()}
    return min(timed, key=timed.get)


@functools.cache
def best_fused_warps(shape: tuple) -> int:
    """The fastest warps per program for one fused signature, as best_config does for the combine."""
    h, dtype = shape[1][1], shape[2]
    args = (*draw(shape, residual=True), torch.randn((h,), device="cuda", dtype=dtype))
    return fastest({n: lambda n=n: launch_fused(n, *args, 1e-6) for n in (1, 2, 4, 8, 16)})


def triton_combine_rmsnorm(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused op through the Triton kernel, with the best warps for its size."""
    return launch_fused(best_fused_warps(signature(args[:5])), *args, EPS)


def candidates(h: int) -> list[Config]:
    """Blocks up to the row's next power of two, with 1 to 8 warps of at least one element per thread."""
    top = triton.next_power_of_2(h)
    return [Config(b, w) for b in BLOCKS for w in WARPS if b <= max(top, BLOCKS[0]) and b >= 32 * w]


@functools.cache
def best_config(shape: tuple) -> Config:
    """The fastest configuration for one (shapes, dtypes, flags) signature, by triton.testing.do_bench
    (median kernel time, L2 flushed between calls); drawn on fresh inputs of that signature."""
    args = draw(shape, residual=shape[5])
    return fastest({c: lambda c=c: launch(c, *args) for c in candidates(shape[1][1])})


def signature(args: CombineArgs | tuple) -> tuple:
    """What the best configuration depends on: of the five combine arguments (w, y, s, ys, r)."""
    w, y, s, ys, r = args
    return (tuple(w.shape), tuple(y.shape), y.dtype, w.dtype, ys is not None, r is not None)


def triton_combine(*args: Any) -> torch.Tensor:
    """The op through the Triton kernel, in the best configuration for its size (called with all five
    arguments, as fn(*CombineArgs) calls it)."""
    return launch(best_config(signature(args)), *args)


def all_impls() -> list[Impl]:
    """The Triton peer, launched from Python per call (`triton`) and captured in CUDA graphs (`triton_graph`)."""
    build: Callable[[str], Callable[..., Any]] = lambda dtype: triton_combine
    return [torch_impl("triton", build, backend="triton-cuda"),
            torch_impl("triton_graph", build, backend="triton-cuda", max_outputs=GRAPH_MAX_OUTPUTS, graphed=True),
            torch_impl("triton_fused", lambda dtype: triton_combine_rmsnorm, "fused", backend="triton-cuda")]
