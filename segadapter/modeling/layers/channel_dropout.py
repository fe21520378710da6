"""`Dropout2d` then a 1x1 classifier, as one product in training.

Dropout2d zeroes whole channels per sample, so `conv1x1(dropout2d(x))` equals a 1x1 conv whose
weight has each sample's kept columns only (scaled by 1 / (1 - p)): the mask goes into a
(batch, classes, channels) weight instead of a pass over the (batch, channels, H, W) map, forward
and backward. On a CPU those two passes over a stride-4 256-channel map are ~2% of a small
model's training step. The mask is drawn as `nn.Dropout2d` draws it (one Bernoulli per sample
and channel, from torch's generator), so the same seed gives the same mask.
"""
from __future__ import annotations

import torch
from torch import nn


def dropout2d_conv1x1(x: torch.Tensor, dropout: nn.Dropout2d, classifier: nn.Conv2d) -> torch.Tensor:
    """`classifier(dropout(x))` for a 1x1 `classifier`; the mask folded into its weight while
    `dropout` is training, else the plain modules."""
    p = dropout.p
    if not (dropout.training and 0 < p < 1) or x.dim() != 4 or classifier.kernel_size != (1, 1):
        return classifier(dropout(x))
    n, c, h, w = x.shape
    keep = x.new_empty(n, c).bernoulli_(1 - p).div_(1 - p)  # Dropout2d's mask, one value per channel
    weight = classifier.weight.flatten(1).to(x.dtype)  # (K, C)
    masked = keep[:, None, :] * weight  # (N, K, C)
    bias = classifier.bias
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # (N, H*W, C) @ (N, C, K): the channels-last map read in place, the output channels-last too
        tokens = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        out = tokens @ masked.transpose(1, 2)
        if bias is not None:
            out = out + bias.to(x.dtype)
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)
    flat = x.reshape(n, c, h * w)
    out = masked @ flat if bias is None else torch.baddbmm(bias.to(x.dtype)[None, :, None], masked, flat)
    return out.view(n, -1, h, w)
