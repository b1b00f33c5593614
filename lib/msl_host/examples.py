"""Kernels written for msl_host's tests, benchmark and README: a plain one and three in the shape of MLX's
own row kernels.

The plain one (a matrix product, one thread per output, no barriers) runs its threads one after the other.
The row kernels run one threadgroup per row (or per chunk), sum with ``simd_sum`` inside SIMD groups, meet
the other SIMD groups through threadgroup memory between barriers, and loop over rows longer than the
threadgroup (``N_READS`` consecutive elements per thread per step, as MLX's kernels read them). They run
unchanged with ``mx.fast.metal_kernel`` on a Mac and with ``msl_host.metal_kernel`` anywhere: each function
takes the function that defines the kernel as `define` (msl_host's by default; the benchmark passes
another copy of msl_host's).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import mlx.core as mx

from .kernel import metal_kernel

# out[r, j] = sum_k a[r, k] * b[k, j] in float, one thread per output (grid: (columns, rows, 1)).
MATMUL = """
    const uint j = thread_position_in_grid.x;
    const uint r = thread_position_in_grid.y;
    const uint n = uint(b_shape[1]);
    const uint depth = uint(a_shape[1]);
    float acc = 0.0f;
    for (uint k = 0; k < depth; ++k) {
        acc += float(a[r * depth + k]) * float(b[k * n + j]);
    }
    out[r * n + j] = static_cast<T>(acc);
"""

# Threadgroup-wide sum of `acc` into `total` (a threadgroup float), through `partial` (32 floats).
_BLOCK_SUM = """
    acc = simd_sum(acc);
    if (simdgroup_index_in_threadgroup == 0) {
        partial[thread_index_in_simdgroup] = 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (thread_index_in_simdgroup == 0) {
        partial[simdgroup_index_in_threadgroup] = acc;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (simdgroup_index_in_threadgroup == 0) {
        float s = simd_sum(partial[thread_index_in_simdgroup]);
        if (thread_index_in_simdgroup == 0) {
            total = s;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
"""

# The start of a row kernel: one threadgroup per row, N_READS elements per thread per step, and the
# threadgroup memory of the block sum.
_ROW_START = """
    constexpr int N_READS = 4;
    threadgroup float partial[32];
    threadgroup float total;
    const uint n = uint(x_shape[1]);
    const uint lid = thread_position_in_threadgroup.x;
    const uint step = threads_per_threadgroup.x * N_READS;
    const device T* xr = x + size_t(threadgroup_position_in_grid.y) * n;
    device T* yr = out + size_t(threadgroup_position_in_grid.y) * n;
"""

# out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w, one threadgroup per row r (grid: (threads, rows, 1)).
RMS_NORM_ROW = _ROW_START + """

    float acc = 0.0f;
    for (uint start = lid * N_READS; start < n; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < n) {
                const float v = float(xr[start + i]);
                acc += v * v;
            }
        }
    }
""" + _BLOCK_SUM + """
    const float inv_rms = metal::precise::rsqrt(total / float(n) + eps);
    for (uint start = lid * N_READS; start < n; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < n) {
                yr[start + i] = w[start + i] * static_cast<T>(float(xr[start + i]) * inv_rms);
            }
        }
    }
"""

# out[r] = softmax(x[r]) with the row maximum subtracted first, one threadgroup per row.
SOFTMAX_ROW = _ROW_START + """

    float m = Limits<float>::min;
    for (uint start = lid * N_READS; start < n; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < n) {
                m = metal::max(m, float(xr[start + i]));
            }
        }
    }
    m = simd_max(m);
    if (thread_index_in_simdgroup == 0) {
        partial[simdgroup_index_in_threadgroup] = m;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (simdgroup_index_in_threadgroup == 0) {
        const bool has = thread_index_in_simdgroup < simdgroups_per_threadgroup;
        const float mm = simd_max(has ? partial[thread_index_in_simdgroup] : Limits<float>::min);
        if (thread_index_in_simdgroup == 0) {
            total = mm;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const float row_max = total;
    threadgroup_barrier(mem_flags::mem_threadgroup);

    float acc = 0.0f;
    for (uint start = lid * N_READS; start < n; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < n) {
                acc += metal::exp(float(xr[start + i]) - row_max);
            }
        }
    }
""" + _BLOCK_SUM + """
    const float inv_sum = 1.0f / total;
    for (uint start = lid * N_READS; start < n; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < n) {
                yr[start + i] = static_cast<T>(metal::exp(float(xr[start + i]) - row_max) * inv_sum);
            }
        }
    }
