"""Every SIMD-group and quad-group function against a NumPy model of its semantics: 32 lanes per SIMD group
(thread_index_in_threadgroup / 32), quads of 4, over the active lanes (those taking part in the call)."""

import functools

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

# Collectives: the last threadgroup has 22 threads, its SIMD group's lanes 22..31 do not exist.
# Shuffles: full SIMD groups, so that every lane they read exists.
SIZES = {"collectives": 150, "shuffles": 128}
GROUP = 64

# Functions whose result depends only on the active lanes: reductions, prefixes, votes.
COLLECTIVES = {
    "sum": "float(P_sum(v))", "product": "P_product(p)", "min": "float(P_min(v))", "max": "float(P_max(v))",
    "and": "float(P_and(v))", "or": "float(P_or(v))", "xor": "float(P_xor(v))",
    "prefix_inclusive_sum": "float(P_prefix_inclusive_sum(v))",
    "prefix_exclusive_sum": "float(P_prefix_exclusive_sum(v))",
    "prefix_inclusive_product": "P_prefix_inclusive_product(p)",
    "prefix_exclusive_product": "P_prefix_exclusive_product(p)",
    "broadcast_first": "float(P_broadcast_first(v))", "is_first": "float(P_is_first())",
    "all": "float(P_all(v > -40))", "any": "float(P_any(v > 45))",
    "ballot": "float(uint(ulong(P_ballot(v > 0))) & 0xffffu) + 65536.0f * float(uint(ulong(P_ballot(v > 0))) >> 16)",
    "active_threads_mask": "float(uint(ulong(P_active_threads_mask())) & 0xffffu) + 65536.0f * float(uint(ulong(P_active_threads_mask())) >> 16)",
    "vote_all_any": "float(P_ballot(v > -45).all()) + 2.0f * float(P_ballot(v > 48).any())",
}
# Shuffles, all lanes active (a lane reading an inactive one is a fault: see test_bounds.py).
SHUFFLES = {
    "shuffle": "P_shuffle(v, ushort((lane * 7 + 3) % W))", "broadcast": "P_broadcast(v, ushort(W / 2 + 1))",
    "shuffle_down": "P_shuffle_down(v, ushort(3 % W))", "shuffle_up": "P_shuffle_up(v, ushort(5 % W))",
    "shuffle_xor": "P_shuffle_xor(v, ushort(6 % W))", "shuffle_rotate_down": "P_shuffle_rotate_down(v, ushort(7))",
    "shuffle_rotate_up": "P_shuffle_rotate_up(v, ushort(9))",
    "shuffle_and_fill_down": "P_shuffle_and_fill_down(v, w, ushort(5 % W))",
    "shuffle_and_fill_up": "P_shuffle_and_fill_up(v, w, ushort(3 % W))",
    "shuffle_and_fill_down_modulo": "P_shuffle_and_fill_down(v, w, ushort(1), ushort(W / 2))",
    "shuffle_and_fill_up_modulo": "P_shuffle_and_fill_up(v, w, ushort(1), ushort(W / 2))",
}
PREFIXES = {"simd": 32, "quad": 4}


def kernel_source(table):
    """A body calling every function of `table` for both prefixes, lanes with act[i] == 0 returning first."""
    lines = ["const uint i = thread_position_in_grid.x;", "if (act[i] == 0) return;",
             "const int v = x[i];", "const int w = -x[i] - 1000;", "const float p = (v & 1) ? 2.0f : 1.0f;"]
    col = 0
    for prefix, width in PREFIXES.items():
        lane = "thread_index_in_simdgroup" if prefix == "simd" else "thread_index_in_quadgroup"
        lines.append(f"{{ const uint lane = {lane}; constexpr uint W = {width}; (void)lane;")
        for expr in table.values():
            lines.append(f"  out[i * {2 * len(table)} + {col}] = float({expr.replace('P_', prefix + '_')});")
            col += 1
        lines.append("}")
    return "\n".join(lines)


@functools.cache
def run(table_name, active_kind):
    """Run the kernel for a table on random ints with an active-lane pattern; return x, act and the results."""
    table = {"collectives": COLLECTIVES, "shuffles": SHUFFLES}[table_name]
    n = SIZES[table_name]
    rng = np.random.default_rng(len(table_name) * 10 + active_kind)
    x = rng.integers(-50, 51, n).astype(np.int32)
    lane = np.arange(n) % GROUP % 32
    act = {0: np.ones(n, bool), 1: lane % 3 != 1, 2: lane < 20}[active_kind]
    k = host.metal_kernel(f"simd_{table_name}", ["x", "act"], ["out"], kernel_source(table))
    (out,) = k(inputs=[mx.array(x), mx.array(act.astype(np.int32))], grid=(n, 1, 1), threadgroup=(GROUP, 1, 1),
               output_shapes=[(n, 2 * len(table))], output_dtypes=[mx.float32], init_value=-12345)
    return x, act, np.asarray(out)


