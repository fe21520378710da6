"""What every decode head provides, and the per-pixel case.

A head owns its output, its prediction and its loss:
- `forward(features) -> raw`: a tensor, or a small dataclass (per-query class and mask logits,
  auxiliary outputs, ...);
- `predict(raw, size=None) -> (B, K, h, w)` per-pixel class scores at `output_stride`, or resized
  to `size`: what argmax, sliding windows, TTA and ONNX export consume; `output_space` says what
  the scores are and how test-time passes of them are averaged (the family's official way);
- `loss(raw, labels) -> {"loss_*": tensor}`, each term already weighted; the Segmentor sums them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import IGNORE_INDEX, seg_cross_entropy


@dataclass(frozen=True)
class OutputSpace:
    """What a head's `predict` returns and how test-time passes are averaged.

    kind  'logits' (per-pixel heads) or 'probabilities' (mask classification: sum over queries of
          class probability x mask probability, not normalised over classes)
    tta   how flip / multi-scale passes are averaged: 'softmax' (mmseg's aug_test: the mean of the
          softmax of each pass's output, whatever it is) or 'mean' (detectron2's TTA: the outputs
          themselves). Sliding windows always average the output itself, as both codebases do.
    """

    kind: str = "logits"
    tta: str = "softmax"

    def for_tta(self, scores: torch.Tensor) -> torch.Tensor:
        """One test-time pass, in the space its passes are averaged in."""
        return scores.softmax(1) if self.tta == "softmax" else scores

    def probabilities(self, scores: torch.Tensor, tta: bool) -> torch.Tensor:
        """Per-pixel class probabilities (summing to 1) of an `inference` result."""
        if tta and self.tta == "softmax":
            return scores  # already a mean of softmaxes
        if self.kind == "logits":
            return scores.softmax(1)
        return scores / scores.sum(1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


LOGITS = OutputSpace("logits", "softmax")
MMSEG_MASK_SCORES = OutputSpace("probabilities", "softmax")  # SegViT (mmseg 0.24)
DETECTRON2_MASK_SCORES = OutputSpace("probabilities", "mean")  # SAN (detectron2)


def _head_of(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "decode_head", None)


def output_space(model) -> OutputSpace:
    """The output space of a model's head (LOGITS for heads that declare none)."""
    return getattr(_head_of(model), "output_space", LOGITS)


def takes_output_size(model) -> bool:
    """Whether the model's head predicts at a requested output size itself (`model(x, out_size=)`)."""
    return getattr(_head_of(model), "takes_output_size", False)


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
    output_space = LOGITS
    ignore_index: int = IGNORE_INDEX

    def predict(self, raw: torch.Tensor, size=None) -> torch.Tensor:
        return resize_scores(raw, size)

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_main": seg_cross_entropy(raw, labels, self.ignore_index)}
