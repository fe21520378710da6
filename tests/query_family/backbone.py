"""The backbone: two strided conv stages (strides 4 and 8), declaring the `Backbone` contract."""
from __future__ import annotations

import torch
from torch import nn

from segadapter.modeling.backbones.base import Backbone


class TinyConvBackbone(Backbone):
    out_strides = (4, 8)

    def __init__(self, width: int = 8):
        super().__init__()
        self.out_channels = (width, 2 * width)
        self.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(3, width, 4, 4), nn.GELU()),
                                     nn.Sequential(nn.Conv2d(width, 2 * width, 2, 2), nn.GELU())])

    def stage_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[i](x)
