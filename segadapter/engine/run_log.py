"""What rank 0 logs about a run, to every logger `train.loggers` names.

    jsonl        RUN/metrics.jsonl (one JSON object per record) and RUN/curves.png
    tensorboard  event files in RUN/ (`tensorboard --logdir work_dirs` shows each run folder)

Every record goes to each of them, so the two never disagree on which steps were logged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .metrics_log import METRICS_NAME, MetricsLog
from .plot import plot_curves
from .tensorboard_log import INSTALL_HINT, TensorBoardLog, tensorboard_available

CURVES_NAME = "curves.png"


def resolve_loggers(names: list[str] | None) -> list[str]:
    """`train.loggers`, with None meaning jsonl, plus tensorboard where it is installed."""
    if names is None:
        return ["jsonl", "tensorboard"] if tensorboard_available() else ["jsonl"]
    if "tensorboard" in names and not tensorboard_available():
        raise ConfigError(f"train.loggers: tensorboard is not installed ({INSTALL_HINT}), "
                          "or set train.loggers=[jsonl]")
    return list(names)


class RunLog:
    """The run's loggers. `resumed_at`: the iteration a resumed run continues from (records after
    it are dropped or hidden, since the run logs them again); None for a fresh start."""

    def __init__(self, run_dir: str | os.PathLike, loggers: list[str], resumed_at: int | None = None):
        self.run_dir = Path(run_dir)
        self.jsonl = "jsonl" in loggers
        self.metrics = MetricsLog(self.run_dir / METRICS_NAME if self.jsonl else None, keep_until=resumed_at)
        # A fresh start hides every older event in the folder (a first attempt that died before
        # its first checkpoint); a resume hides those after the checkpoint it continues from.
        purge = 0 if resumed_at is None else resumed_at + 1
        self.tensorboard = TensorBoardLog(self.run_dir, purge_step=purge) if "tensorboard" in loggers else None

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.metrics.records

    def append(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        if self.tensorboard is not None:
            self.tensorboard.append(record)

    def add_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, picture, step)

    def draw_curves(self) -> None:
        if self.jsonl:
            plot_curves(self.records, self.run_dir / CURVES_NAME)

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
