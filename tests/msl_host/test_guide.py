"""The examples of MLX's custom Metal kernel guide (docs/src/dev/custom_metal_kernels.rst), written
for these tests in the same shape, against the guide's reference maths (also written here):
elementwise exp, the strided exp, bilinear grid_sample in float32 and float16, and its VJP with
atomic_outputs=True, init_value=0 and simd_sum."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host
from msl_testing import rel_err

EXP = """
    uint i = thread_position_in_grid.x;
    T v = inp[i];
    out[i] = metal::exp(v);
"""

EXP_STRIDED = """
    uint i = thread_position_in_grid.x;
    uint at = elem_to_loc(i, inp_shape, inp_strides, inp_ndim);  // MLX's utility, on the host too
    T v = inp[at];
    out[i] = metal::exp(v);
"""


def test_exp():
    k = host.metal_kernel("myexp", ["inp"], ["out"], EXP)
    a = mx.random.normal(shape=(4, 16), key=mx.random.key(0)).astype(mx.float16)
    (b,) = k(inputs=[a], template=[("T", mx.float32)], grid=(a.size, 1, 1), threadgroup=(256, 1, 1),
             output_shapes=[a.shape], output_dtypes=[a.dtype])
    assert b.dtype == mx.float16 and mx.allclose(b, mx.exp(a))


def test_strided_exp():
    k = host.metal_kernel("myexp_strided", ["inp"], ["out"], EXP_STRIDED, ensure_row_contiguous=False)
    a = mx.random.normal(shape=(4, 16), key=mx.random.key(1)).astype(mx.float16)[::2]
    (b,) = k(inputs=[a], template=[("T", mx.float32)], grid=(a.size, 1, 1), threadgroup=(256, 1, 1),
             output_shapes=[a.shape], output_dtypes=[a.dtype])
    assert mx.allclose(b, mx.exp(a))
    text = host.generated_source(k, inputs=[a], template=[("T", mx.float32)], output_shapes=[a.shape],
                                 output_dtypes=[a.dtype])
    assert "const constant int64_t* inp_strides" in text


def grid_sample_ref(x, grid, coordinate_dtype=mx.float32):
    """Bilinear sampling of x (N, H, W, C) at grid (N, gH, gW, 2) in [-1, 1], zero outside: the guide's
    maths, in float32, with the pixel coordinates computed in `coordinate_dtype` (a half kernel's
    `(grid + 1) * W` is half arithmetic)."""
    n, h, w, _ = x.shape
    g = grid.astype(coordinate_dtype)
    ix = (((g[..., 0] + 1) * w - 1) / 2).astype(mx.float32)
    iy = (((g[..., 1] + 1) * h - 1) / 2).astype(mx.float32)
    x0, y0 = mx.floor(ix), mx.floor(iy)
    batch = mx.arange(n)[:, None, None]
    out = 0
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - mx.abs(ix - xi)) * (1 - mx.abs(iy - yi))
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            rows = mx.stop_gradient(mx.clip(yi, 0, h - 1).astype(mx.int32))
            cols = mx.stop_gradient(mx.clip(xi, 0, w - 1).astype(mx.int32))
            out = out + (weight * inside)[..., None] * x.astype(mx.float32)[batch, rows, cols, :]
    return out


# One thread per output element; the four neighbours are read only where they exist, with the
# guide's `value = inside ? value : 0` idiom (T may be half: a ternary with an int literal).
GRID_SAMPLE = """
    uint elem = thread_position_in_grid.x;
    const int H = x_shape[1], W = x_shape[2], C = x_shape[3];
    const int gH = grid_shape[1], gW = grid_shape[2];
    const int w_stride = C, h_stride = W * C, b_stride = H * W * C;
    const uint g = elem / C * 2;
    const float ix = ((grid[g] + 1) * W - 1) / 2;
    const float iy = ((grid[g + 1] + 1) * H - 1) / 2;
    const int x0 = floor(ix), y0 = floor(iy);
    const int base = elem / C / gH / gW * b_stride + elem % C;
    T acc = 0;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            const int xi = x0 + dx, yi = y0 + dy;
            const T weight = (dx ? ix - x0 : x0 + 1 - ix) * (dy ? iy - y0 : y0 + 1 - iy);
            const bool inside = yi >= 0 && yi <= H - 1 && xi >= 0 && xi <= W - 1;
            T value = inside ? x[base + yi * h_stride + xi * w_stride] : 0;
            value = inside ? value : 0;
            acc += weight * value;
        }
    }
    out[elem] = acc;
