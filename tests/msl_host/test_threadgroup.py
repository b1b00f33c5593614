"""Threadgroup memory and barriers, a SIMD-group reduction, an atomic histogram and a strided input,
each against NumPy on odd sizes, in float32 and half."""

import functools
import os

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host
from msl_testing import as_f64, rel_err

SIZES = [1, 31, 33, 257, 1000]
DTYPES = [mx.float32, mx.float16]
ROWS = 8
TOL = {mx.float32: 2e-6, mx.float16: 1e-3}

# Tree reductions in threadgroup memory, one barrier per level (BLOCK threads, a power of two).
REDUCE_HEADER = """
struct Add { float operator()(float a, float b) const { return a + b; } };
struct Max { float operator()(float a, float b) const { return metal::max(a, b); } };

template <typename Op>
float block_reduce(threadgroup float* buf, float v, uint lid, uint block, Op op) {
    buf[lid] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = block / 2; s > 0; s /= 2) {
        if (lid < s) {
            buf[lid] = op(buf[lid], buf[lid + s]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    const float r = buf[0];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return r;
}
"""

# One threadgroup per row: the row's sum and max, its softmax and its RMSNorm.
ROW_STATS = """
    threadgroup float buf[BLOCK];
    const uint lid = thread_position_in_threadgroup.x;
    const uint row = threadgroup_position_in_grid.y;
    const uint n = uint(x_shape[1]);
    const device T* xr = x + size_t(row) * n;
    float s = 0.0f, m = -INFINITY, q = 0.0f;
    for (uint i = lid; i < n; i += BLOCK) {
        const float v = float(xr[i]);
        s += v;
        m = metal::max(m, v);
        q += v * v;
    }
    const float row_sum = block_reduce(buf, s, lid, BLOCK, Add());
    const float row_max = block_reduce(buf, m, lid, BLOCK, Max());
    const float row_sq = block_reduce(buf, q, lid, BLOCK, Add());
    float e = 0.0f;
    for (uint i = lid; i < n; i += BLOCK) {
        e += metal::exp(float(xr[i]) - row_max);
    }
    const float row_exp = block_reduce(buf, e, lid, BLOCK, Add());
    if (lid == 0) {
        sums[row] = row_sum;
        maxes[row] = T(row_max);
    }
    const float inv_rms = metal::rsqrt(row_sq / float(n) + 1e-6f);
    for (uint i = lid; i < n; i += BLOCK) {
        const float v = float(xr[i]);
        softmax[size_t(row) * n + i] = T(metal::exp(v - row_max) / row_exp);
        rms[size_t(row) * n + i] = T(v * inv_rms);
    }
"""

BLOCK = 64


def random(shape, dtype, seed):
    """Fresh random normal values (never zeros) of `dtype`."""
    return (mx.random.normal(shape, key=mx.random.key(seed)) * 2 + 0.5).astype(dtype)


@functools.cache
def row_stats(n, dtype):
    """Run the row-stats kernel on fresh random (ROWS, n) input; return input and outputs."""
    x = random((ROWS, n), dtype, n)
    k = host.metal_kernel("row_stats", ["x"], ["sums", "maxes", "softmax", "rms"], ROW_STATS, header=REDUCE_HEADER)
    outs = k(inputs=[x], template=[("T", dtype), ("BLOCK", BLOCK)], grid=(BLOCK, ROWS, 1),
             threadgroup=(BLOCK, 1, 1), output_shapes=[(ROWS,), (ROWS,), x.shape, x.shape],
             output_dtypes=[mx.float32, dtype, dtype, dtype])
    return as_f64(x), dict(zip(["sums", "maxes", "softmax", "rms"], outs))


