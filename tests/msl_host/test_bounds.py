"""Faults: out-of-bounds reads and writes, misaligned casts, divergent barriers, shuffles from inactive
lanes, too much threadgroup memory. Each is a KernelFault with a one-line message, never a crash.

To keep compiles few, most mistakes live in two kernels (one without, one with barriers and SIMD-group
functions), each choosing its mistake at run time from `mode`."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

GUIDE_EXP = """
    uint elem = thread_position_in_grid.x;
    T tmp = inp[elem];
    out[elem] = metal::exp(tmp);
"""

# Mistakes in plain kernels (the threads run one after the other).
PLAIN = """
    const uint i = thread_position_in_grid.x;
    switch (mode) {
        case 0:  // off by one: the last thread writes past the end of out
            out[i + 1] = inp[i];
            break;
        case 1:  // a negative index
            out[i] = inp[int(i) - 3 + 2 * (int(i) % 2)];
            break;
        case 2: {  // a vector view of the buffer, read one vector too far
            const device float4* v = (const device float4*)(inp + 4 * i);
            out[i] = v[0].x + v[1].w;
            break;
        }
        case 3:  // a float4 view starting one float in: misaligned
            out[i] = ((const device float4*)(inp + 1))[0].x;
            break;
        case 4:  // past the end of the shape buffer (inp has one dimension)
            out[i] = inp[i] + inp_shape[1];
            break;
        default:  // no mistake
            out[i] = inp[i];
    }
"""

# Mistakes with threadgroup memory, barriers and SIMD-group functions (threads run as fibers).
GROUPS = """
    threadgroup float buf[64];
    threadgroup float tile[4][8];
    const uint i = thread_position_in_grid.x;
    const uint lid = thread_index_in_threadgroup;
    switch (mode) {
        case 0:  // a wrong guard: threads past 40 return before the barrier
            if (i >= 40) {
                return;
            }
            threadgroup_barrier(mem_flags::mem_threadgroup);
            break;
        case 1:  // odd and even threads wait at different barriers
            if (i % 2 == 0) {
                threadgroup_barrier(mem_flags::mem_threadgroup);
            } else {
                threadgroup_barrier(mem_flags::mem_device);
            }
            break;
        case 2:  // lane 4 reads lane 5, which has returned
            if (thread_index_in_simdgroup == 5) {
                return;
            }
            out[i] = simd_shuffle_down(inp[i], ushort(1));
            return;
        case 3:  // with 40 threads, lanes 8..31 of the second SIMD group do not exist
            out[i] = simd_shuffle_xor(inp[i], ushort(8));
            return;
        case 4:  // after the barrier, thread 31 reads buf[64]
            buf[lid] = inp[i];
            threadgroup_barrier(mem_flags::mem_threadgroup);
            out[i] = buf[lid + 33];
            return;
        case 5:  // tile[0][8]: the second index is checked against its own dimension
            tile[i % 4][i % 9] = inp[i];
            break;
        case 6: {  // a pointer into buf, 16 elements in, indexed up to 47
            threadgroup float* p = buf + 16;
            p[lid] = inp[i];
            break;
        }
        case 7:  // buf is never written: threadgroup memory starts as NaN
            out[i] = buf[lid];
            return;
    }
    out[i] = inp[i];
"""


def run(source, mode, n=64, threadgroup=32, source_name=None, **options):
    """Run a kernel of this file (input inp, output out of n floats) in `mode`; return the output."""
    k = host.metal_kernel("mistakes", ["inp", "mode"], ["out"], source, source_name=source_name, **options)
    x = mx.random.normal((n,), key=mx.random.key(n))
    (out,) = k(inputs=[x, mx.array(mode, mx.int32)], grid=(n, 1, 1), threadgroup=(threadgroup, 1, 1),
               output_shapes=[(n,)], output_dtypes=[mx.float32])
    return x, out


def fault(source, mode, **kwargs):
    """The KernelFault a kernel of this file raises in `mode`."""
    with pytest.raises(host.KernelFault) as error:
        run(source, mode, **kwargs)
    return error.value


def test_out_of_bounds_read():
    """The guide's exp kernel launched with one thread too many reads inp[1000]."""
    k = host.metal_kernel("myexp", ["inp"], ["out"], GUIDE_EXP)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[mx.random.normal((1000,), key=mx.random.key(0))], template=[("T", mx.float32)],
          grid=(1001, 1, 1), threadgroup=(256, 1, 1), output_shapes=[(1000,)], output_dtypes=[mx.float32])
    e = error.value
    assert str(e) == ("kernel `myexp`: out-of-bounds access to `inp` at element 1000 (it holds 1000 elements, "
                      "valid 0..999) by thread (1000, 0, 0) = threadgroup (3, 0, 0), thread (232, 0, 0) in the "
                      "threadgroup")
    assert (e.kernel, e.kind, e.buffer, e.index, e.size, e.valid) == ("myexp", "out of bounds", "inp", 1000, 1000, (0, 999))
    assert (e.thread, e.threadgroup, e.thread_in_threadgroup) == ((1000, 0, 0), (3, 0, 0), (232, 0, 0))
    assert isinstance(e, RuntimeError)


def test_out_of_bounds_write():
    e = fault(PLAIN, 0, n=100)
    assert str(e) == ("kernel `mistakes`: out-of-bounds access to `out` at element 100 (it holds 100 elements, "
                      "valid 0..99) by thread (99, 0, 0) = threadgroup (3, 0, 0), thread (3, 0, 0) in the "
                      "threadgroup")


