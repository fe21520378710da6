"""One optimisation step, shared by the trainer and the DDP tests."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..runtime.amp import autocast


def train_step(model: nn.Module, batch: dict[str, Any], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, device: torch.device, amp_dtype: torch.dtype | None = None,
               grad_clip: float | None = None, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Forward with labels, backward (scaled for fp16), optional clipping, optimizer step.

    `model` may be DDP-wrapped; its `"loss"` output is what is minimised. Returns the detached
    loss terms (`loss`, `loss_main`, `loss_coarse`...) and, when clipping, `grad_norm`.
    """
    images = batch["image"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp_dtype):
        out = model(images, labels=labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out["loss"]).backward()
    stats = {k: v.detach().float() for k, v in out.items() if k.startswith("loss")}
    if grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        params = [p for g in optimizer.param_groups for p in g["params"]]
        stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
    scaler.step(optimizer)
    scaler.update()
    return stats
