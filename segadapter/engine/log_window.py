"""Loss sums over one log interval, kept on the device so steps do not synchronise.

The sums travel in every checkpoint (`state()` / `from_state`), so a run stopped between two log
steps and resumed logs the same means at the next log step as the uninterrupted run.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch


class LogWindow:
    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self.start, self.timed = time.perf_counter(), 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1
        self.timed += 1

    def means(self) -> dict[str, torch.Tensor]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def local_mean(self, key: str) -> float:
        return float(self.sums[key]) / max(self.count, 1) if key in self.sums else math.nan

    def images_per_s(self, images_per_step: int) -> float:
        elapsed = time.perf_counter() - self.start
        return images_per_step * self.timed / elapsed if elapsed > 0 else 0.0

    def state(self) -> dict[str, Any]:
        """Plain CPU tensors and ints: `torch.load(weights_only=True)` reads them back."""
        return {"sums": {k: v.detach().cpu() for k, v in self.sums.items()}, "count": self.count}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> "LogWindow":
        window = cls()
        window.sums = {k: v.to(device) for k, v in state["sums"].items()}
        window.count = int(state["count"])
        return window
