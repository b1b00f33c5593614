"""Tests of moe_reduce.diagrams: the thread → data maps the notebooks draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from moe_reduce.diagrams import draw_row_reduction, draw_thread_map, row_pieces, thread_cells  # noqa: E402


@pytest.mark.parametrize("n_tokens,top_k,h,w", [(2, 3, 8, 1), (2, 3, 8, 4), (3, 2, 10, 4), (1, 1, 1, 8)])
def test_every_cell_touched_by_exactly_one_thread(n_tokens, top_k, h, w):
    threads = thread_cells(n_tokens, top_k, h, w)
    assert len(threads) == n_tokens * -(-h // w)
    reads = [cell for th in threads for cell in th["reads"]]
    writes = [cell for th in threads for cell in th["writes"]]
    assert sorted(reads) == [(r, c) for r in range(n_tokens * top_k) for c in range(h)]
    assert sorted(writes) == [(t, c) for t in range(n_tokens) for c in range(h)]


def test_scalar_thread_i_makes_output_i():
    for th in thread_cells(2, 3, 8):
        t, h = divmod(th["i"], 8)
        assert th["writes"] == [(t, h)] and th["reads"] == [(t * 3 + k, h) for k in range(3)]


def test_vec_tail_thread_is_short():
    last = thread_cells(1, 2, 10, 4)[-1]
    assert last["cols"] == [8, 9]


def test_bad_sizes():
    with pytest.raises(ValueError, match="expected all >= 1"):
        thread_cells(0, 3, 8)


def test_draw_thread_map_has_two_panels_and_titles():
    fig = draw_thread_map()
    assert len(fig.axes) == 2 and "T=2, K=3, H=8" in fig.get_suptitle()
    assert all(ax.get_title(loc="left") for ax in fig.axes)
    plt.close(fig)


def test_row_pieces_follow_the_fused_kernels_stride():
    # h = 1024 float32 in 16-byte pieces of 4, 128 threads: two passes, thread i takes pieces i and i + 128.
    owner = row_pieces(1024, 4, 128)
    assert len(owner) == 256 and owner[:3] == [0, 1, 2] and owner[128] == 0 and owner[-1] == 127
    assert row_pieces(257, 1, 288)[-1] == 256 and len(row_pieces(10, 4, 32)) == 3
    with pytest.raises(ValueError, match="expected all >= 1"):
        row_pieces(8, 0, 32)


def test_draw_row_reduction_names_the_groups_and_the_barrier():
    fig = draw_row_reduction(threads=128)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "4 SIMD groups" in fig.axes[0].get_title() and "SIMD group 3" in texts and "partial[3]" in texts
    assert "threadgroup_barrier" in texts and min(t.get_fontsize() for t in fig.axes[0].texts) >= 8
    plt.close(fig)


def test_roofline_figure_draws_each_card_and_point():
    from moe_reduce.machine import DATASHEET_PEAKS
    from moe_reduce.plots import roofline_figure

    fig = roofline_figure(DATASHEET_PEAKS, {"combine, float32": 0.432})
    ax = fig.axes[0]
    roofs = [ln for ln in ax.lines if ln.get_label().startswith(("H100", "H200"))]
    assert len(roofs) == 2 and max(roofs[1].get_ydata()) == 67  # the flat roof: 67 TFLOP/s
    assert {t.get_text() for t in ax.texts} >= {"combine, float32", "balance 20 flop/byte", "balance 14 flop/byte"}


def test_fused_time_figure_draws_each_implementation_in_its_colour():
    from moe_reduce import plots, results

    runs = [r for r in results.load_runs(results.find_results()) if r.meta.get("op") == "fused"][:2]
    fig = plots.fused_time_figure({f"card {i}": r for i, r in enumerate(runs)}, "float32", 2048, 8)
    assert len(fig.axes) == 2 * len(runs)
    lines = {ln.get_label(): ln.get_color() for ln in fig.axes[0].lines}
    assert lines == {label: plots.COLORS[impl] for impl, label in plots.FUSED_LABELS.items()}
    bands = [c.get_facecolor()[0][:3] for c in fig.axes[0].collections]
    n = len(plots.FUSED_LABELS)
    assert len(bands) == n and len({tuple(b) for b in bands}) == n  # one band per line, in the line's colour


def test_draw_mlx_lm_layer_names_what_each_patch_replaces():
    from moe_reduce.diagrams import draw_mlx_lm_layer

    fig = draw_mlx_lm_layer()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for name in ("(y * scores[..., None])", "sigmoid(g) * shared", "moe_weighted_reduce", "moe_combine",
                 "post_attention_", "layer i+1"):
        assert name in texts
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 9
    plt.close(fig)
