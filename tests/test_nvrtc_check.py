"""nvrtc_check: the kernel text it hands NVRTC is the one MLX's CUDA custom kernel generates."""
from __future__ import annotations

from moe_reduce import kernels, nvrtc_check
from moe_reduce.arrays import to_mlx_dtype


def test_generated_source_has_mlx_signature_and_constants():
    """Inputs, a shape parameter only for the input whose shape the body names, outputs, then the constants."""
    body = "uint H = y_expert_shape[1];\nout[0] = x[0];"
    text = nvrtc_check.generated_source("k", "// ours\n", body, [("y_expert", "bfloat16"), ("x", "float32")],
                                        [("out", "float32")], [("T", to_mlx_dtype("bfloat16")),
                                                               ("TOP_K", 8), ("HAS_SHARED", False)])
    assert text.startswith(nvrtc_check.DEFAULT_HEADER + "// ours\nnamespace mlx::core::cu {")
    assert ("__global__ void k(\n    const __nv_bfloat16* y_expert,\n"
            "    const __grid_constant__ Shape y_expert_shape,\n    const float* x,\n    float* out) {\n"
            "  using T = __nv_bfloat16;\n  constexpr int TOP_K = 8;\n  constexpr bool HAS_SHARED = false;\n\n"
            + body + "\n}\n\n} // namespace mlx::core::cu\n") in text
    assert ") {\n" + body in nvrtc_check.generated_source("k", "", body, [("x", "float32")], [("out", "float32")], [])


def test_units_cover_every_variant_every_dtype_pair_and_the_fused_kernel():
    """16 template combinations per variant and dtype pair, 4 per pair for the fused kernel, each again rounding
    per op where the body can (row: 16 units in float32, 8 per 16-bit pair, whose h 1001 runs scalar_k); the
    bodies comment-free."""
    labels = [u.label for u in nvrtc_check.units()]
    pairs = len(nvrtc_check.DTYPES)
    row_per_op = 16 + 8 * (pairs - 1)
    assert len(labels) == len(set(labels)) == len(kernels.VARIANTS) * pairs * 16 + row_per_op + pairs * 4 * 2
    assert sum("ROUNDING=2" in label for label in labels) == row_per_op + pairs * 4
    assert {label.split()[0] for label in labels} == set(kernels.VARIANTS) | {"fused"}
    assert all("//" not in u.source.split("namespace mlx::core::cu", 1)[1].replace("} // namespace mlx::core::cu", "")
               for u in nvrtc_check.units())
