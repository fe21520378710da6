"""ConvNeXt-T/S/B (Liu et al. 2022) as a segmentation backbone.

Names follow the Facebook original (`downsample_layers`, `stages.{i}.{j}.dwconv/norm/pwconv1/
pwconv2/gamma`) plus `out_norms.{i}`: the per-output LayerNorm of the segmentation variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Backbone
from ..layers import DropPath, LayerNorm2d, drop_path_rates


@dataclass(frozen=True)
class ConvNeXtSpec:
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]


CONVNEXT_SPECS = {
    "t": ConvNeXtSpec((3, 3, 9, 3), (96, 192, 384, 768)),
    "s": ConvNeXtSpec((3, 3, 27, 3), (96, 192, 384, 768)),
    "b": ConvNeXtSpec((3, 3, 27, 3), (128, 256, 512, 1024)),
}
DEFAULT_DROP_PATH = {"t": 0.4, "s": 0.3, "b": 0.4}  # MMSegmentation's ConvNeXt recipes


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LN -> 4x MLP (channels-last) -> layer scale -> residual."""

    def __init__(self, dim: int, drop_path: float, layer_scale_init: float):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXt(Backbone):
    """ConvNeXt encoder. `forward` returns the 4 normalised stage maps (strides 4..32), NCHW."""

    def __init__(self, spec: ConvNeXtSpec, in_chans: int = 3, drop_path_rate: float = 0.4,
                 layer_scale_init: float = 1e-6):
        super().__init__()
        self.spec = spec
        w = spec.widths
        self.out_channels = tuple(w)
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, w[0], 4, 4), LayerNorm2d(w[0], eps=1e-6))]
            + [nn.Sequential(LayerNorm2d(w[i - 1], eps=1e-6), nn.Conv2d(w[i - 1], w[i], 2, 2)) for i in range(1, 4)]
        )
        self.out_strides = (4, 8, 16, 32)
        dpr = drop_path_rates(drop_path_rate, sum(spec.depths))
        stages, start = [], 0
        for i, depth in enumerate(spec.depths):
            stages.append(nn.Sequential(*[ConvNeXtBlock(w[i], dpr[start + j], layer_scale_init) for j in range(depth)]))
            start += depth
        self.stages = nn.ModuleList(stages)
        self.out_norms = nn.ModuleList(LayerNorm2d(c, eps=1e-6) for c in w)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def num_layer_ids(self) -> int:
        """Depth ids for layer-wise lr decay: stem 0, stage 0 -> 1, stage 1 -> 2, stage 2 in groups of
        3 blocks -> 3, 4, ..., stage 3 -> the last id; this (one past the last) is the top, where
        everything outside the backbone's stages sits. ConvNeXt-T gets 6 backbone depths, S/B 12,
        matching the usual ConvNeXt fine-tuning recipe."""
        return 3 + math.ceil(len(self.stages[2]) / 3) + 1

    def layer_id(self, name: str) -> int:
        """The depth id of parameter `name` (relative to the backbone); see `num_layer_ids`."""
        top = self.num_layer_ids
        parts = name.split(".")
        if len(parts) < 3 or parts[0] not in ("stages", "downsample_layers"):
            return top
        stage = int(parts[1])
        if stage == 0:
            return 0 if parts[0] == "downsample_layers" else 1
        if stage == 1:
            return 2
        if stage == 2:
            return 3 if parts[0] == "downsample_layers" else 3 + int(parts[2]) // 3
        return top - 1

    def stage_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Downsample + blocks of stage i; this un-normalised map flows to the next stage."""
        return self.stages[i](self.downsample_layers[i](x))

    def stage_output(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The per-output norm stays on the path to the decode head."""
        return self.out_norms[i](x)


def convnext(variant: str, drop_path_rate: float | None = None, **kwargs) -> ConvNeXt:
    if drop_path_rate is None:
        drop_path_rate = DEFAULT_DROP_PATH[variant]
    return ConvNeXt(CONVNEXT_SPECS[variant], drop_path_rate=drop_path_rate, **kwargs)
