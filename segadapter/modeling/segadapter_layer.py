"""SegAdapter (Peng & Kameyama, ACML 2023): High-order Spatial Attention adapter blocks.

Shapes are NCHW; every "Linear" is a 1x1 conv. See shared spec `segadapter.md`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import norm2d


@dataclass
class AdapterOptions:
    """Ablation switches of the paper (section 4.5); defaults are the paper's configuration."""

    kernel_size: int = 5
    norm: str = "ln"
    ffn_ratio: float = 3.0
    blocks_per_stage: tuple[int, int, int, int] = (1, 1, 1, 1)
    mu_init: tuple[float, float, float, float] = (1e-5, 1e-4, 1e-3, 1e-2)
    mu_learnable: bool = True
    window_size: int = 7  # SeMask only


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


def build_adapter_layers(kind: str, dims, num_classes: int, opts: AdapterOptions) -> nn.ModuleList:
    """One AdapterLayer per stage; `kind` is 'segadapter' (HSA) or 'semask'."""
    from .semask_layer import SemanticWindowAttention

    layers = []
    for i, dim in enumerate(dims):
        blocks = []
        for _ in range(opts.blocks_per_stage[i]):
            if kind == "segadapter":
                attn = HSA(dim, num_classes, opts.kernel_size, opts.norm)
            elif kind == "semask":
                attn = SemanticWindowAttention(dim, num_classes, opts.window_size)
            else:
                raise ValueError(f"unknown adapter kind {kind!r}")
            blocks.append(AdapterBlock(attn, dim, opts.ffn_ratio, opts.mu_init[i], opts.mu_learnable))
        layers.append(AdapterLayer(blocks))
    _init_adapters(layers)
    return nn.ModuleList(layers)


def _init_adapters(layers) -> None:
    for layer in layers:
        for m in layer.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
