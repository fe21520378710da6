"""Mix Transformer (MiT-B0..B5), the hierarchical encoder of Segformer.

Module names follow the NVlabs original, grouped per stage:
`stages.{i}.patch_embed`, `stages.{i}.blocks.{j}`, `stages.{i}.norm`.

LayerNorm eps: by default the NVlabs mix (torch's 1e-5 in the patch-embedding and spatial-reduction
norms, `layer_norm_eps` in the block and stage-end norms); `norm_eps` sets one eps for every norm,
as mmseg's MiT does (its configs: `norm_cfg=dict(type='LN', eps=1e-6)` everywhere).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Backbone
from ..layers import DropPath, attention, drop_path_rates, init_weights, map_to_tokens, tokens_to_map


@dataclass(frozen=True)
class MiTSpec:
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    mlp_ratio: int = 4


_WIDE = (64, 128, 320, 512)
MIT_SPECS = {
    "b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": MiTSpec(_WIDE, (2, 2, 2, 2)),
    "b2": MiTSpec(_WIDE, (3, 4, 6, 3)),
    "b3": MiTSpec(_WIDE, (3, 4, 18, 3)),
    "b4": MiTSpec(_WIDE, (3, 8, 27, 3)),
    "b5": MiTSpec(_WIDE, (3, 6, 40, 3)),
}


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows, then LayerNorm over channels."""

    def __init__(self, in_ch: int, out_ch: int, patch: int, stride: int, eps: float = 1e-5):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, patch, stride, padding=patch // 2)
        self.norm = nn.LayerNorm(out_ch, eps=eps)  # NVlabs keeps torch's default eps here

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced (sr x sr) map."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, eps: float = 1e-5):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # key = kv[:dim], value = kv[dim:]
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)  # NVlabs: torch's default eps

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        if self.sr_ratio > 1:
            kv_in = self.norm(map_to_tokens(self.sr(tokens_to_map(x, h, w))))
        else:
            kv_in = x
        kv = self.kv(kv_in).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        out = attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (implicit position) -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = map_to_tokens(self.dwconv(tokens_to_map(self.fc1(x), h, w)))
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float, eps: float,
                 sr_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio, sr_eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MiTStage(nn.Module):
    # eps: the block and stage-end norms; default_eps: the patch-embedding and sr norms
    def __init__(self, in_ch, dim, depth, heads, sr_ratio, patch, stride, mlp_ratio, dpr, eps, default_eps=1e-5):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_ch, dim, patch, stride, default_eps)
        self.blocks = nn.ModuleList(
            MiTBlock(dim, heads, sr_ratio, mlp_ratio, dpr[j], eps, default_eps) for j in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x, h, w)
        return tokens_to_map(self.norm(x), h, w)


class MixVisionTransformer(Backbone):
    """MiT encoder. `forward` returns the 4 stage maps (strides 4, 8, 16, 32), NCHW."""

    def __init__(self, spec: MiTSpec, in_chans: int = 3, drop_path_rate: float = 0.1, layer_norm_eps: float = 1e-6,
                 norm_eps: float | None = None):
        super().__init__()
        self.spec = spec
        # norm_eps None: the NVlabs / Hugging Face mix; a number: that eps in every norm (mmseg MiT)
        default_eps = 1e-5 if norm_eps is None else norm_eps
        layer_norm_eps = layer_norm_eps if norm_eps is None else norm_eps
        self.out_channels = tuple(spec.widths)
        self.out_strides = tuple(math.prod(spec.strides[:i + 1]) for i in range(4))
        dpr = drop_path_rates(drop_path_rate, sum(spec.depths))
        stages, start, prev = [], 0, in_chans
        for i in range(4):
            stages.append(
                MiTStage(prev, spec.widths[i], spec.depths[i], spec.heads[i], spec.sr_ratios[i],
                         spec.patch_sizes[i], spec.strides[i], spec.mlp_ratio,
                         dpr[start:start + spec.depths[i]], layer_norm_eps, default_eps)
            )
            start += spec.depths[i]
            prev = spec.widths[i]
        self.stages = nn.ModuleList(stages)
        self.apply(init_weights)

    def stage_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Run stage i; the result flows to stage i+1 (adapters rewrite it in between)."""
        return self.stages[i](x)


def mit(variant: str, **kwargs) -> MixVisionTransformer:
    return MixVisionTransformer(MIT_SPECS[variant], **kwargs)
