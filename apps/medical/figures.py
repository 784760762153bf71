"""A grid of example patches, so a radiologist can see what the model calls a nodule."""
from __future__ import annotations

import numpy as np

from common.plotting import plt


def patch_grid_figure(patches: np.ndarray, labels: np.ndarray, probs: np.ndarray, per_row: int = 6):
    """Central axial slices: top-scored true nodules (row 1), worst false positives (row 2), missed nodules (row 3)."""
    order = np.argsort(-probs)
    rows = {
        "true positives": [i for i in order if labels[i] == 1][:per_row],
        "worst false positives": [i for i in order if labels[i] == 0][:per_row],
        "most missed nodules": [i for i in order[::-1] if labels[i] == 1][:per_row],
    }
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.8 * per_row, 2.0 * len(rows)), squeeze=False)
    for r, (title, idx) in enumerate(rows.items()):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                patch = np.asarray(patches[idx[c]], np.float32).reshape(patches.shape[-3:])
                ax.imshow(patch[patch.shape[0] // 2], cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"p={probs[idx[c]]:.2f}", fontsize=8)
        axes[r, 0].text(-0.1, 0.5, title, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig
