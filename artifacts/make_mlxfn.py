"""Write artifacts/moe_weighted_reduce_h2048_k8_f32.mlxfn: one call of the scalar combine kernel
(T=4, h=2048, top_k=8, float32, residual on) traced by mx.export_function. Tracing needs no Metal
device, so this runs anywhere; running the imported function needs a Mac (mx.metal.is_available()).
The file stores the graph (the kernel's generated Metal source, template, grid, shapes and dtypes),
not the input values. Usage, from the repository root: python artifacts/make_mlxfn.py"""
from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from moe_reduce import kernels
from moe_reduce.inputs import make_inputs
from moe_reduce.validate import validate

ARTIFACT = Path(__file__).resolve().parent / "moe_weighted_reduce_h2048_k8_f32.mlxfn"
N_TOKENS, H, TOP_K, DTYPE = 4, 2048, 8, "float32"


def example_args() -> tuple:
    """Inputs of the exported shape (seed 0): expert_w, y_expert, sh_logit, y_shared, residual."""
    return make_inputs(N_TOKENS, H, TOP_K, residual=True, seed=0).mlx(DTYPE)


def export_combine(path: str | Path) -> None:
    """Trace one call of the scalar kernel through mx.fast.metal_kernel and save it to `path`."""
    args = example_args()
    p = validate(*args)
    grid, group, template = kernels.launch_config("scalar", p)
    metal = kernels.build("scalar", "metal")

    def combine(expert_w, y_expert, sh_logit, y_shared, residual):
        return metal(inputs=[expert_w, y_expert, sh_logit, y_shared, residual], template=template,
                     grid=grid, threadgroup=group, output_shapes=[(p.n_tokens, p.h)],
                     output_dtypes=[mx.float32])

    mx.export_function(str(path), combine, *args)


if __name__ == "__main__":
    export_combine(ARTIFACT)
    print(f"wrote {ARTIFACT.name}: {ARTIFACT.stat().st_size} bytes")