def test_negative_index_and_the_first_faulting_thread_is_reported():
    e = fault(PLAIN, 1)
    assert (e.buffer, e.index, e.thread) == ("inp", -3, (0, 0, 0))


def test_vector_cast_stays_checked():
    e = fault(PLAIN, 2, n=16, threadgroup=16)
    # indices and sizes count the accessed type: 16 floats are 4 float4s
    assert (e.buffer, e.index, e.size, e.valid, e.thread) == ("inp", 4, 4, (0, 3), (3, 0, 0))
    assert "`inp` at element 4 (it holds 4 elements, valid 0..3)" in str(e)


def test_misaligned_vector_cast():
    e = fault(PLAIN, 3, n=16, threadgroup=16)
    assert e.kind == "misaligned" and e.buffer == "inp" and e.index == 4
    assert "misaligned pointer into `inp` at byte offset 4: its type needs 16-byte alignment" in str(e)


def test_shape_buffer_is_checked_too():
    e = fault(PLAIN, 4, n=8)
    assert (e.buffer, e.index, e.size) == ("inp_shape", 1, 1)


def test_a_correct_run_and_the_unchecked_mode():
    for checked in (True, False):
        x, out = run(PLAIN, 99, bounds_check=checked)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    x, out = run(GROUPS, 99, bounds_check=False)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def test_strided_view_bounds_are_the_span_it_covers():
    base = mx.random.normal((10, 6), key=mx.random.key(2))
    view = base[2:8:2, 1:4]  # 3 x 3, rows 12 floats apart: 27 elements span 0..26
    source = "uint i = thread_position_in_grid.x;\nout[i] = inp[i * 14];\n"  # 28 for the last thread
    k = host.metal_kernel("span", ["inp"], ["out"], source, ensure_row_contiguous=False)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[view], grid=(3, 1, 1), threadgroup=(3, 1, 1), output_shapes=[(3,)], output_dtypes=[mx.float32])
    assert (error.value.index, error.value.valid, error.value.thread) == (28, (0, 26), (2, 0, 0))
    reversed_view = base[::-1, 0]  # stride -6: elements -54..0 relative to the first one
    source = "uint i = thread_position_in_grid.x;\nout[i] = inp[-int(i) * 6] + inp[6];\n"
    k = host.metal_kernel("span_reversed", ["inp"], ["out"], source, ensure_row_contiguous=False)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[reversed_view], grid=(10, 1, 1), threadgroup=(10, 1, 1), output_shapes=[(10,)],
          output_dtypes=[mx.float32])
    assert (error.value.index, error.value.valid) == (6, (-54, 0))


def test_barrier_after_an_early_return():
    e = fault(GROUPS, 0, source_name="shaders/mistakes.metal")
    assert e.kind == "divergent barrier" and e.source == "shaders/mistakes.metal:11" and e.threadgroup == (1, 0, 0)
    assert str(e) == ("kernel `mistakes`: divergent threadgroup_barrier at shaders/mistakes.metal:11 in threadgroup "
                      "(1, 0, 0): 8 of 32 threads wait at this threadgroup_barrier; thread (8, 0, 0) in the "
                      "threadgroup returned")


def test_threads_at_different_barriers():
    e = fault(GROUPS, 1, source_name="b.metal")
    assert e.source == "b.metal:15"
    assert "thread (1, 0, 0) in the threadgroup waits at another threadgroup_barrier at b.metal:17" in str(e)


def test_shuffle_from_an_inactive_lane():
    e = fault(GROUPS, 2, source_name="s.metal")
    assert e.kind == "inactive lane" and e.thread == (4, 0, 0) and e.source == "s.metal:24"
    assert "simd_shuffle_down reads lane 5, which is not an active lane" in str(e)


def test_shuffle_past_a_partial_simd_group():
    e = fault(GROUPS, 3, n=40, threadgroup=40)
    assert e.thread == (32, 0, 0) and "reads lane 8" in str(e)


def test_fault_inside_a_fiber_names_the_thread():
    e = fault(GROUPS, 4, n=128, threadgroup=64)
    assert (e.buffer, e.index, e.thread, e.threadgroup, e.thread_in_threadgroup) == \
        ("buf", 64, (31, 0, 0), (0, 0, 0), (31, 0, 0))


def test_threadgroup_array_index_is_checked_per_dimension():
    e = fault(GROUPS, 5)
    assert str(e).startswith("kernel `mistakes`: out-of-bounds access to threadgroup array `tile[0]` at element 8 "
                             "(it holds 8 elements, valid 0..7) by thread (8, 0, 0)")


def test_threadgroup_pointer_is_checked():
    e = fault(GROUPS, 6, n=64, threadgroup=64)
    assert (e.buffer, e.index, e.size, e.thread) == ("buf", 64, 64, (48, 0, 0))


def test_uninitialised_threadgroup_memory_reads_as_nan():
    _, out = run(GROUPS, 7)
    assert np.isnan(np.asarray(out)).all()


def test_too_much_threadgroup_memory():
    source = "threadgroup float a[4096];\nthreadgroup float b[4097];\nout[0] = inp[0] + a[0] + b[0] + mode;"
    e = fault(source, 0, n=8)
    assert e.kind == "threadgroup memory" and e.buffer == "b"
    assert "`b` would end at byte 32772, past the 32768 bytes Metal gives a threadgroup" in str(e)