def lanes_of(i, width, n):
    """Thread indices in the grid of the group of `width` lanes that thread i belongs to (existing ones)."""
    group_start = i // GROUP * GROUP
    first = group_start + (i - group_start) // width * width
    return [j for j in range(first, first + width) if j < min(n, group_start + GROUP)]


def model_collective(name, x, act, i, width):
    """NumPy model of one collective for thread i."""
    lanes = [j for j in lanes_of(i, width, len(x)) if act[j]]
    vals = x[lanes].astype(np.int64)
    p = np.where(x[lanes] & 1, 2.0, 1.0)
    before = lanes.index(i)
    base = lanes_of(i, width, len(x))[0] if width == 4 else i // GROUP * GROUP + (i % GROUP) // 32 * 32

    def bits(sel):
        return sum(1 << (j - base) for j in sel)

    return {
        "sum": vals.sum(), "product": p.prod(), "min": vals.min(), "max": vals.max(),
        "and": np.bitwise_and.reduce(vals), "or": np.bitwise_or.reduce(vals), "xor": np.bitwise_xor.reduce(vals),
        "prefix_inclusive_sum": vals[:before + 1].sum(), "prefix_exclusive_sum": vals[:before].sum(),
        "prefix_inclusive_product": p[:before + 1].prod(), "prefix_exclusive_product": p[:before].prod(),
        "broadcast_first": vals[0], "is_first": float(before == 0),
        "all": float((vals > -40).all()), "any": float((vals > 45).any()),
        "ballot": bits([j for j in lanes if x[j] > 0]), "active_threads_mask": bits(lanes),
        "vote_all_any": float((vals > -45).all()) + 2.0 * float((vals > 48).any()),
    }[name]


