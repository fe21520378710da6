"""What every decode head provides, and the per-pixel case.

A head owns its output, its prediction and its loss:
- `forward(features) -> raw`: a tensor, or a small dataclass (per-query class and mask logits,
  auxiliary outputs, ...);
- `predict(raw, size=None) -> (B, K, h, w)` per-pixel class scores at `output_stride`, or resized
  to `size`: what argmax, softmax-averaging TTA, sliding windows and ONNX export consume;
- `loss(raw, labels) -> {"loss_*": tensor}`, each term already weighted; the Segmentor sums them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import IGNORE_INDEX, seg_cross_entropy


def resize_scores(scores: torch.Tensor, size=None) -> torch.Tensor:
    """Bilinear resize of (B, K, h, w) scores to `size` (no-op when None or equal)."""
    if size is None or tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


class PixelHead(nn.Module):
    """A head whose raw output already is per-pixel class logits: `predict` is the identity (plus
    resizing) and the loss is the toolkit's pixel cross-entropy, upsampled to the labels."""

    num_classes: int
    output_stride: int = 4
    ignore_index: int = IGNORE_INDEX

    def predict(self, raw: torch.Tensor, size=None) -> torch.Tensor:
        return resize_scores(raw, size)

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_main": seg_cross_entropy(raw, labels, self.ignore_index)}
