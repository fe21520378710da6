"""Segformer's All-MLP decode head."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.channel_dropout import dropout2d_conv1x1
from ..losses import IGNORE_INDEX
from .base import PixelHead

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class AllMLPHead(PixelHead):
    """Per-stage linear C_i -> C_d, upsample to stride 4, concat (c4, c3, c2, c1),
    1x1 fuse + BN + act, dropout, 1x1 classifier.

    The published order of operations is `forward_reference`. `forward` computes the same
    function with less work: a 1x1 conv commutes with bilinear upsampling (whose weights sum to
    one), so `fuse o concat o upsample o proj` equals `sum_i upsample((fuse_i @ proj_i) f_i)`: each
    stage is projected straight to C_d at its own resolution and the 4*C_d-channel concat at
    stride 4 never exists. In eval mode the BN is folded into those weights as well.
    `fused_inference = False` (used by the FLOPs counter) restores the published order.
    """

    fused_inference: bool = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256,
                 act: str = "relu", dropout: float = 0.1, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
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

    def classes_in(self, state):
        w = state.get("classifier.weight")
        return None if w is None else int(w.shape[0])

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.fused_inference:
            return self.forward_reference(feats)
        if self.training:
            x = self.fuse_norm(self._factored_sum(feats, *self.factored_weights()))
            # ReLU in place: BN's backward needs its input, not its output (GELU's needs its input)
            x = F.relu_(x) if isinstance(self.act, nn.ReLU) else self.act(x)
            return dropout2d_conv1x1(x, self.dropout, self.classifier)
        x = self._factored_sum(feats, *self.factored_weights(fold_bn=True))
        if torch.is_grad_enabled():  # e.g. input gradients in eval: GELU's backward needs its input
            return self.classifier(self.act(x))
        # in place: nothing needs x after this, and a fresh stride-4 map costs page faults
        x = F.relu_(x) if isinstance(self.act, nn.ReLU) else torch.ops.aten.gelu_(x, approximate=self.act.approximate)
        return self.classifier(x)

    def factored_weights(self, fold_bn: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-stage (C_d x C_i) weights and (C_d) biases of `fuse o proj_i`; with `fold_bn`,
        the eval-mode BN folded in (its shift added to the first stage's bias)."""
        fuse = self.fuse.weight.flatten(1)  # (C_d, n * C_d)
        if fold_bn:
            bn = self.fuse_norm
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fuse = fuse * scale[:, None]
        n = len(self.proj)
        weights, biases = [], []
        for i, proj in enumerate(self.proj):
            block = fuse[:, (n - 1 - i) * self.channels:(n - i) * self.channels]  # concat is deepest-first
            weights.append(block @ proj.weight.flatten(1))
            biases.append(block @ proj.bias)
        if fold_bn:
            biases[0] = biases[0] + bn.bias - bn.running_mean * scale
        return weights, biases

    @staticmethod
    def _factored_sum(feats, weights, biases) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = None
        for f, w, b in zip(feats, weights, biases):
            y = F.conv2d(f, w.to(f.dtype)[:, :, None, None], b.to(f.dtype))
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            # accumulate in place into the first stage's fresh conv output (no backward needs
            # a conv's or an upsample's output), instead of a new stride-4 map per stage
            x = y if x is None else x.add_(y)
        return x

    def forward_reference(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head in the published order of operations (what FLOPs are counted on)."""
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
