"""TensorBoard event files in the run folder, written with torch's SummaryWriter.

Every record the trainer logs to metrics.jsonl is written here too, as scalars at step `iter`:

    train record  train/<loss term>, train/grad_norm, train/lr, lr/<parameter group>,
                  perf/images_per_s, perf/max_memory_mb (CUDA)
    val record    val/mIoU, val/aAcc, val/mAcc, val_IoU/<class name>
    skipped step  train/skipped_step (1.0) and a text entry naming what was not finite

and, per evaluation, `val/predictions`, a grid of image | label | prediction rows. A resumed run
opens a new event file that purges the steps after its checkpoint, so a run killed after its last
checkpoint does not show those steps twice (TensorBoard honours the purge when it reads).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'segadapter[tensorboard]'"
_NOT_SCALARS = {"type", "iter", "epoch"}
_PERF = {"images_per_s", "max_memory_mb"}


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars (tag -> value) of one metrics.jsonl record."""
    kind = record.get("type")
    out: dict[str, float] = {}
    if kind == "train":
        for key, value in record.items():
            if key == "lr_groups":
                out.update({f"lr/{group}": v for group, v in value.items()})
            elif key not in _NOT_SCALARS and isinstance(value, (int, float)):
                out[f"{'perf' if key in _PERF else 'train'}/{key}"] = value
    elif kind == "val":
        out.update({f"val/{k}": record[k] for k in ("mIoU", "aAcc", "mAcc") if isinstance(record.get(k), (int, float))})
        out.update({f"val_IoU/{name}": v for name, v in record.get("IoU", {}).items() if isinstance(v, (int, float))})
    elif kind == "skipped":
        out["train/skipped_step"] = 1.0
    return {tag: float(v) for tag, v in out.items()}


class TensorBoardLog:
    """Rank 0's SummaryWriter on `run_dir`; `purge_step` hides older events from that step on."""

    def __init__(self, run_dir: str | os.PathLike, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def append(self, record: dict[str, Any]) -> None:
        step = int(record["iter"])
        for tag, value in scalars_of(record).items():
            self.writer.add_scalar(tag, value if math.isfinite(value) else float("nan"), step)
        if record.get("type") == "skipped":
            self.writer.add_text("train/skipped_steps", f"iteration {step}: {record.get('reason')}", step)

    def add_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 picture."""
        self.writer.add_image(tag, picture, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()  # a later write opens a new event file in the same folder
