"""The decode-head contract (`DecodeHead`: every capability declared, with its default), the
per-pixel case (`PixelHead`) and the mask-classification case (`MaskClassificationHead`).

A head owns its output, its prediction and its loss:
- `forward(features) -> raw`: a tensor, or a small dataclass (per-query class and mask logits,
  auxiliary outputs, ...);
- `predict(raw, size=None) -> (B, K, h, w)` per-pixel class scores at `output_stride`, or at the
  input size (`at_input_size`), or resized to `size`: what argmax, sliding windows, TTA and ONNX
  export consume; `output_space` says what the scores are and how test-time passes of them are
  averaged (the family's official way);
- `loss(raw, labels) -> {"loss_*": tensor}`, each term already weighted; the Segmentor sums them.
Everything else the toolkit asks of a head is a declared attribute of `DecodeHead`; code outside
this file reads them directly, never probing with getattr / hasattr.
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


def resize_scores(scores: torch.Tensor, size=None) -> torch.Tensor:
    """Bilinear resize of (B, K, h, w) scores to `size` (no-op when None or equal)."""
    if size is None or tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


class DecodeHead(nn.Module):
    """What every head declares (class attributes; a head overrides those that differ).

    num_classes            classes it predicts (an open-vocabulary head: its current names')
    output_stride          stride of `predict`'s scores without a size (1 with `at_input_size`)
    at_input_size          `predict` needs the input's size and returns scores there (mask heads)
    takes_output_size      `predict(raw, size)` resizes its masks to the output size itself (SAN)
    output_space           what `predict` returns and how TTA averages it (`OutputSpace`)
    fused_inference        runs an algebraically folded forward; the FLOPs counter sets it False
                           to count the published order (None: the head has no such shortcut)
    count_predict_flops    the published FLOPs include `predict` (the class-mask combination)
    query_grid             side of a learnable query grid that published weights may need resampled
    """

    num_classes: int
    output_stride: int = 4
    at_input_size: bool = False
    takes_output_size: bool = False
    output_space: OutputSpace = LOGITS
    fused_inference: bool | None = None
    count_predict_flops: bool = True
    query_grid: int | None = None

    def predict(self, raw, size=None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, raw, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def classes_in(self, state: dict[str, torch.Tensor]) -> int | None:
        """How many classes a state dict of this head's own keys (no `decode_head.` prefix) was
        trained for, if its tensors say (the loader's check before a shape mismatch)."""
        return None

    def on_weights_loaded(self) -> None:
        """Called after published weights were loaded into the model (e.g. SAN embeds its class
        names once CLIP's text tower is trained)."""

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to the head) exempt from weight decay."""
        return set()


class PixelHead(DecodeHead):
    """A head whose raw output already is per-pixel class logits: `predict` is the identity (plus
    resizing) and the loss is the toolkit's pixel cross-entropy, upsampled to the labels."""

    ignore_index: int = IGNORE_INDEX

    def predict(self, raw: torch.Tensor, size=None) -> torch.Tensor:
        return resize_scores(raw, size)

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_main": seg_cross_entropy(raw, labels, self.ignore_index)}


def combine_class_masks(class_probs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """score[b, k] = sum_q class_probs[b, q, k] * sigmoid(mask_logits[b, q]): (B, K, h, w)."""
    return torch.einsum("bqk,bqhw->bkhw", class_probs.to(mask_logits.dtype), mask_logits.sigmoid())


class MaskClassificationHead(DecodeHead):
    """Query heads: per-query class logits (with a last "no object" column) and mask logits,
    combined into per-class probabilities at the input size. `predict` is shared: the final
    output's class probabilities times its mask probabilities, the masks resized by `masks_at`,
    which each head writes in its official code's order."""

    output_stride = 1
    at_input_size = True

    def final_output(self, raw) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (B, Q, K + 1), mask logits (B, Q, h, w)) of the final output."""
        raise NotImplementedError

    def masks_at(self, masks: torch.Tensor, raw, size) -> tuple[torch.Tensor, tuple | None]:
        """(mask logits resized where the official code combines them, the size the scores are
        resized to afterwards or None)."""
        raise NotImplementedError

    def predict(self, raw, size=None) -> torch.Tensor:
        class_logits, masks = self.final_output(raw)
        masks, then = self.masks_at(masks, raw, size)
        return resize_scores(combine_class_masks(class_logits.float().softmax(-1)[..., :-1], masks), then)