def model_shuffle(name, x, i, width):
    """NumPy model of one shuffle for thread i (all lanes active, full groups)."""
    lanes = lanes_of(i, width, len(x))
    data, fill = x[lanes], -x[lanes] - 1000
    lane = lanes.index(i)

    def fill_down(delta, m):
        k, start = lane % m, lane - lane % m
        return data[start + k + delta] if k + delta < m else fill[start + k + delta - m]

    def fill_up(delta, m):
        k, start = lane % m, lane - lane % m
        return data[start + k - delta] if k >= delta else fill[start + m - delta + k]

    w = width
    return {
        "shuffle": data[(lane * 7 + 3) % w], "broadcast": data[w // 2 + 1],
        "shuffle_down": data[lane + 3 % w] if lane + 3 % w < w else data[lane],
        "shuffle_up": data[lane - 5 % w] if lane >= 5 % w else data[lane],
        "shuffle_xor": data[lane ^ (6 % w)], "shuffle_rotate_down": data[(lane + 7) % w],
        "shuffle_rotate_up": data[(lane - 9) % w], "shuffle_and_fill_down": fill_down(5 % w, w),
        "shuffle_and_fill_up": fill_up(3 % w, w), "shuffle_and_fill_down_modulo": fill_down(1, w // 2),
        "shuffle_and_fill_up_modulo": fill_up(1, w // 2),
    }[name]


@pytest.mark.parametrize("active_kind", [0, 1, 2])
@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", COLLECTIVES)
def test_collective(name, prefix, active_kind):
    x, act, out = run("collectives", active_kind)
    col = list(PREFIXES).index(prefix) * len(COLLECTIVES) + list(COLLECTIVES).index(name)
    width = PREFIXES[prefix]
    for i in range(len(x)):
        if act[i]:
            assert out[i, col] == model_collective(name, x, act, i, width), (i, name)
        else:
            assert out[i, col] == -12345  # a lane that returned writes nothing


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", SHUFFLES)
def test_shuffle(name, prefix):
    x, act, out = run("shuffles", 0)
    col = list(PREFIXES).index(prefix) * len(SHUFFLES) + list(SHUFFLES).index(name)
    for i in range(len(x)):
        assert out[i, col] == model_shuffle(name, x, i, PREFIXES[prefix]), (i, name)


def test_shuffles_among_active_lanes_only():
    """Lanes 2k and 2k+1 take part together or not at all: xor-1 shuffles read only active lanes."""
    source = """
        const uint i = thread_position_in_grid.x;
        if ((thread_index_in_simdgroup / 2) % 3 == 0) return;
        out[2 * i] = simd_shuffle_xor(x[i], ushort(1));
        out[2 * i + 1] = quad_shuffle_xor(x[i], ushort(1)) + 1000 * quad_sum(1);
    """
    rng = np.random.default_rng(9)
    x = rng.integers(-50, 51, 64).astype(np.int32)
    k = host.metal_kernel("xor_pairs", ["x"], ["out"], source)
    (out,) = k(inputs=[mx.array(x)], grid=(64, 1, 1), threadgroup=(64, 1, 1), output_shapes=[(64, 2)],
               output_dtypes=[mx.int32], init_value=-7)
    lane = np.arange(64) % 32
    active = (lane // 2) % 3 != 0
    quad_active = np.array([active[i // 4 * 4:i // 4 * 4 + 4].sum() for i in range(64)])
    want = np.stack([x[np.arange(64) ^ 1], x[np.arange(64) ^ 1] + 1000 * quad_active], 1)
    np.testing.assert_array_equal(np.asarray(out)[active], want[active])
    assert (np.asarray(out)[~active] == -7).all()


def test_reductions_of_vectors_half_and_bfloat():
    source = """
        const uint i = thread_position_in_grid.x;
        const float4 v = float4(x[i], 2.0f * x[i], -x[i], 1.0f);
        const float4 s = simd_sum(v);
        const half hs = simd_sum(half(x[i]));
        const bfloat bs = simd_sum(bfloat(x[i]));
        const float4 mx4 = simd_max(v);
        out[i * 7 + 0] = s.x; out[i * 7 + 1] = s.y; out[i * 7 + 2] = s.w;
        out[i * 7 + 3] = float(hs); out[i * 7 + 4] = float(bs);
        out[i * 7 + 5] = mx4.z; out[i * 7 + 6] = float(simd_shuffle_xor(half4(v), ushort(1)).y);
    """
    rng = np.random.default_rng(7)
    x = (rng.integers(-64, 64, 64) / 8).astype(np.float32)
    k = host.metal_kernel("simd_vectors", ["x"], ["out"], source)
    (out,) = k(inputs=[mx.array(x)], grid=(64, 1, 1), threadgroup=(64, 1, 1), output_shapes=[(64, 7)],
               output_dtypes=[mx.float32])
    got, g = np.asarray(out), x.reshape(2, 32)
    sums = np.repeat(g.sum(1), 32)
    np.testing.assert_array_equal(got[:, 0], sums)
    np.testing.assert_array_equal(got[:, 1], 2 * sums)
    np.testing.assert_array_equal(got[:, 2], 32)
    halves = np.repeat([np.float16(0) + np.add.reduce(r.astype(np.float16), dtype=np.float16) for r in g], 32)
    np.testing.assert_array_equal(got[:, 3], halves)  # summed in half, lane by lane
    np.testing.assert_array_equal(got[:, 4], sums)  # bfloat sums in float (as MLX's bf16_math.h)
    np.testing.assert_array_equal(got[:, 5], np.repeat((-g).max(1), 32))
    np.testing.assert_array_equal(got[:, 6], 2 * x[np.arange(64) ^ 1])


def test_divergent_branches_resolve_separately():
    """Lanes in the two arms of a branch sum only among themselves, then all 32 together."""
    source = """
        const uint i = thread_position_in_grid.x;
        const uint lane = thread_index_in_simdgroup;
        float a = 0.0f;
        if (lane < 12) {
            a = simd_sum(x[i]);
        } else {
            a = 1000.0f + simd_sum(x[i]);
        }
        for (uint k = 0; k < lane % 3; ++k) {
            a += simd_sum(1.0f);
        }
        out[i] = a + 100000.0f * simd_sum(1.0f);
    """
    rng = np.random.default_rng(8)
    x = rng.integers(-9, 10, 32).astype(np.float32)
    k = host.metal_kernel("divergent", ["x"], ["out"], source)
    (out,) = k(inputs=[mx.array(x)], grid=(32, 1, 1), threadgroup=(32, 1, 1), output_shapes=[(32,)],
               output_dtypes=[mx.float32])
    lane = np.arange(32)
    arm = np.where(lane < 12, x[:12].sum(), 1000 + x[12:].sum())
    # iteration k of the loop runs with the lanes that still loop: lane % 3 > k
    loop = np.array([sum((lane % 3 > k).sum() for k in range(l % 3)) for l in lane])
    np.testing.assert_array_equal(np.asarray(out), arm + loop + 100000 * 32)