def numpy_row_stats(x):
    """The same four results in float64."""
    e = np.exp(x - x.max(1, keepdims=True))
    return {"sums": x.sum(1), "maxes": x.max(1), "softmax": e / e.sum(1, keepdims=True),
            "rms": x / np.sqrt((x * x).mean(1, keepdims=True) + 1e-6)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("what", ["sums", "maxes", "softmax", "rms"])
def test_threadgroup_tree_reductions(what, n, dtype):
    x, got = row_stats(n, dtype)
    want = numpy_row_stats(x)[what]
    assert rel_err(got[what], want) < (TOL[dtype] if what != "sums" else 1e-5)


# Per SIMD group of 32 threads: simd_sum, simd_max and a simd_shuffle_down tree (threads past the end
# contribute 0 / -inf, as a kernel with a padded grid does).
SIMD_REDUCE = """
    const uint i = thread_position_in_grid.x;
    const bool inside = i < uint(x_shape[0]);
    const float v = inside ? float(x[i]) : 0.0f;
    float tree = v;
    for (ushort d = 16; d > 0; d /= 2) {
        tree += simd_shuffle_down(tree, d);
    }
    const float s = simd_sum(v);
    const float m = simd_max(inside ? float(x[i]) : -INFINITY);
    if (thread_index_in_simdgroup == 0) {
        const uint g = i / 32;
        out[3 * g] = s;
        out[3 * g + 1] = m;
        out[3 * g + 2] = tree;
    }
"""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_simd_group_reduction(n, dtype):
    x = random((n,), dtype, 100 + n)
    groups = -(-n // 32)
    k = host.metal_kernel("simd_reduce", ["x"], ["out"], SIMD_REDUCE)
    (out,) = k(inputs=[x], grid=(32 * groups, 1, 1), threadgroup=(64, 1, 1), output_shapes=[(groups, 3)],
               output_dtypes=[mx.float32])
    xs = np.pad(as_f64(x), (0, 32 * groups - n)).reshape(groups, 32)
    got = np.asarray(out)
    assert rel_err(got[:, 0], xs.sum(1)) < 1e-6
    assert rel_err(got[:, 2], xs.sum(1)) < 1e-6
    maxes = [as_f64(x)[32 * g:32 * g + 32].max() for g in range(groups)]
    np.testing.assert_array_equal(got[:, 1], maxes)


# Histogram of x in [0, 1) into NB bins: straight into device atomics (hist), and through
# threadgroup atomics added to device memory once per group (hist_tg).
HISTOGRAM = """
    threadgroup atomic_uint local[NB];
    const uint lid = thread_index_in_threadgroup;
    for (uint b = lid; b < NB; b += threads_per_threadgroup.x) {
        atomic_store_explicit(&local[b], 0u, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const uint i = thread_position_in_grid.x;
    if (i < uint(x_shape[0])) {
        const int bin = metal::clamp(int(float(x[i]) * NB), 0, NB - 1);
        atomic_fetch_add_explicit(&hist[bin], 1u, memory_order_relaxed);
        atomic_fetch_add_explicit(&local[bin], 1u, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint b = lid; b < NB; b += threads_per_threadgroup.x) {
        atomic_fetch_add_explicit(&hist_tg[b], atomic_load_explicit(&local[b], memory_order_relaxed),
                                  memory_order_relaxed);
    }
"""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_atomic_histogram(n, dtype):
    nb = 10
    x = mx.random.uniform(shape=(n,), key=mx.random.key(200 + n)).astype(dtype)
    k = host.metal_kernel("histogram", ["x"], ["hist", "hist_tg"], HISTOGRAM, atomic_outputs=True)
    text = host.generated_source(k, inputs=[x], output_shapes=[(nb,), (nb,)], output_dtypes=[mx.uint32] * 2,
                                 template=[("NB", nb)])
    assert "device atomic<uint32_t>* hist" in text
    hist, hist_tg = k(inputs=[x], template=[("NB", nb)], grid=(n, 1, 1), threadgroup=(32, 1, 1),
                      output_shapes=[(nb,), (nb,)], output_dtypes=[mx.uint32] * 2, init_value=0)
    bins = np.clip((as_f64(x).astype(np.float32) * nb).astype(np.int64), 0, nb - 1)
    want = np.bincount(bins, minlength=nb)
    np.testing.assert_array_equal(np.asarray(hist), want)
    np.testing.assert_array_equal(np.asarray(hist_tg), want)


STRIDED = """
    const uint i = thread_position_in_grid.x;
    const int64_t loc = elem_to_loc(int64_t(i), x_shape, x_strides, x_ndim);
    out[i] = x[loc] * T(2) + T(x_strides[0]);
"""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_strided_input(n, dtype):
    base = random((n + 3, 6), dtype, 300 + n)
    views = {"transposed": base.T, "sliced": base[2:, 1:5], "every_other_row": base[::2]}
    k = host.metal_kernel("strided", ["x"], ["out"], STRIDED, ensure_row_contiguous=False)
    for name, view in views.items():
        (out,) = k(inputs=[view], template=[("T", dtype)], grid=(view.size, 1, 1), threadgroup=(64, 1, 1),
                   output_shapes=[view.shape], output_dtypes=[dtype])
        stride0 = np.asarray(view).strides[0] // view.itemsize
        want = (as_f64(view) * 2 + stride0).astype(np.float32)
        assert rel_err(out, want) < TOL[dtype], name


# Helper templates taking `threadgroup T*`, given a threadgroup array, a row of a 2-D one and a pointer into
# one: T is deduced as in Metal, with and without bounds checks.
TEMPLATE_HEADER = """
template <typename T>
T tree_sum(threadgroup T* buf, uint lid, uint n) {
    for (uint s = n / 2; s > 0; s /= 2) {
        if (lid < s) {
            buf[lid] += buf[lid + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return buf[0];
}

template <typename T, typename U>
void fill(threadgroup T* dst, U value, uint lid) {
    dst[lid] = T(value);
}
"""

TEMPLATE_BODY = """
    threadgroup T buf[32];
    threadgroup float tile[2][32];
    const uint lid = thread_index_in_threadgroup;
    const uint row = threadgroup_position_in_grid.y;
    fill(buf, x[row * 32 + lid], lid);
    fill(tile[1], float(x[row * 32 + lid]) * 2.0f, lid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const T total = tree_sum(buf, lid, 32);
    const float doubled = tree_sum(tile[1], lid, 32);
    threadgroup float* half_row = &tile[1][0] + 16;
    if (lid == 0) {
        out[3 * row] = float(total);
        out[3 * row + 1] = doubled;
        out[3 * row + 2] = sizeof(buf) + sizeof(tile[0]) + half_row[0] * 0.0f;
    }
"""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds_check", [True, False])
def test_helper_templates_take_threadgroup_arrays(dtype, bounds_check):
    x = random((4, 32), dtype, 400)
    k = host.metal_kernel("tg_template", ["x"], ["out"], TEMPLATE_BODY, header=TEMPLATE_HEADER,
                          bounds_check=bounds_check)
    (out,) = k(inputs=[x], template=[("T", dtype)], grid=(32, 4, 1), threadgroup=(32, 1, 1),
               output_shapes=[(4, 3)], output_dtypes=[mx.float32])
    got, rows = np.asarray(out), as_f64(x).sum(1)
    assert rel_err(got[:, 0], rows) < TOL[dtype]
    assert rel_err(got[:, 1], 2 * rows) < TOL[dtype]
    np.testing.assert_array_equal(got[:, 2], 32 * x.itemsize + 32 * 4)


def test_helper_template_overrun_is_reported_in_the_array():
    body = TEMPLATE_BODY.replace("tree_sum(buf, lid, 32)", "tree_sum(buf, lid, 64)")
    k = host.metal_kernel("tg_template_overrun", ["x"], ["out"], body, header=TEMPLATE_HEADER)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[random((4, 32), mx.float32, 401)], template=[("T", mx.float32)], grid=(32, 4, 1),
          threadgroup=(32, 1, 1), output_shapes=[(4, 3)], output_dtypes=[mx.float32])
    assert (error.value.buffer, error.value.index, error.value.size) == ("buf", 32, 32)


def mappings() -> int:
    """How many memory mappings this process has (Linux: lines of /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts mappings through Linux's /proc")
def test_fiber_stacks_are_released_after_each_launch():
    """Each loaded kernel library has its own fiber stacks, each above a guard page of its own mapping: kept after a
    launch, a few hundred 1024-thread kernels would use up the process's mappings (vm.max_map_count, 65530 by
    default) and loading the next fails. Three distinct kernels of 1024 threads leave few mappings behind."""
    x = random((1024,), mx.float32, 5)
    before = mappings()
    for i in range(3):
        k = host.metal_kernel(f"barrier_{i}", ["x"], ["out"], f"""
            threadgroup float buf[1024];
            buf[thread_index_in_threadgroup] = x[thread_position_in_grid.x] + {i};
            threadgroup_barrier(mem_flags::mem_threadgroup);
            out[thread_position_in_grid.x] = buf[1023 - thread_index_in_threadgroup];""")
        (out,) = k(inputs=[x], grid=(1024, 1, 1), threadgroup=(1024, 1, 1), output_shapes=[(1024,)],
                   output_dtypes=[mx.float32])
        np.testing.assert_array_equal(np.asarray(out), as_f64(x)[::-1].astype(np.float32) + i)
    assert mappings() - before < 3 * 100, f"{mappings() - before} mappings added by 3 kernels"
