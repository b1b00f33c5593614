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
from moe_reduce.backends import make_kernel, pick_backend, read_source
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


SEQUENTIAL_SUM = """float total = 0.0f;
for (uint g = 0; g < simdgroups_per_threadgroup; ++g) {
    total += partial[g];
}
"""
# MLX's CUDA BlockBroadcastReduce (rms_norm.cu, by source): the warp sums on the first lanes, zeros on the rest,
# added by the same xor butterfly as one warp's lanes.
BUTTERFLY_SUM = """const uint lane = thread_index_in_simdgroup;
const float total = simd_sum(lane < simdgroups_per_threadgroup ? partial[lane] : 0.0f);
"""


def butterfly_kernel(backend: str):
    """The fused kernel with its warp sums added as MLX's CUDA block reduce adds them."""
    body = read_source(kernels.FUSED_FILE)
    assert SEQUENTIAL_SUM in body, "the fused body's sum of warp sums has changed: update SEQUENTIAL_SUM"
    return make_kernel("fused_butterfly", body.replace(SEQUENTIAL_SUM, BUTTERFLY_SUM), kernels.FUSED_INPUTS,
                       backend, kernels.FUSED_OUTPUTS, source_name=kernels.FUSED_FILE)


def fused_norm(name: str) -> None:
    """The fused kernel's normed output against mx.fast.rms_norm of the kernel's own hidden output (the norm
    alone): at the default threads per token; at 128, the per-thread order of MLX's CUDA rms_norm_small at h 2048
    (by its source); and at 128 with the warp sums added as MLX adds them. How many elements differ."""
    backend = pick_backend("auto")
    butterfly = butterfly_kernel(backend)
    for n_tokens in (1, 512):
        args = make_fused_inputs(n_tokens, 2048, 8, seed=n_tokens).mlx(name, name)
        p = validate_rmsnorm(*args, EPS)
        runs = {}
        for threads in (None, 128):
            hidden, normed, info = kernels.moe_combine_rmsnorm(*args, EPS, threads=threads, rounding="per_op",
                                                               norm_rounding="before_weight", return_info=True)
            runs[f"{info.threadgroup[0]} threads"] = hidden, normed
        config = kernels.fused_config(p, EPS, 128, "before_weight", kernels.rounding_level("per_op", backend))
        runs["128 threads, butterfly"] = kernels.fused_dispatch(butterfly, config, p, CombineArgs(*args[:5]),
                                                                args.weight)
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
