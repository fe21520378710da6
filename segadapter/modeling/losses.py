"""Segmentation losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def seg_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel CE with `logits` upsampled to the label size, averaged over non-ignored pixels
    (0 when every pixel is ignored, instead of NaN)."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    valid = (labels != ignore_index).sum().clamp_min(1)
    return loss / valid
