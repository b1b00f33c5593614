"""A few launches of each kernel variant for ncu to profile (one eval per call)."""
import mlx.core as mx
from moe_reduce import bench, kernels
from moe_reduce.inputs import make_inputs

for dtype in ("float32", "bfloat16"):
    for t in (1, 4096):
        a = bench._prepare_mlx(make_inputs(t, 2048, 8), dtype)
        for v in kernels.VARIANTS:
            for _ in range(2):
                mx.eval(kernels.moe_weighted_reduce(*a, variant=v))
x = mx.ones((1 << 28,), mx.float32)
copy = kernels.compile_shader("copy.metal", ("x",), "cuda")
for _ in range(2):
    mx.eval(copy(inputs=[x], grid=(x.size // 4, 1, 1), threadgroup=(256, 1, 1), output_shapes=[x.shape], output_dtypes=[mx.float32])[0])
