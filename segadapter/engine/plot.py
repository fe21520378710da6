"""RUN/curves.png: training loss and validation mIoU against the iteration."""
from __future__ import annotations

import os
from typing import Any, Iterable

from ..utils.io import atomic_path


def plot_curves(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Draw from metrics.jsonl records (type 'train' with 'loss', type 'val' with 'mIoU')."""
    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = list(records)
    train = [(r["iter"], r["loss"]) for r in records if r.get("type") == "train" and r.get("loss") is not None]
    val = [(r["iter"], r["mIoU"]) for r in records if r.get("type") == "val" and r.get("mIoU") is not None]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_miou = fig.subplots(1, 2)
    if train:
        ax_loss.plot(*zip(*train), color="tab:blue", linewidth=1)
    ax_loss.set(title="training loss", xlabel="iteration", ylabel="loss")
    if val:
        ax_miou.plot(*zip(*val), color="tab:orange", marker="o", markersize=3)
    ax_miou.set(title="validation mIoU", xlabel="iteration", ylabel="mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