"""


def sample_inputs(dtype, seed=0):
    """Random image and sampling grid, some points outside the image."""
    x = mx.random.normal((2, 8, 10, 5), key=mx.random.key(seed)).astype(dtype)
    grid = mx.random.uniform(-1.15, 1.15, (2, 6, 7, 2), key=mx.random.key(seed + 1)).astype(dtype)
    return x, grid


def grid_sample(x, grid, source=GRID_SAMPLE, **options):
    """The forward kernel, launched as the guide does."""
    k = host.metal_kernel("grid_sample", ["x", "grid"], ["out"], source, **options)
    out_shape = (x.shape[0], grid.shape[1], grid.shape[2], x.shape[3])
    (out,) = k(inputs=[x, grid], template=[("T", x.dtype)], output_shapes=[out_shape], output_dtypes=[x.dtype],
               grid=(int(np.prod(out_shape)), 1, 1), threadgroup=(256, 1, 1))
    return out


@pytest.mark.parametrize("dtype, tol", [(mx.float32, 1e-6), (mx.float16, 3e-3)])
def test_grid_sample(dtype, tol):
    x, grid = sample_inputs(dtype)
    want = grid_sample_ref(x, grid, coordinate_dtype=dtype)
    assert mx.sum(want == 0).item() > 0  # some samples fall outside the image
    assert rel_err(grid_sample(x, grid), want) < tol


def test_reading_before_masking_is_caught():
    """The guide's forward kernel reads all four neighbours, then masks them: at the image's first or
    last pixels that read lies outside x. The bounds check reports it; unchecked, the masked value is
    discarded and the output matches."""
    reads_first = GRID_SAMPLE.replace("T value = inside ? x[base + yi * h_stride + xi * w_stride] : 0;",
                                      "T value = x[base + yi * h_stride + xi * w_stride];")
    x, grid = sample_inputs(mx.float32)
    grid = mx.concatenate([mx.full((2, 1, 7, 2), -1.0), grid[:, 1:]], axis=1)  # the top-left corner
    with pytest.raises(host.KernelFault, match="out-of-bounds access to `x` at element -"):
        grid_sample(x, grid, reads_first)
    assert rel_err(grid_sample(x, grid, reads_first, bounds_check=False), grid_sample_ref(x, grid)) < 1e-6


# The VJP: x_grad by atomic adds, grid_grad by a simd_sum over the channels (padded to the SIMD
# width so that each SIMD group covers one grid point) and one atomic add per SIMD group.
GRID_SAMPLE_VJP = """
    uint elem = thread_position_in_grid.x;
    const int H = x_shape[1], W = x_shape[2], C = x_shape[3];
    const int C_padded = ceildiv(C, threads_per_simdgroup) * threads_per_simdgroup;
    const int gH = grid_shape[1], gW = grid_shape[2];
    const int w_stride = C, h_stride = W * C, b_stride = H * W * C;
    const uint g = elem / C_padded * 2;
    const float ix = ((grid[g] + 1) * W - 1) / 2;
    const float iy = ((grid[g + 1] + 1) * H - 1) / 2;
    const int x0 = floor(ix), y0 = floor(iy);
    const int channel = elem % C_padded;
    const int base = elem / C_padded / gH / gW * b_stride + channel;
    T gix = T(0), giy = T(0);
    if (channel < C) {
        const T cot = cotangent[elem / C_padded * C + channel];
        for (int dy = 0; dy < 2; ++dy) {
            for (int dx = 0; dx < 2; ++dx) {
                const int xi = x0 + dx, yi = y0 + dy;
                if (yi < 0 || yi > H - 1 || xi < 0 || xi > W - 1) {
                    continue;
                }
                const float wx = dx ? ix - x0 : x0 + 1 - ix, wy = dy ? iy - y0 : y0 + 1 - iy;
                const int offset = base + yi * h_stride + xi * w_stride;
                atomic_fetch_add_explicit(&x_grad[offset], wx * wy * cot, memory_order_relaxed);
                const T v = x[offset];
                gix += (dx ? 1 : -1) * v * wy * cot;
                giy += (dy ? 1 : -1) * v * wx * cot;
            }
        }
    }
    gix = simd_sum(gix);
    giy = simd_sum(giy);
    if (thread_index_in_simdgroup == 0) {
        atomic_fetch_add_explicit(&grid_grad[g], gix * T(W / 2), memory_order_relaxed);
        atomic_fetch_add_explicit(&grid_grad[g + 1], giy * T(H / 2), memory_order_relaxed);
    }
"""


def test_grid_sample_vjp():
    x, grid = sample_inputs(mx.float32, seed=5)
    cot = mx.random.normal((2, 6, 7, 5), key=mx.random.key(7))
    k = host.metal_kernel("grid_sample_grad", ["x", "grid", "cotangent"], ["x_grad", "grid_grad"], GRID_SAMPLE_VJP,
                          atomic_outputs=True)
    c_padded = 32
    x_grad, grid_grad = k(inputs=[x, grid, cot], template=[("T", x.dtype)], output_shapes=[x.shape, grid.shape],
                          output_dtypes=[x.dtype, x.dtype], grid=(2 * 6 * 7 * c_padded, 1, 1),
                          threadgroup=(256, 1, 1), init_value=0)
    _, (want_x, want_grid) = mx.vjp(grid_sample_ref, [x, grid], [cot])
    assert rel_err(x_grad, want_x) < 1e-6
    assert rel_err(grid_grad, want_grid) < 1e-5
    assert mx.sum(grid_grad == 0).item() < grid_grad.size  # not trivially zero
