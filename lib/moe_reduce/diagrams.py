"""Pictures for the notebooks."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch


def draw_moe_block(ax: Axes | None = None, *, dpi: int = 100) -> Figure:
    """Draw one MoE block as boxes and arrows: the router and top-k choose K experts per token, the
    experts and the shared expert run, and the combine step (this kernel, highlighted) forms
    Σ_k w·y_expert + sigmoid(sh_logit)·y_shared + residual. Draws on `ax` if given; returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(10.5, 4.6), dpi=dpi)
    else:
        fig = ax.figure
    ax.set_xlim(0, 13.2)
    ax.set_ylim(-1.2, 6.2)
    ax.set_axis_off()

    def box(x: float, y: float, text: str, w: float = 1.6, h: float = 0.75, color: str = "#dce9f7") -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05",
                                    fc=color, ec="#333333", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(x0: float, y0: float, x1: float, y1: float, label: str = "", lx: float | None = None,
              ly: float | None = None, ha: str = "center") -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1, shrinkA=0, shrinkB=0))
        if label:
            ax.text((x0 + x1) / 2 if lx is None else lx, max(y0, y1) + 0.12 if ly is None else ly, label,
                    ha=ha, va="bottom", fontsize=9, color="#1f4e79", family="monospace")

    # The combine step: the kernel this suite is about.
    cx, cw = 10.25, 2.9
    left = cx - cw / 2 - 0.05
    ax.add_patch(FancyBboxPatch((cx - cw / 2, -0.9), cw, 6.7, boxstyle="round,pad=0.05",
                                fc="#fde7c8", ec="#c55a11", lw=2))
    ax.text(cx, 5.4, "combine\n(this kernel)", ha="center", va="center", fontsize=10, weight="bold",
            color="#c55a11")
    for y, line in ((3.3, r"$\mathrm{out} = \sum_k\, w_k \cdot y_k$"),
                    (2.45, r"$+\ \sigma(\mathrm{sh\_logit}) \cdot y_\mathrm{shared}$"),
                    (1.6, r"$+\ \mathrm{residual}$")):
        ax.text(cx, y, line, ha="center", va="center", fontsize=10)

    # Input hidden state.
    box(0.75, 2.5, "x\n(T, H)", w=1.0, h=0.9, color="#eeeeee")

    # Router and top-k.
    box(2.5, 4.7, "router\nsoftmax(x·W_r)", w=1.8)
    box(4.4, 4.7, "top-k\n(K of E)")
    arrow(1.25, 2.85, 1.7, 4.3)
    arrow(3.4, 4.7, 3.6, 4.7)
    arrow(5.2, 4.7, left, 4.7, "expert_w (T, K)", lx=7.1)

    # Routed experts: each token's hidden state goes to its K chosen experts.
    ex = 5.3
    for i, y in enumerate((3.35, 3.05, 2.75)):
        box(ex + 0.12 * i, y, "", w=1.6, h=0.55, color="#dce9f7")
    ax.text(ex + 0.24, 2.75, "K experts\n(per token)", ha="center", va="center", fontsize=9)
    arrow(4.4, 4.3, 4.75, 3.65, "ids", lx=4.5, ly=3.75, ha="right")
    arrow(1.25, 2.5, ex - 0.56, 2.7)
    arrow(ex + 1.04, 2.75, left, 2.75, "y_expert (T·K, H)", lx=(ex + 1.04 + left) / 2)

    # Shared expert and its scalar gate.
    box(ex, 1.35, "shared expert")
    box(ex, 0.2, "shared gate\nx·w_g", h=0.7)
    arrow(1.25, 2.2, ex - 0.8, 1.35)
    arrow(1.25, 2.1, ex - 0.8, 0.2)
    arrow(ex + 0.8, 1.35, left, 1.35, "y_shared (T, H)")
    arrow(ex + 0.8, 0.2, left, 0.2, "sh_logit (T,)")

    # Residual: the block's input, added back.
    ax.plot([0.75, 0.75], [2.05, -0.6], color="#333333", lw=1)
    arrow(0.75, -0.6, left, -0.6, "residual (T, H)", lx=4.0)

    # Output.
    arrow(cx + cw / 2 + 0.05, 2.45, 12.35, 2.45)
    ax.text(12.75, 2.45, "out\n(T, H)", ha="center", va="center", fontsize=9)
    ax.set_title("Where the combine step sits in one MoE block (T tokens, hidden size H, top-k K of E experts)",
                 fontsize=11)
    return fig


