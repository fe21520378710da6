"""Adapters plugged after every backbone stage, and the coarse-map loss they own.

Each stage's adapter layer is N_b blocks `Y = X + mu * FFN(attention(X))`, whose attention also
returns a side segmentation map (HSA for SegAdapter, semantic window attention for SeMask). The
adapted map flows on to the next stage ("semantic flow"); the side maps, resized to the first
stage's grid and summed, form the coarse map, supervised with weight `coarse_weight`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import trunc_normal_init
from ..losses import IGNORE_INDEX, seg_cross_entropy
from .segadapter import HSA
from .semask import SemanticWindowAttention

ATTENTIONS = {"segadapter": HSA, "semask": SemanticWindowAttention}
PAPER_MU_INIT = (1e-5, 1e-4, 1e-3, 1e-2)


@dataclass
class AdapterOptions:
    """Ablation switches of the paper (section 4.5); defaults are the paper's configuration."""

    kernel_size: int = 5
    norm: str = "ln"
    ffn_ratio: float = 3.0
    blocks_per_stage: tuple[int, int, int, int] = (1, 1, 1, 1)
    mu_init: tuple[float, float, float, float] = PAPER_MU_INIT
    mu_learnable: bool = True
    window_size: int = 7  # SeMask only

    def __post_init__(self):
        if len(self.blocks_per_stage) != 4 or len(self.mu_init) != 4:
            raise ValueError("blocks_per_stage and mu_init need one value per stage (4)")
        self.blocks_per_stage, self.mu_init = tuple(self.blocks_per_stage), tuple(self.mu_init)

    def attention(self, kind: str, dim: int, num_classes: int) -> nn.Module:
        if kind == "segadapter":
            return HSA(dim, num_classes, self.kernel_size, self.norm)
        if kind == "semask":
            return SemanticWindowAttention(dim, num_classes, self.window_size)
        raise ValueError(f"unknown adapter kind {kind!r}; expected one of {sorted(ATTENTIONS)}")


class ConvFFN(nn.Sequential):
    def __init__(self, dim: int, ratio: float):
        hidden = int(round(dim * ratio))
        super().__init__(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))


class AdapterBlock(nn.Module):
    """Y = X + mu * FFN(attention(X)); `attention` returns (features, side output)."""

    def __init__(self, attention: nn.Module, dim: int, ffn_ratio: float, mu_init: float, mu_learnable: bool):
        super().__init__()
        self.attn = attention
        self.ffn = ConvFFN(dim, ffn_ratio)
        mu = torch.full((dim,), float(mu_init))
        if mu_learnable:
            self.mu = nn.Parameter(mu)
        else:
            self.register_buffer("mu", mu)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, side = self.attn(x)
        return x + self.mu.view(1, -1, 1, 1) * self.ffn(z), side


class AdapterLayer(nn.Module):
    """N_b blocks after one backbone stage; the stage's side output is the last block's."""

    def __init__(self, blocks: list[AdapterBlock]):
        super().__init__()
        if not blocks:
            raise ValueError("an adapter layer needs at least one block")
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks:
            x, side = blk(x)
        return x, side


class StageAdapters(nn.ModuleList):
    """One AdapterLayer per backbone stage (a ModuleList, so weights keep the `adapters.{i}` names),
    plus the auxiliary coarse map and its loss."""

    def __init__(self, kind: str, dims: Sequence[int], num_classes: int, opts: AdapterOptions | None = None,
                 coarse_weight: float = 0.4, ignore_index: int = IGNORE_INDEX):
        opts = opts or AdapterOptions()
        super().__init__(
            AdapterLayer([AdapterBlock(opts.attention(kind, dim, num_classes), dim, opts.ffn_ratio,
                                       opts.mu_init[i], opts.mu_learnable)
                          for _ in range(opts.blocks_per_stage[i])])
            for i, dim in enumerate(dims)
        )
        self.coarse_weight = coarse_weight
        self.ignore_index = ignore_index
        trunc_normal_init(self)

    @staticmethod
    def coarse_map(sides: Sequence[torch.Tensor]) -> torch.Tensor:
        """The side outputs resized to the first (finest) one's grid and summed."""
        size = sides[0].shape[-2:]
        coarse = 0
        for s in sides:
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            coarse = coarse + s
        return coarse

    def loss(self, coarse: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_coarse": self.coarse_weight * seg_cross_entropy(coarse, labels, self.ignore_index)}
