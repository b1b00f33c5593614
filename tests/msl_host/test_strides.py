"""ensure_row_contiguous=False: the kernel gets MLX's real strides and a pointer to the view's first
element, as on Metal; True: a row-contiguous copy when needed."""

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

# Each thread reports the input's strides, shape and ndim, and reads its element through elem_to_loc
# (in int64_t: with uint, as elem_to_loc(i, ...) with a uint i gives, negative strides wrap around and
# the bounds check reports an access 2^32 elements away, as it would be on a GPU).
SOURCE = """
    uint i = thread_position_in_grid.x;
    out[i * 4] = x[elem_to_loc(int64_t(i), x_shape, x_strides, x_ndim)];
    out[i * 4 + 1] = i < uint(x_ndim) ? float(x_strides[i]) : -1.0f;
    out[i * 4 + 2] = i < uint(x_ndim) ? float(x_shape[i]) : -1.0f;
    out[i * 4 + 3] = x_ndim;
"""


def views():
    """Non-contiguous views of a random array: transposed, sliced, reversed, broadcast, offset."""
    base = mx.random.normal((6, 10), key=mx.random.key(0))
    return {"transposed": base.T, "sliced": base[1:5, 2:9:3], "reversed": base[::-1, ::-2],
            "broadcast": mx.broadcast_to(base[2], (4, 10)), "offset_rows": base[3:], "3d": base.reshape(2, 3, 10)[:, ::2].T}


@pytest.mark.parametrize("name", list(views()))
@pytest.mark.parametrize("contiguous", [False, True])
def test_real_strides_are_passed(name, contiguous):
    view = views()[name]
    k = host.metal_kernel("strides", ["x"], ["out"], SOURCE, ensure_row_contiguous=contiguous)
    (out,) = k(inputs=[view], grid=(view.size, 1, 1), threadgroup=(32, 1, 1), output_shapes=[(view.size, 4)],
               output_dtypes=[mx.float32])
    got = np.asarray(out)
    np.testing.assert_array_equal(got[:, 0], np.asarray(view).ravel())
    seen = np.asarray(view)
    strides = np.ascontiguousarray(seen).strides if contiguous else seen.strides
    ndim = view.ndim
    np.testing.assert_array_equal(got[:ndim, 1], [s // 4 for s in strides])
    np.testing.assert_array_equal(got[:ndim, 2], view.shape)
    assert (got[:, 3] == ndim).all()


def test_negative_strides_with_a_uint_index_fault():
    k = host.metal_kernel("strides_uint", ["x"], ["out"], SOURCE.replace("int64_t(i)", "i"), ensure_row_contiguous=False)
    view = views()["reversed"]
    with pytest.raises(host.KernelFault, match="at element 4294967294"):
        k(inputs=[view], grid=(view.size, 1, 1), threadgroup=(32, 1, 1), output_shapes=[(view.size, 4)],
          output_dtypes=[mx.float32])


def test_2d_grid_with_shape_strides_ndim():
    source = """
        uint2 p = uint2(thread_position_in_grid.x, thread_position_in_grid.y);
        uint elem = p.y * inp_shape[1] + p.x;
        out[elem] = inp[elem_to_loc(elem, inp_shape, inp_strides, inp_ndim)] + 1000 * inp_ndim;
    """
    x = mx.random.normal((7, 12), key=mx.random.key(1)).T  # (12, 7), not row-contiguous
    for contiguous in (True, False):
        k = host.metal_kernel("strided2d", ["inp"], ["out"], source, ensure_row_contiguous=contiguous)
        (out,) = k(inputs=[x], output_shapes=[x.shape], output_dtypes=[mx.float32],
                   grid=(7, 12, 1), threadgroup=(4, 4, 1))
        np.testing.assert_allclose(np.asarray(out), np.asarray(x) + 2000, rtol=1e-6)


def test_uint3_elem_to_loc_and_fixed_dims():
    source = """
        uint3 p = thread_position_in_grid;
        uint at = (p.z * x_shape[1] + p.y) * x_shape[2] + p.x;
        out[at] = x[elem_to_loc(p, x_shape, x_strides, x_ndim)] + x[elem_to_loc_3(p, x_strides)];
    """
    x = mx.random.normal((5, 4, 3), key=mx.random.key(2)).transpose(2, 0, 1)  # (3, 5, 4)
    k = host.metal_kernel("loc3", ["x"], ["out"], source, ensure_row_contiguous=False)
    (out,) = k(inputs=[x], output_shapes=[x.shape], output_dtypes=[mx.float32], grid=(4, 5, 3),
               threadgroup=(4, 2, 2))
    np.testing.assert_array_equal(np.asarray(out), 2 * np.asarray(x))


# A float4 view of an input passed as MLX holds it (ensure_row_contiguous=False): Metal buffers start
# 16-byte aligned, so the cast is aligned; one float further in, it is not.
VECTOR_VIEW = """
    uint i = thread_position_in_grid.x;
    const device float4* v = (const device float4*)(x + SHIFT);
    out[i] = dot(v[i], float4(1.0f, 10.0f, 100.0f, 1000.0f));
"""


@pytest.mark.parametrize("name", ["contiguous", "transposed", "reversed"])
def test_vector_cast_of_an_input_as_mlx_holds_it(name):
    base = mx.random.normal((8, 12), key=mx.random.key(3))
    view = {"contiguous": base, "transposed": base.T, "reversed": base[::-1, ::-1]}[name]
    k = host.metal_kernel("vector_view", ["x"], ["out"], VECTOR_VIEW, ensure_row_contiguous=False)
    (out,) = k(inputs=[view], template=[("SHIFT", 0 if name != "reversed" else -95)], grid=(24, 1, 1),
               threadgroup=(8, 1, 1), output_shapes=[(24,)], output_dtypes=[mx.float32])
    memory = np.asarray(base).reshape(24, 4)  # the bytes the view spans, in memory order
    np.testing.assert_allclose(np.asarray(out), memory @ np.array([1, 10, 100, 1000], np.float32), rtol=1e-6)


def test_vector_cast_one_float_in_is_misaligned():
    k = host.metal_kernel("vector_view", ["x"], ["out"], VECTOR_VIEW, ensure_row_contiguous=False)
    with pytest.raises(host.KernelFault) as error:
        k(inputs=[mx.random.normal((8, 12), key=mx.random.key(4)).T], template=[("SHIFT", 1)], grid=(20, 1, 1),
          threadgroup=(8, 1, 1), output_shapes=[(20,)], output_dtypes=[mx.float32])
    assert (error.value.kind, error.value.buffer, error.value.index) == ("misaligned", "x", 4)
