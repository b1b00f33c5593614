"""Every thread attribute MLX accepts, against a NumPy model of Metal's dispatchThreads."""

import functools

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host
from msl_host.translate import ATTRIBUTES

VECTORS = ["thread_position_in_grid", "threads_per_grid", "grid_size", "grid_origin",
           "thread_position_in_threadgroup", "threads_per_threadgroup", "dispatch_threads_per_threadgroup",
           "threadgroup_position_in_grid", "threadgroups_per_grid"]
SCALARS = ["thread_index_in_threadgroup", "thread_index_in_simdgroup", "simdgroup_index_in_threadgroup",
           "threads_per_simdgroup", "thread_execution_width", "simdgroups_per_threadgroup",
           "dispatch_simdgroups_per_threadgroup", "thread_index_in_quadgroup", "quadgroup_index_in_threadgroup",
           "quadgroups_per_threadgroup", "dispatch_quadgroups_per_threadgroup"]
COLUMNS = {name: slice(3 * i, 3 * i + 3) for i, name in enumerate(VECTORS)}
COLUMNS.update({name: 3 * len(VECTORS) + i for i, name in enumerate(SCALARS)})
WIDTH = 3 * len(VECTORS) + len(SCALARS)

SOURCE = "uint3 p = thread_position_in_grid;\nuint at = ((p.z * threads_per_grid.y + p.y) * threads_per_grid.x + p.x) * WIDTH;\n" + "".join(
    f"out[at + {3 * i + c}] = {name}.{'xyz'[c]};\n" for i, name in enumerate(VECTORS) for c in range(3)) + "".join(
    f"out[at + {3 * len(VECTORS) + i}] = {name};\n" for i, name in enumerate(SCALARS))

CONFIGS = [((70, 5, 3), (16, 4, 2)), ((100, 1, 1), (256, 1, 1)), ((40, 3, 1), (32, 2, 1)), ((7, 9, 2), (3, 4, 1))]


def test_the_lists_cover_every_attribute_mlx_accepts():
    assert sorted(VECTORS + SCALARS) == sorted(ATTRIBUTES)


@functools.cache
def run(grid, threadgroup):
    """Attribute values per thread, shape (gz, gy, gx, WIDTH)."""
    k = host.metal_kernel("attributes", ["inp"], ["out"], SOURCE)
    n = int(np.prod(grid))
    (out,) = k(inputs=[mx.ones((1,))], output_shapes=[(n * WIDTH,)], output_dtypes=[mx.uint32],
               grid=grid, threadgroup=threadgroup, template=[("WIDTH", WIDTH)], init_value=7777)
    return np.asarray(out).reshape(grid[2], grid[1], grid[0], WIDTH)


def model(grid, threadgroup):
    """The expected value of every attribute for every thread: {name: array (gz, gy, gx[, 3])}."""
    grid, tg = np.array(grid), np.array(threadgroup)
    dispatch = np.minimum(tg, grid)
    groups = -(-grid // dispatch)
    z, y, x = np.meshgrid(*(np.arange(g) for g in grid[::-1]), indexing="ij")
    pos = np.stack([x, y, z], -1)
    group = pos // dispatch
    local = pos % dispatch
    size = np.minimum(dispatch, grid - group * dispatch)
    index = (local[..., 2] * size[..., 1] + local[..., 1]) * size[..., 0] + local[..., 0]
    count = size.prod(-1)
    const = lambda v: np.broadcast_to(np.asarray(v), pos.shape[:3] + np.shape(v))  # noqa: E731
    return {
        "thread_position_in_grid": pos, "threads_per_grid": const(grid), "grid_size": const(grid),
        "grid_origin": const([0, 0, 0]), "thread_position_in_threadgroup": local, "threads_per_threadgroup": size,
        "dispatch_threads_per_threadgroup": const(dispatch), "threadgroup_position_in_grid": group,
        "threadgroups_per_grid": const(groups), "thread_index_in_threadgroup": index,
        "thread_index_in_simdgroup": index % 32, "simdgroup_index_in_threadgroup": index // 32,
        "threads_per_simdgroup": const(32), "thread_execution_width": const(32),
        "simdgroups_per_threadgroup": -(-count // 32), "dispatch_simdgroups_per_threadgroup": const(-(-dispatch.prod() // 32)),
        "thread_index_in_quadgroup": index % 4, "quadgroup_index_in_threadgroup": index // 4,
        "quadgroups_per_threadgroup": -(-count // 4), "dispatch_quadgroups_per_threadgroup": const(-(-dispatch.prod() // 4)),
    }


@pytest.mark.parametrize("grid, threadgroup", CONFIGS)
@pytest.mark.parametrize("name", VECTORS + SCALARS)
def test_attribute(name, grid, threadgroup):
    got = run(grid, threadgroup)[..., COLUMNS[name]]
    np.testing.assert_array_equal(got, model(grid, threadgroup)[name])


def test_each_attribute_alone_gets_its_own_parameter():
    """A body naming one attribute gets just that one (plus what its name contains, as in MLX)."""
    for name in ("thread_index_in_quadgroup", "dispatch_threads_per_threadgroup"):
        k = host.metal_kernel("one_attr", ["inp"], ["out"], f"out[thread_position_in_grid.x] = inp[0] + float({name}{'.x' if name in VECTORS else ''});")
        text = host.generated_source(k, inputs=[mx.ones((1,))], output_shapes=[(64,)], output_dtypes=[mx.float32])
        (out,) = k(inputs=[mx.full((1,), 0.5)], output_shapes=[(64,)], output_dtypes=[mx.float32],
                   grid=(64, 1, 1), threadgroup=(24, 1, 1))
        want = model((64, 1, 1), (24, 1, 1))[name]
        want = want[..., 0] if want.ndim == 4 else want
        np.testing.assert_array_equal(np.asarray(out), want.ravel() + 0.5)
        assert f"[[{name}]]" in text


def test_thread_attributes_with_edge_threadgroups():
    """Edge threadgroups are smaller; thread_index_in_threadgroup follows their own size."""
    got = run((70, 5, 3), (16, 4, 2))
    col = COLUMNS
    for z, y, x in [(0, 0, 0), (2, 4, 69), (1, 4, 64), (2, 3, 17)]:
        t = got[z, y, x]
        size = [min(16, 70 - x // 16 * 16), min(4, 5 - y // 4 * 4), min(2, 3 - z // 2 * 2)]
        local = [x % 16, y % 4, z % 2]
        assert t[col["threadgroup_position_in_grid"]].tolist() == [x // 16, y // 4, z // 2]
        assert t[col["thread_position_in_threadgroup"]].tolist() == local
        assert t[col["threads_per_threadgroup"]].tolist() == size
        assert t[col["thread_index_in_threadgroup"]] == (local[2] * size[1] + local[1]) * size[0] + local[0]
        assert t[col["dispatch_threads_per_threadgroup"]].tolist() == [16, 4, 2]
        assert t[col["threadgroups_per_grid"]].tolist() == [5, 2, 2]


def test_threadgroup_is_clipped_to_grid():
    got = run((100, 1, 1), (256, 1, 1))[0, 0]
    assert (got[:, COLUMNS["threads_per_threadgroup"]] == [100, 1, 1]).all()
    assert (got[:, COLUMNS["threadgroups_per_grid"]] == [1, 1, 1]).all()
