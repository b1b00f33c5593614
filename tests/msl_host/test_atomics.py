"""Atomics on device outputs (atomic_outputs=True) and in threadgroup memory: every atomic_*_explicit
function, results checked to equal those of some serial order of the threads."""

import functools

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

SOURCE = """
    const uint i = thread_position_in_grid.x;
    const uint lid = thread_index_in_threadgroup;
    const int v = x[i];
    atomic_store_explicit(&olds[3 * i], atomic_fetch_add_explicit(&ints[0], v, memory_order_relaxed), memory_order_relaxed);
    atomic_store_explicit(&olds[3 * i + 1], atomic_fetch_sub_explicit(&ints[1], v, memory_order_relaxed), memory_order_relaxed);
    atomic_store_explicit(&olds[3 * i + 2], atomic_exchange_explicit(&ints[2], int(i) + 1, memory_order_relaxed), memory_order_relaxed);
    atomic_fetch_min_explicit(&ints[3], v - 500, memory_order_relaxed);
    atomic_fetch_max_explicit(&ints[4], v, memory_order_relaxed);
    atomic_fetch_or_explicit(&uints[0], 1u << (i % 32), memory_order_relaxed);
    atomic_fetch_xor_explicit(&uints[1], uint(v), memory_order_relaxed);
    atomic_fetch_add_explicit(&floats[0], float(v) * 0.5f, memory_order_relaxed);
    uint seen = atomic_load_explicit(&uints[2], memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&uints[2], &seen, seen + 3u, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }

    threadgroup atomic_uint mask;
    threadgroup atomic_int count;
    if (lid == 0) {
        atomic_store_explicit(&mask, 0xffffffffu, memory_order_relaxed);
        atomic_store_explicit(&count, 0, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    atomic_fetch_and_explicit(&mask, ~(1u << (lid % 32)), memory_order_relaxed);
    const int ticket = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    atomic_store_explicit(&tickets[i], ticket, memory_order_relaxed);
    if (lid == 0) {
        atomic_fetch_or_explicit(&uints[3], atomic_load_explicit(&mask, memory_order_relaxed), memory_order_relaxed);
        atomic_fetch_add_explicit(&uints[4], uint(atomic_load_explicit(&count, memory_order_relaxed)), memory_order_relaxed);
    }
"""

N, GROUP = 300, 20  # 15 threadgroups of 20: each group's mask keeps bits 20..31


@functools.cache
def run():
    """Run the kernel once on fresh random positive ints; return x and the outputs."""
    x = np.random.default_rng(11).integers(1, 1000, N).astype(np.int32)
    k = host.metal_kernel("atomics", ["x"], ["ints", "uints", "floats", "olds", "tickets"], SOURCE,
                          atomic_outputs=True)
    outs = k(inputs=[mx.array(x)], grid=(N, 1, 1), threadgroup=(GROUP, 1, 1),
             output_shapes=[(5,), (5,), (1,), (N, 3), (N,)],
             output_dtypes=[mx.int32, mx.uint32, mx.float32, mx.int32, mx.int32], init_value=0)
    return x, [np.asarray(o) for o in outs]


def test_signature_declares_atomic_outputs():
    k = host.metal_kernel("atomics", ["x"], ["ints", "uints", "floats", "olds", "tickets"], SOURCE, atomic_outputs=True)
    text = host.generated_source(k, inputs=[mx.ones((N,), mx.int32)], output_shapes=[(5,), (5,), (1,), (N, 3), (N,)],
                                 output_dtypes=[mx.int32, mx.uint32, mx.float32, mx.int32, mx.int32])
    assert "device atomic<int32_t>* ints" in text and "device atomic<float>* floats" in text


def test_fetch_add_and_sub_follow_a_serial_order():
    x, (ints, _, _, olds, _) = run()
    order = np.argsort(olds[:, 0], kind="stable")
    np.testing.assert_array_equal(olds[order, 0], np.cumsum(x[order]) - x[order])
    order = np.argsort(-olds[:, 1], kind="stable")
    np.testing.assert_array_equal(olds[order, 1], -(np.cumsum(x[order]) - x[order]))
    assert ints[0] == x.sum() and ints[1] == -x.sum()


def test_exchange_passes_each_value_on_once():
    _, (ints, _, _, olds, _) = run()
    assert sorted(olds[:, 2].tolist() + [ints[2]]) == list(range(N + 1))


def test_min_max_or_xor_and_float_add():
    x, (ints, uints, floats, _, _) = run()
    assert ints[3] == min(0, (x - 500).min()) and ints[4] == x.max()
    assert uints[0] == 0xffffffff and uints[1] == np.bitwise_xor.reduce(x.astype(np.uint32))
    assert floats[0] == (x * 0.5).sum()


def test_compare_exchange_loop():
    _, (_, uints, _, _, _) = run()
    assert uints[2] == 3 * N


def test_threadgroup_atomics():
    _, (_, uints, _, _, tickets) = run()
    assert uints[3] == 0xfff00000  # and-ed within each group of 20 lanes, or-ed across groups
    assert uints[4] == N
    for g in range(N // GROUP):
        assert sorted(tickets[g * GROUP:(g + 1) * GROUP]) == list(range(GROUP))


def test_atomic_type_is_layout_compatible_and_non_atomic_access_fails_to_compile():
    k = host.metal_kernel("plain_store", ["x"], ["out"], "out[thread_position_in_grid.x] = x[0];", atomic_outputs=True)
    with pytest.raises(host.HostCompileError):
        k(inputs=[mx.ones((8,))], grid=(8, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(8,)],
          output_dtypes=[mx.float32], init_value=0)
