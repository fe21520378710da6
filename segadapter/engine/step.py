"""One optimizer step: gradients accumulated over micro-batches, measured, checked, applied.

`train_step` is the plain one-batch step (the DDP tests use it); the trainer calls the pieces so
that it can skip a step whose loss or gradient is not finite, with every DDP rank agreeing.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..runtime.amp import autocast


@dataclass
class StepResult:
    stats: dict[str, torch.Tensor]  # detached loss terms (mean over the micro-batches), grad_norm
    problem: str | None = None  # why the step was skipped (what was not finite); None: applied
    stop: bool = False  # a stop signal reached some process: end training after this step


def train_step(model: nn.Module, batch: dict[str, Any], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, device: torch.device, amp_dtype: torch.dtype | None = None,
               grad_clip: float | None = None, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Forward with labels, backward (scaled for fp16), optional clipping, optimizer step.

    `model` may be DDP-wrapped; its `"loss"` output is what is minimised. Returns the detached
    loss terms (`loss`, `loss_main`, `loss_coarse`...) and, when clipping, `grad_norm`.
    """
    stats = accumulate_gradients(model, [batch], optimizer, scaler, device, amp_dtype, channels_last)
    if grad_clip is not None:
        stats["grad_norm"] = gradient_norm(optimizer, scaler, grad_clip)
    apply_step(optimizer, scaler, skip=False)
    return stats


def accumulate_gradients(model: nn.Module, micro_batches: Sequence[dict[str, Any]],
                         optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, device: torch.device,
                         amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Zero the gradients, then forward + backward each micro-batch with its loss divided by their
    number, so the gradient is the mean of the micro-batches' gradients. Under DDP the gradients
    are all-reduced once, on the last micro-batch (`no_sync` before it). Returns the mean loss terms.
    """
    n = len(micro_batches)
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(micro_batches):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        local = i < n - 1 and isinstance(model, nn.parallel.DistributedDataParallel)
        with model.no_sync() if local else contextlib.nullcontext():
            with autocast(device, amp_dtype):
                out = model(images, labels=labels)
            loss = out["loss"] / n if n > 1 else out["loss"]
            scaler.scale(loss).backward()
        for k, v in out.items():
            if k.startswith("loss"):
                v = v.detach().float()
                sums[k] = sums[k] + v if k in sums else v
    return {k: v / n for k, v in sums.items()} if n > 1 else sums


def gradient_norm(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  grad_clip: float | None = None) -> torch.Tensor:
    """The global 2-norm of the true (unscaled) gradients, which are clipped to `grad_clip` if set."""
    if scaler.is_enabled():
        scaler.unscale_(optimizer)  # measure and clip the true gradients, not the fp16-scaled ones
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if grad_clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
    return torch.nn.utils.get_total_norm([p.grad for p in params]).detach()


def nonfinite_problem(stats: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                      check_gradients: bool = True) -> str | None:
    """None when every loss term (and, with `check_gradients`, `grad_norm`) is finite; else what
    is not: `loss_coarse is nan`, or `gradient of <parameter> is inf`. One device sync."""
    keys = [k for k in stats if k.startswith("loss")] + (["grad_norm"] if check_gradients else [])
    finite = torch.stack([torch.isfinite(stats[k]).all() for k in keys]).tolist()
    if all(finite):
        return None
    bad = [k for k, ok in zip(keys, finite) if not ok]
    terms = [k for k in bad if k.startswith("loss_")] or [k for k in bad if k == "loss"]
    if terms:  # name the terms themselves, not only their sum
        return ", ".join(f"{k} is {float(stats[k])}" for k in terms)
    for group in optimizer.param_groups:
        names = group.get("names") or [f"#{i}" for i in range(len(group["params"]))]
        for name, p in zip(names, group["params"]):
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"gradient of {name} is not finite"
    return f"grad_norm is {float(stats['grad_norm'])}"


class RunningStats:
    """The model's BatchNorm running statistics, saved before a step so that a skipped step can
    put them back: its forward pass updated them (with NaN, if the activations were not finite)."""

    def __init__(self, model: nn.Module) -> None:
        self.saved = [(b, b.detach().clone()) for m in model.modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers(recurse=False)]

    @torch.no_grad()
    def restore(self) -> None:
        for buffer, copy in self.saved:
            buffer.copy_(copy)


def apply_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, skip: bool = False) -> None:
    """Step the optimizer (through the fp16 scaler), or with `skip` drop the gradients: weights and
    optimizer state stay exactly as they were (restore `RunningStats` for the BatchNorm buffers)."""
    if skip:
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.update()  # closes the scaler's record of this step (unscale_ ran); lowers the scale on inf
        return
    scaler.step(optimizer)
    scaler.update()
