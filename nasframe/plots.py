"""Pictures of a search for TensorBoard: θ as a labelled heat map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["theta_image"]


def theta_image(
    theta: np.ndarray, paths: Sequence[str], options: Sequence[Sequence[object]]
) -> np.ndarray:
    """θ as an RGB image (H, W, 3): one row per choice, one cell per option, each labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d, c_max = theta.shape
    fig = Figure(figsize=(2.0 + 1.3 * c_max, 0.9 + 0.42 * d), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_where(
        np.arange(c_max)[None, :] >= np.array([len(o) for o in options])[:, None], theta
    )
    ax.imshow(masked, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, opts in enumerate(options):
        for j, opt in enumerate(opts):
            p = float(theta[i, j])
            ax.text(
                j,
                i,
                f"{opt}\n{p:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if p < 0.6 else "black",
            )
    ax.set_yticks(range(d))
    ax.set_yticklabels([p.removeprefix("space.") for p in paths], fontsize=7)
    ax.set_xticks(range(c_max))
    ax.set_xticklabels([f"option {j}" for j in range(c_max)], fontsize=7)
    ax.set_title("θ: probability of each option", fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
