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
                    ha=ha, va="bottom", fontsize=8, color="#1f4e79", family="monospace")

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
    box(2.5, 4.7, "router\nsoftmax(x·W_r)")
    box(4.4, 4.7, "top-k\n(K of E)")
    arrow(1.25, 2.85, 1.7, 4.3)
    arrow(3.3, 4.7, 3.6, 4.7)
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
                 fontsize=10)
    return fig