"""

# partials[g] = sum of chunk g of x (CHUNK elements each), one threadgroup per chunk (grid: (threads, chunks, 1)).
SUM_CHUNKS = """
    constexpr int N_READS = 4;
    threadgroup float partial[32];
    threadgroup float total;
    const uint n = uint(x_shape[0]);
    const uint begin = threadgroup_position_in_grid.y * CHUNK;
    const uint end = metal::min(n, begin + CHUNK);
    const uint step = threads_per_threadgroup.x * N_READS;
    float acc = 0.0f;
    for (uint start = begin + thread_position_in_threadgroup.x * N_READS; start < end; start += step) {
        for (int i = 0; i < N_READS; ++i) {
            if (start + i < end) {
                acc += float(x[start + i]);
            }
        }
    }
""" + _BLOCK_SUM + """
    if (thread_position_in_threadgroup.x == 0) {
        PUBLISH;
    }
"""


Define = Callable[..., Any]  # metal_kernel, or another with its arguments


@functools.cache
def matmul_kernel(define: Define = metal_kernel, **options: object) -> Any:
    """The matrix product (inputs a, b; output out; template T)."""
    return define("matmul", ["a", "b"], ["out"], MATMUL, **options)


@functools.cache
def rms_norm_row(define: Define = metal_kernel, **options: object) -> Any:
    """The RMSNorm row kernel (inputs x, w, eps; output out; template T)."""
    return define("rms_norm_row", ["x", "w", "eps"], ["out"], RMS_NORM_ROW, **options)


@functools.cache
def softmax_row(define: Define = metal_kernel, **options: object) -> Any:
    """The softmax row kernel (input x; output out; template T)."""
    return define("softmax_row", ["x"], ["out"], SOFTMAX_ROW, **options)


@functools.cache
def sum_chunks(atomic: bool, define: Define = metal_kernel, **options: object) -> Any:
    """Chunked sum of a 1-D x (template CHUNK): with `atomic`, every chunk adds its sum to out[0]
    (one pass; out is float atomic, init_value=0); otherwise chunk g writes out[g] (first of two passes)."""
    publish = ("atomic_fetch_add_explicit(&out[0], total, memory_order_relaxed)" if atomic
               else "out[threadgroup_position_in_grid.y] = total")
    return define("sum_atomic" if atomic else "sum_partials", ["x"], ["out"],
                  SUM_CHUNKS.replace("PUBLISH", publish), atomic_outputs=atomic, **options)


def row_launch(rows: int, n: int) -> dict:
    """Grid and threadgroup for a row kernel: enough threads for a row of n (4 reads each), at most 1024."""
    threads = min(1024, max(32, -(-n // 4)))
    return dict(grid=(threads, rows, 1), threadgroup=(threads, 1, 1))


def matmul(a: mx.array, b: mx.array, define: Define = metal_kernel, **options: object) -> mx.array:
    """a @ b (2-D) with the matrix-product kernel, in a's dtype."""
    (m, _), n = a.shape, b.shape[1]
    (out,) = matmul_kernel(define, **options)(inputs=[a, b], template=[("T", a.dtype)], output_shapes=[(m, n)],
                                              output_dtypes=[a.dtype], grid=(n, m, 1), threadgroup=(256, 1, 1))
    return out


def rms_norm(x: mx.array, w: mx.array, eps: float, define: Define = metal_kernel, **options: object) -> mx.array:
    """RMSNorm of each row of x (2-D) with the row kernel."""
    (out,) = rms_norm_row(define, **options)(inputs=[x, w, mx.array(eps, mx.float32)], template=[("T", x.dtype)],
                                            output_shapes=[x.shape], output_dtypes=[x.dtype], **row_launch(*x.shape))
    return out


def softmax(x: mx.array, define: Define = metal_kernel, **options: object) -> mx.array:
    """Softmax of each row of x (2-D) with the row kernel."""
    (out,) = softmax_row(define, **options)(inputs=[x], template=[("T", x.dtype)], output_shapes=[x.shape],
                                           output_dtypes=[x.dtype], **row_launch(*x.shape))
    return out


def sum_all(x: mx.array, passes: int, chunk: int = 4096, define: Define = metal_kernel,
            **options: object) -> mx.array:
    """Sum of all elements of x as float32: one pass (per-chunk sums added atomically) or two (per-chunk
    sums written out, then summed by one threadgroup)."""
    flat = x.reshape(-1)
    chunks = max(1, -(-flat.size // chunk))
    launch = row_launch(chunks, chunk)
    if passes == 1:
        (out,) = sum_chunks(True, define, **options)(inputs=[flat], template=[("CHUNK", chunk)], output_shapes=[(1,)],
                                                     output_dtypes=[mx.float32], init_value=0, **launch)
        return out[0]
    partial_sums = sum_chunks(False, define, **options)
    (partials,) = partial_sums(inputs=[flat], template=[("CHUNK", chunk)], output_shapes=[(chunks,)],
                               output_dtypes=[mx.float32], **launch)
    (out,) = partial_sums(inputs=[partials], template=[("CHUNK", chunks)], output_shapes=[(1,)],
                          output_dtypes=[mx.float32], **row_launch(1, chunks))
    return out[0]
