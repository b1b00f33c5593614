"""Issue 21: does our gate, rounding per op, give what MLX's own sigmoid gives on this backend? Every finite
bfloat16 and float16 logit through mx.sigmoid and through our row kernel rounding per op (top_k 1, expert weight
0, y_shared 1, so out = the gate as rounded), compared, and MLX's gates against NumPy models of the sigmoid's
rounding; both saved (gates.npz) so another formula can be tried against MLX's values off the GPU. Also mlx-lm's
expert sum, (y * w[..., None]).sum(axis=-2), against our kernel rounding per op at a decode and a prefill size
(differing elements printed), and the fused kernel's norm against mx.fast.rms_norm.

    OUT=DIR python3 results/device-2026-12-07-rounding.py    # from the repository root, PYTHONPATH=lib
"""
from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import numpy as np

from moe_reduce import kernels
from moe_reduce.arrays import to_numpy
from moe_reduce.backends import pick_backend
from moe_reduce.check import differing
from moe_reduce.inputs import CombineArgs, make_fused_inputs, make_inputs
from moe_reduce.model_bench import mlx_lm_combine
from moe_reduce.reference import every_finite, rounded_to, sigmoid, sigmoid_per_op
from moe_reduce.validate import validate_rmsnorm

EPS = 1e-6


def sigmoid_forms(x: np.ndarray, dtype: mx.Dtype) -> dict[str, np.ndarray]:
    """NumPy models of a half-type sigmoid (x as float32): as MLX's CPU rounds it (level 1), with every step
    rounded as its CUDA source's operators do (level 2), and the float64 sigmoid rounded once."""
    return {"CPU form": sigmoid_per_op(x, dtype, 1), "each step rounded": sigmoid_per_op(x, dtype, 2),
            "float64 rounded once": rounded_to(sigmoid(x.astype(np.float64)), dtype)}


def fused_norm(name: str) -> None:
    """The fused kernel's normed output against mx.fast.rms_norm of the kernel's own hidden output (the norm
    alone), rounding per op and as mx.fast.rms_norm rounds: as a call takes it on this backend (on cuda, MLX's
    CUDA RMSNorm's threads per row and block reduce, by its source), and in our own order (the warp sums added
    in turn) at 128 threads and at the 256 that cover a row of 2048 in 16-byte accesses. How many elements differ."""
    backend = pick_backend("auto")
    kernel, level = kernels.build_fused(backend), kernels.rounding_level("per_op", backend)
    for n_tokens in (1, 512):
        args = make_fused_inputs(n_tokens, 2048, 8, seed=n_tokens).mlx(name, name)
        p = validate_rmsnorm(*args, EPS)
        hidden, normed, info = kernels.moe_combine_rmsnorm(*args, EPS, rounding="per_op",
                                                           norm_rounding="before_weight", return_info=True)
        template = dict(info.template)
        runs = {f"as called ({info.threadgroup[0]} threads, MLX_CUDA_SUM {template['MLX_CUDA_SUM']})":
                (hidden, normed)}
        for threads in (128, 256):
            config = kernels.fused_config(p, EPS, threads, "before_weight", level, mlx_sum=False)
            runs[f"{threads} threads, warp sums in turn"] = kernels.fused_dispatch(kernel, config, p,
                                                                                  CombineArgs(*args[:5]), args.weight)
        for label, (hidden, normed) in runs.items():
            print(f"{name} fused norm, {n_tokens} tokens, {label}: "
                  f"{differing(normed, mx.fast.rms_norm(hidden, args.weight, EPS))} of {normed.size} differ "
                  f"from mx.fast.rms_norm")


def main() -> None:
    """Print the comparisons; write gates.npz under $OUT."""
    out = Path(os.environ["OUT"])
    saved = {}
    for name, dtype in (("bfloat16", mx.bfloat16), ("float16", mx.float16)):
        x = every_finite(dtype)
        n = x.size
        theirs = mx.sigmoid(x)
        ours = kernels.moe_weighted_reduce(mx.zeros((n, 1), dtype), mx.zeros((n, 2), dtype), x,
                                           mx.ones((n, 2), dtype), rounding="per_op")[:, 0]
        gates = {key: to_numpy(a, np.float32) for key, a in (("x", x), ("mlx", theirs), ("ours", ours))}
        print(f"{name}: gate differs from mx.sigmoid for {differing(gates['ours'], gates['mlx'])} of {n} logits")
        for form, model in sigmoid_forms(gates["x"], dtype).items():
            print(f"  mx.sigmoid against the NumPy model '{form}': {differing(model, gates['mlx'])} differ")
        saved |= {f"{name}_{key}": a for key, a in gates.items()}
        for n_tokens, top_k in ((1, 8), (512, 8), (64, 10)):
            args = make_inputs(n_tokens, 2048, top_k, shared=False, residual=False, seed=n_tokens).mlx(name, name)
            w, y = args.expert_w, args.y_expert
            ref = mlx_lm_combine(w, y, None, None)
            got = kernels.moe_weighted_reduce(w, y, rounding="per_op")
            once = kernels.moe_weighted_reduce(w, y)
            print(f"{name} expert sum, {n_tokens} tokens, top_k {top_k}: per_op differs in {differing(got, ref)}, "
                  f"once in {differing(once, ref)}, of {ref.size}")
        fused_norm(name)
    np.savez_compressed(out / "gates.npz", **saved)


if __name__ == "__main__":
    main()
