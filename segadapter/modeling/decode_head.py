"""Segformer's All-MLP decode head."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class AllMLPHead(nn.Module):
    """Per-stage linear C_i -> C_d, upsample to stride 4, concat (c4, c3, c2, c1),
    1x1 fuse + BN + act, dropout, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256,
                 act: str = "relu", dropout: float = 0.1):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown head activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        self.in_channels = tuple(in_channels)
        self.channels = channels
        self.proj = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Conv2d(channels * len(in_channels), channels, 1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(channels)
        self.act = ACTIVATIONS[act]()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.training and self.fused_inference and not torch.is_grad_enabled():
            return self.forward_fused(feats)
        return self.forward_reference(feats)

    # Inference shortcut, on by default: a 1x1 conv commutes with bilinear upsampling (whose weights
    # sum to one), so the fuse conv is folded into each stage's projection and run at the stage's
    # own resolution, and the eval-mode BN is folded in too. Same logits, ~4x fewer head FLOPs.
    fused_inference: bool = True

    def fused_weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-stage (C_d x C_i) weights and biases of fuse o proj, with BN folded in."""
        bn = self.fuse_norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fuse = self.fuse.weight.flatten(1) * scale[:, None]  # (C_d, n * C_d)
        n = len(self.proj)
        weights, biases = [], []
        for i, proj in enumerate(self.proj):
            block = fuse[:, (n - 1 - i) * self.channels:(n - i) * self.channels]  # concat is deepest-first
            weights.append(block @ proj.weight.flatten(1))
            biases.append(block @ proj.bias)
        biases[0] = biases[0] + bn.bias - bn.running_mean * scale
        return weights, biases

    def forward_fused(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        weights, biases = self.fused_weights()
        x = None
        for f, w, b in zip(feats, weights, biases):
            y = F.conv2d(f, w.to(f.dtype)[:, :, None, None], b.to(f.dtype))
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            x = y if x is None else x + y
        return self.classifier(self.act(x))

    def forward_reference(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head as published: what training runs and what FLOPs are counted on."""
        size = feats[0].shape[-2:]
        ups = []
        for f, proj in zip(feats, self.proj):
            y = proj(f)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            ups.append(y)
        # The published fuse weights expect the deepest stage first.
        x = self.fuse(torch.cat(ups[::-1], dim=1))
        x = self.dropout(self.act(self.fuse_norm(x)))
        return self.classifier(x)
