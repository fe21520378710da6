"""SegAdapter (Peng & Kameyama, ACML 2023): High-order Spatial Attention, the adapters' attention.

Shapes are NCHW; every "Linear" is a 1x1 conv. See shared spec `segadapter.md`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import norm2d


class SegAttention(nn.Module):
    """U = Norm(pointwise(depthwise_sxs(x))), V = Linear(x); returns U * V."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5, norm: str = "ln"):
        super().__init__()
        self.dwconv = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch)
        self.pwconv = nn.Conv2d(in_ch, out_ch, 1)
        self.norm = norm2d(norm, out_ch, eps=1e-6)
        self.value = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pwconv(self.dwconv(x))) * self.value(x)


class HSA(nn.Module):
    """High-order Spatial Attention: gate feature attention by attention over the class map."""

    def __init__(self, dim: int, num_classes: int, kernel_size: int = 5, norm: str = "ln"):
        super().__init__()
        self.cls = nn.Conv2d(dim, num_classes, 1)  # side output
        self.feat_attn = SegAttention(dim, dim, kernel_size, norm)
        self.sem_attn = SegAttention(num_classes, dim, kernel_size, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side = self.cls(x)
        return self.feat_attn(x) * self.sem_attn(side), side