def thread_cells(n_tokens: int, top_k: int, h: int, w: int = 1) -> list[dict]:
    """Which data each thread of the combine kernel touches, for a grid of n_tokens * ceil(h / w)
    threads (w = outputs per thread: 1 for 'scalar', 4 for 'vec' in float32). One dict per thread i:
    t, cols (the output columns it makes), reads (the (row, col) cells of y_expert it reads) and
    writes (the (t, col) cells of out it writes; y_shared and residual are read at the same cells)."""
    if min(n_tokens, top_k, h, w) < 1:
        raise ValueError(f"n_tokens, top_k, h, w: expected all >= 1, got {(n_tokens, top_k, h, w)}")
    groups = -(-h // w)
    threads = []
    for i in range(n_tokens * groups):
        t, g = divmod(i, groups)
        cols = list(range(g * w, min(g * w + w, h)))
        threads.append(dict(i=i, t=t, cols=cols,
                            reads=[(t * top_k + k, c) for k in range(top_k) for c in cols],
                            writes=[(t, c) for c in cols]))
    return threads


def draw_thread_panel(ax: Axes, n_tokens: int, top_k: int, h: int, w: int, highlight: int, title: str) -> None:
    """One panel of draw_thread_map, on any axes: thread boxes on top, y_expert and out grids below; thread
    `highlight` outlined with arrows to what it reads and writes."""
    from matplotlib.patches import Rectangle

    threads = thread_cells(n_tokens, top_k, h, w)
    cmap = plt.get_cmap("tab20" if len(threads) > 10 else "tab10")
    color = {th["i"]: cmap(th["i"] % cmap.N) for th in threads}
    rows = n_tokens * top_k
    y_top = rows + 3.2  # bottom edge of the thread boxes
    out_x = h + 2.5  # left edge of the out grid
    hl = threads[highlight]

    def cell(x: float, y: float, fc, text: str, wd: float = 1.0, bold: bool = False) -> None:
        ax.add_patch(Rectangle((x, y), wd, 1, fc=fc, ec="#555555", lw=0.6, alpha=0.6))
        ax.text(x + wd / 2, y + 0.5, text, ha="center", va="center", fontsize=8.5,
                weight="bold" if bold else "normal")

    # Threads: box i sits over the flat output positions it makes (t*h + cols).
    for th in threads:
        x0 = th["t"] * h + th["cols"][0]
        label = f"{th['i']}" if w == 1 else f"thread {th['i']}\nt={th['t']}, h={th['cols'][0]}..{th['cols'][-1]}"
        cell(x0, y_top, color[th["i"]], label, wd=len(th["cols"]), bold=th["i"] == highlight)
    ax.text(-0.3, y_top + 0.5, "threads", ha="right", va="center", fontsize=9.5)
    groups = -(-h // w)
    ax.text(n_tokens * h / 2, y_top + 1.25,
            f"i = thread_position_in_grid.x;  t = i / G,  h0 = (i % G)·W   (G = {groups}, W = {w})",
            ha="center", va="bottom", fontsize=8.5, family="monospace", color="#444444")

    # y_expert: (T·K) × H, row t·K + k; each cell shows the thread that reads it.
    who = {}
    for th in threads:
        for r, c in th["reads"]:
            who[(r, c)] = th["i"]
    for r in range(rows):
        y = rows - 1 - r
        for c in range(h):
            cell(c, y, color[who[(r, c)]], str(who[(r, c)]))
        ax.text(-0.3, y + 0.5, f"t{r // top_k} k{r % top_k}", ha="right", va="center", fontsize=8.5)
    for t in range(1, n_tokens):
        ax.plot([0, h], [rows - t * top_k] * 2, color="black", lw=1.5)
    for c in range(h):
        ax.text(c + 0.5, rows + 0.15, str(c), ha="center", va="bottom", fontsize=8.5, color="#444444")
    ax.text(h / 2, rows + 0.9, "y_expert  (T·K rows × H columns)", ha="center", va="bottom", fontsize=9.5)

    # out: T × H; each cell shows the thread that writes it.
    for t in range(n_tokens):
        y = rows - 1 - t
        for c in range(h):
            i = next(th["i"] for th in threads if (t, c) in th["writes"])
            cell(out_x + c, y, color[i], str(i))
        ax.text(out_x - 0.3, y + 0.5, f"t{t}", ha="right", va="center", fontsize=8.5)
    for c in range(h):
        ax.text(out_x + c + 0.5, rows + 0.15, str(c), ha="center", va="bottom", fontsize=8.5, color="#444444")
    ax.text(out_x + h / 2, rows + 0.9, "out  (T × H)", ha="center", va="bottom", fontsize=9.5)

    # The highlighted thread: outline what it reads and writes, arrows from its box.
    c0, nc, t = hl["cols"][0], len(hl["cols"]), hl["t"]
    read_box = (c0, rows - (t + 1) * top_k, nc, top_k)
    write_box = (out_x + c0, rows - 1 - t, nc, 1)
    for x, y, wd, ht in (read_box, write_box):
        ax.add_patch(Rectangle((x, y), wd, ht, fill=False, ec="black", lw=2.2))
    src = (t * h + c0 + nc / 2, y_top)
    arrow = dict(arrowstyle="-|>", color="black", lw=1.3, shrinkA=1, shrinkB=1)
    ax.annotate("", xy=(read_box[0] + nc / 2, read_box[1] + top_k), xytext=src, arrowprops=arrow)
    ax.annotate("", xy=(write_box[0] + nc / 2, write_box[1] + 1), xytext=src, arrowprops=arrow)
    label_box = dict(fc="white", ec="none", pad=0.6, alpha=0.9)  # readable where it lies over the next row
    ax.text(read_box[0] + nc / 2, read_box[1] - 0.15, "reads", ha="center", va="top", fontsize=8.5,
            weight="bold", bbox=label_box)
    ax.text(write_box[0] + nc / 2, write_box[1] - 0.15, "writes", ha="center", va="top", fontsize=8.5,
            weight="bold", bbox=label_box)

    ax.set_xlim(-2.2, max(n_tokens * h, out_x + h) + 0.3)
    ax.set_ylim(-0.9, y_top + 2.1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10.5, loc="left")


def draw_thread_map(n_tokens: int = 2, top_k: int = 3, h: int = 8, *, vec_width: int = 4,
                    highlight: tuple[int, int] = (1, 5), dpi: int = 100) -> Figure:
    """GPU-Puzzles-style picture of the combine kernel's threads: for the scalar variant (one output
    per thread) and the vec variant (vec_width consecutive outputs per thread), every cell of y_expert
    and out is labelled and coloured with the thread that reads or writes it; the thread making output
    `highlight` = (t, h) is outlined, with arrows to what it reads and writes. Returns the figure."""
    t_hl, h_hl = highlight
    fig, axes = plt.subplots(2, 1, figsize=(9.6, 2 * (0.43 * (n_tokens * top_k + 6.5))), dpi=dpi)
    groups = -(-h // vec_width)
    draw_thread_panel(axes[0], n_tokens, top_k, h, 1, t_hl * h + h_hl,
                       f"scalar: {n_tokens * h} threads, one output each — thread i makes out[i // H, i % H]")
    draw_thread_panel(axes[1], n_tokens, top_k, h, vec_width, t_hl * groups + h_hl // vec_width,
                       f"vec (float32): {n_tokens * groups} threads, {vec_width} consecutive outputs each "
                       f"(one 16-byte load per y_expert row)")
    fig.suptitle(f"Which thread touches which data (T={n_tokens}, K={top_k}, H={h})", fontsize=12)
    fig.tight_layout()
    return fig


def row_pieces(h: int, w: int, threads: int) -> list[int]:
    """Which thread of the fused kernel's threadgroup reads each w-element piece of a row of h: piece j
    (elements j·w …) belongs to thread j % threads, on its pass j // threads (the kernel's ITERS loop)."""
    if min(h, w, threads) < 1:
        raise ValueError(f"h, w, threads: expected all >= 1, got {(h, w, threads)}")
    return [j % threads for j in range(-(-h // w))]


def draw_row_reduction(threads: int = 128, h: int = 1024, w: int = 4, *, dpi: int = 100) -> Figure:
    """How one threadgroup of the fused kernel sums the squares of its row: the row's pieces spread over the
    threads, each SIMD group of 32 adds its lanes (simd_sum), lane 0 writes partial[g] to threadgroup memory,
    the barrier, then every thread adds the partials. Returns the figure."""
    from matplotlib.patches import Rectangle

    groups = -(-threads // 32)
    owner = row_pieces(h, w, threads)
    colors = [plt.get_cmap("tab10")(g % 10) for g in range(groups)]
    fig, ax = plt.subplots(figsize=(10, 6.4), dpi=dpi)
    ax.set_xlim(-2.6, 10.2)
    ax.set_ylim(-0.2, 9.5)
    ax.set_axis_off()
    left, width = 0.0, 10.0

    def phase(y: float, number: str, text: str) -> None:
        ax.text(-2.5, y, number, ha="left", va="center", fontsize=11, weight="bold", color="#444444")
        ax.text(-2.1, y, text, ha="left", va="center", fontsize=10, color="#444444")

    # The row: one cell per piece of w elements, coloured by the SIMD group of the thread that reads it.
    cell = width / len(owner)
    for j, th in enumerate(owner):
        ax.add_patch(Rectangle((left + j * cell, 8.3), cell, 0.5, fc=colors[th // 32], ec="none", alpha=0.75))
    ax.add_patch(Rectangle((left, 8.3), width, 0.5, fill=False, ec="#333333", lw=0.8))
    passes = -(-len(owner) // threads)
    for p in range(1, passes):
        ax.plot([left + p * threads * cell] * 2, [8.2, 8.9], color="black", lw=1.5)
    ax.text(left + width / 2, 8.95, f"row t of hidden: h = {h} values, {len(owner)} pieces of {w} (16 bytes), "
            f"{passes} pass{'es' * (passes > 1)} of {threads} threads", ha="center", va="bottom", fontsize=10)
    phase(8.55, "1", "combine,\nkeep x in\nregisters")
    ax.text(left + width / 2, 7.85, f"thread i reads pieces i, i + {threads}, …  and adds up its own squares: "
            "sumsq = Σ x²", ha="center", va="center", fontsize=10, family="monospace")

    # SIMD groups: 32 lanes each; simd_sum gives every lane the group's sum.
    gw = width / groups
    for g in range(groups):
        x0 = left + g * gw + 0.1
        lane = (gw - 0.2) / 32
        for i in range(32):
            ax.add_patch(Rectangle((x0 + i * lane, 6.5), lane, 0.55, fc=colors[g], ec="white", lw=0.3, alpha=0.75))
        ax.text(x0 + (gw - 0.2) / 2, 7.12, f"SIMD group {g}\nthreads {32 * g}–{32 * g + 31}", ha="center",
                va="bottom", fontsize=10)
        ax.annotate("", xy=(x0 + lane / 2, 5.25), xytext=(x0 + lane / 2, 6.5),
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.2))
        ax.text(x0 + lane + 0.08, 5.85, f"simd_sum(sumsq)\nlane 0 writes\npartial[{g}]", ha="left", va="center",
                fontsize=10, family="monospace")
    phase(6.8, "2", "sum within\neach SIMD\ngroup")

    # Threadgroup memory: 32 slots, one per possible SIMD group; only `groups` are written.
    slot = width / 32
    for s in range(32):
        used = s < groups
        ax.add_patch(Rectangle((left + s * slot, 4.7), slot, 0.55, fc=colors[s] if used else "#eeeeee",
                               ec="#555555", lw=0.5, alpha=0.75 if used else 1))
    ax.text(left + groups * slot + 0.3, 4.5, f"threadgroup float partial[32]: {groups} slots written, the other "
            f"{32 - groups} never read", ha="left", va="top", fontsize=10, family="monospace")
    phase(4.97, "", "threadgroup\nmemory")

    # The barrier.
    ax.plot([left - 0.2, left + width + 0.1], [3.6, 3.6], color="#c55a11", lw=2.5, ls=(0, (6, 3)))
    ax.text(left + groups * slot + 0.3, 3.45, f"threadgroup_barrier: no thread goes on until all {threads} have "
            "arrived,\nso every partial[g] is written before any thread reads one", ha="left", va="top", fontsize=10,
            color="#c55a11")
    phase(3.6, "", "barrier")

    # Every thread reads every partial.
    for s in range(groups):
        ax.annotate("", xy=(left + (s + 0.5) * slot, 1.95), xytext=(left + (s + 0.5) * slot, 4.7),
                    arrowprops=dict(arrowstyle="-|>", color=colors[s], lw=1.5))
    ax.text(left, 1.75, "every thread:  total = " + " + ".join(f"partial[{s}]" for s in range(groups))
            + "\n              scale = rsqrt(total / h + eps)", ha="left", va="top", fontsize=10, family="monospace",
            bbox=dict(fc="#fde7c8", ec="#c55a11", boxstyle="round,pad=0.3"))
    ax.text(left, 0.3, "then, from its registers:  normed = x · scale · weight", ha="left",
            va="center", fontsize=10, family="monospace")
    phase(1.4, "3", "every thread\nadds the\npartials")
    ax.set_title(f"One threadgroup sums the squares of its row ({threads} threads = {groups} SIMD groups of 32)",
                 fontsize=12)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94)
    return fig


def draw_mlx_lm_layer(*, dpi: int = 100) -> Figure:
    """One decoder layer of mlx-lm's qwen2_moe / qwen3_next and the start of the next: the MoE block's ops
    with the combine as mlx-lm writes it (weighted sum, gated shared expert, their sum), what patch_mlx_lm
    replaces with one moe_weighted_reduce, and what fuse_norm=True replaces with one moe_combine_rmsnorm (the
    combine, the residual add and the next layer's input_layernorm). Returns the figure."""
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(11, 5.6), dpi=dpi)
    ax.set_xlim(0, 14.2)
    ax.set_ylim(-0.3, 7.5)
    ax.set_axis_off()
    ink, blue, ours, fused = "#333333", "#dce9f7", "#c55a11", "#7030a0"

    def box(x: float, y: float, text: str, w: float = 1.7, h: float = 0.8, color: str = blue,
            mono: bool = False) -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=color, ec=ink,
                                    lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5, family="monospace" if mono else None)

    def arrow(*xy: float, label: str = "", at: tuple[float, float] | None = None) -> None:
        # A polyline through the points (x0, y0, x1, y1, ...), with an arrowhead on its last segment.
        pts = list(zip(xy[::2], xy[1::2]))
        for (x0, y0), (x1, y1) in zip(pts[:-2], pts[1:-1]):
            ax.plot([x0, x1], [y0, y1], color=ink, lw=1)
        ax.annotate("", xy=pts[-1], xytext=pts[-2], arrowprops=dict(arrowstyle="-|>", color=ink, lw=1,
                                                                    shrinkA=0, shrinkB=0))
        if label:
            ax.text(*at, label, ha="center", va="bottom", fontsize=9, color="#1f4e79", family="monospace")

    def plus(x: float, y: float) -> None:
        ax.add_patch(plt.Circle((x, y), 0.22, fc="white", ec=ink, lw=1))
        ax.text(x, y, "+", ha="center", va="center", fontsize=12)

    # The decoder layer's main path (top row) and its two residual adds.
    top = 6.0
    ax.text(0.45, top, "h", ha="center", va="center", fontsize=11)
    box(1.9, top, "input_\nlayernorm")
    box(3.9, top, "self_attn\n(or linear_attn)", w=1.9)
    plus(5.35, top)
    box(6.75, top, "post_attention_\nlayernorm", w=1.9)
    plus(11.9, top)
    box(13.3, top, "layer i+1:\ninput_\nlayernorm", w=1.5, h=1.1, color="#eeeeee")
    arrow(0.6, top, 1.05, top)
    arrow(2.75, top, 2.95, top)
    arrow(4.85, top, 5.13, top)
    arrow(5.57, top, 5.8, top)
    arrow(0.45, top + 0.25, 0.45, 7.1, 5.35, 7.1, 5.35, top + 0.22)
    arrow(5.35, top + 0.22, 5.35, 7.1, 11.9, 7.1, 11.9, top + 0.22)
    ax.text(8.6, 7.15, "residual", ha="center", va="bottom", fontsize=9, color=ink)
    arrow(12.12, top, 12.55, top)

    # The MoE block (mlp) below: routing, experts, then the combine.
    ax.add_patch(Rectangle((5.55, -0.15), 7.05, 5.45, fc="none", ec="#888888", lw=1, ls=(0, (4, 3))))
    ax.text(5.7, 5.1, "mlp: the MoE block", ha="left", va="center", fontsize=10, color="#555555")
    arrow(6.55, top - 0.4, 6.55, 4.65)
    box(6.55, 4.2, "gate, softmax,\nargpartition", w=1.8)
    box(6.55, 2.75, "switch_mlp\n(top_k experts)", w=1.8)
    box(6.55, 1.45, "shared_expert", w=1.8)
    box(6.55, 0.4, "shared_expert_\ngate", w=1.8)
    arrow(6.55, 3.8, 6.55, 3.15, label="inds", at=(6.95, 3.35))
    arrow(7.45, 4.0, 7.85, 4.0, 7.85, 2.95, 8.45, 2.95, label="scores", at=(8.2, 4.02))
    arrow(7.45, 2.6, 8.45, 2.6, label="y", at=(7.65, 2.62))
    arrow(7.45, 1.45, 8.45, 1.45)
    arrow(7.45, 0.4, 9.15, 0.4, 9.15, 0.95)

    # The combine as mlx-lm writes it: three ops, and the residual add after the block.
    box(9.95, 2.75, "(y * scores[..., None])\n.sum(axis=-2)", w=3.0, mono=True)
    box(9.95, 1.45, "sigmoid(g) * shared", w=3.0, mono=True)
    plus(11.9, 2.1)
    arrow(11.45, 2.75, 11.9, 2.75, 11.9, 2.32)
    arrow(11.45, 1.45, 11.9, 1.45, 11.9, 1.88)
    arrow(11.9, 2.32, 11.9, top - 0.22)

    # What the patches replace.
    ax.add_patch(FancyBboxPatch((8.3, 0.95), 3.95, 2.95, boxstyle="round,pad=0.08", fc="none", ec=ours, lw=2.2))
    ax.text(10.27, 3.6, "patch_mlx_lm: one moe_weighted_reduce", ha="center", va="center", fontsize=9.5,
            color=ours, weight="bold")
    ax.add_patch(FancyBboxPatch((8.18, 0.75), 5.92, 5.95, boxstyle="round,pad=0.08", fc="none", ec=fused, lw=2,
                                ls=(0, (6, 3))))
    ax.text(13.3, 3.3, "fuse_norm=True:\none\nmoe_combine\n_rmsnorm", ha="center", va="center", fontsize=9.5,
            color=fused, weight="bold")
    ax.set_title("Where the combine sits in an mlx-lm decoder layer (qwen2_moe, qwen3_next; qwen3_moe has no "
                 "shared expert)", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94)
    return fig
