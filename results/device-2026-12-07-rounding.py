"""Issue 21: does our gate, rounding per op, give what MLX's own sigmoid gives on this backend? Every finite
bfloat16 and float16 logit through mx.sigmoid and through our row kernel rounding per op (top_k 1, expert weight
0, y_shared 1, so out = the gate as rounded), compared; both saved (gates.npz) so another formula can be tried
against MLX's values off the GPU. Also mlx-lm's expert sum, (y * w[..., None]).sum(axis=-2), against our kernel
rounding per op at a decode and a prefill size (differing elements printed).

    OUT=DIR python3 results/device-2026-12-07-rounding.py    # from the repository root, PYTHONPATH=lib
"""
from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import numpy as np

from moe_reduce import kernels
from moe_reduce.inputs import make_inputs
from moe_reduce.model_bench import mlx_lm_combine


def every_value(dtype: mx.Dtype) -> mx.array:
    """Every finite value of a 16-bit float dtype."""
    x = mx.array(np.arange(2**16, dtype=np.uint16)).view(dtype)
    return x[mx.array(np.flatnonzero(np.isfinite(np.array(x.astype(mx.float32)))))]


def main() -> None:
    """Print the comparisons; write gates.npz under $OUT."""
    out = Path(os.environ["OUT"])
    saved = {}
    for name, dtype in (("bfloat16", mx.bfloat16), ("float16", mx.float16)):
        x = every_value(dtype)
        n = x.size
        theirs = mx.sigmoid(x)
        ours = kernels.moe_weighted_reduce(mx.zeros((n, 1), dtype), mx.zeros((n, 2), dtype), x,
                                           mx.ones((n, 2), dtype), rounding="per_op")[:, 0]
        differ = np.array(theirs.astype(mx.float32)) != np.array(ours.astype(mx.float32))
        print(f"{name}: gate differs from mx.sigmoid for {int(differ.sum())} of {n} logits")
        saved |= {f"{name}_x": np.array(x.astype(mx.float32)), f"{name}_mlx": np.array(theirs.astype(mx.float32)),
                  f"{name}_ours": np.array(ours.astype(mx.float32))}
        for n_tokens, top_k in ((1, 8), (512, 8), (64, 10)):
            args = make_inputs(n_tokens, 2048, top_k, shared=False, residual=False, seed=n_tokens).mlx(name, name)
            w, y = args.expert_w, args.y_expert
            ref = mlx_lm_combine(w, y, None, None)
            got = kernels.moe_weighted_reduce(w, y, rounding="per_op")
            once = kernels.moe_weighted_reduce(w, y)
            count = lambda a: int(np.sum(np.array(a.astype(mx.float32)) != np.array(ref.astype(mx.float32))))  # noqa: E731
            print(f"{name} expert sum, {n_tokens} tokens, top_k {top_k}: per_op differs in {count(got)}, "
                  f"once in {count(once)}, of {ref.size}")
    np.savez_compressed(out / "gates.npz", **saved)


if __name__ == "__main__":
    main()
