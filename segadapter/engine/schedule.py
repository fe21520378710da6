"""Poly learning-rate decay with a linear warm-up (MMSeg's `poly` + `warmup='linear'` policy).

factor(i) = (1 - i / max_iters) ** power, times 1 - (1 - i / warmup_iters) * (1 - warmup_ratio)
while i < warmup_iters. So the lr starts at `warmup_ratio` x base, meets the poly curve at the end of
the warm-up without a jump, and reaches 0 at `max_iters`. Every group keeps its own base lr.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from .config import ScheduleConfig


def lr_factor(i: int, max_iters: int, warmup_iters: int, warmup_ratio: float = 1e-6,
              power: float = 1.0) -> float:
    """Multiplier of the base lr used for optimizer step `i` (0-based)."""
    i = min(max(i, 0), max_iters)
    factor = (1.0 - i / max_iters) ** power
    if i < warmup_iters:
        factor *= 1.0 - (1.0 - i / warmup_iters) * (1.0 - warmup_ratio)
    return factor


class WarmupPolyLR(LRScheduler):
    """Closed-form schedule: its state is just the iteration, so save/load is exact.

    Call `step()` once after every optimizer step; `last_epoch` is then the number of steps done.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, warmup_iters: int = 0,
                 warmup_ratio: float = 1e-6, power: float = 1.0, last_epoch: int = -1):
        self.max_iters = max_iters
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.power = power
        super().__init__(optimizer, last_epoch)

    def factor(self) -> float:
        return lr_factor(self.last_epoch, self.max_iters, self.warmup_iters, self.warmup_ratio, self.power)

    def get_lr(self) -> list[float]:
        f = self.factor()
        return [base * f for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict) -> None:
        """Take only the position from `state_dict`; the curve (max_iters, warm-up, power, base lrs)
        stays as constructed from the config, so a resumed run may extend or change its schedule."""
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> WarmupPolyLR:
    return WarmupPolyLR(optimizer, cfg.max_iters, cfg.warmup_iters, cfg.warmup_ratio, cfg.power)
