"""SAN's side adapter network: a small plain ViT with query tokens, fused with frozen-CLIP
features, and the heads that turn its outputs into mask proposals and CLIP attention biases.

Module names follow the official release where it is cheap (`patch_embed.proj`, `pos_embed`,
`query_embed`, `query_pos_embed`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
`fusion_layers.layer_i`, `mask_decoder.{query_mlp, pix_mlp, attn_mlp}.layers.j`, `bias_scaling`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import LayerNorm2d, tokens_to_map


@dataclass(frozen=True)
class SideConfig:
    width: int = 240
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 16
    grid: int = 40  # position embedding grid (a 640 crop); resized bicubically for other sizes
    num_queries: int = 100
    fusion_blocks: tuple[int, ...] = (0, 1, 2, 3)  # side block i (0 = before block 1) gets CLIP tap i
    deep_supervision: tuple[int, ...] = (7, 8)  # side blocks whose outputs are decoded (1-based)
    mlp_channels: int = 256
    embed_channels: int = 256
    mlp_layers: int = 3


class SideAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SideMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SideBlock(nn.Module):
    """Pre-norm ViT block (LN eps 1e-6, qkv bias, GELU MLP), as timm's."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SideAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SideMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FusionLayer(nn.Module):
    """CLIP map -> channel LayerNorm -> 1x1 conv to the side width -> bilinear resize; added to
    the side network's patch tokens."""

    def __init__(self, clip_width: int, width: int):
        super().__init__()
        self.norm = LayerNorm2d(clip_width, eps=1e-6)
        self.proj = nn.Conv2d(clip_width, width, 1)
        nn.init.kaiming_uniform_(self.proj.weight, a=1)  # Xavier-like fill of the official code
        nn.init.zeros_(self.proj.bias)

    def forward(self, patches: torch.Tensor, clip_map: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        y = F.interpolate(self.proj(self.norm(clip_map)), size=grid, mode="bilinear", align_corners=False)
        return patches + y.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SideViT(nn.Module):
    """Queries + patch tokens through `depth` blocks; CLIP taps fused into the patch tokens before
    block 1 and after the first blocks; the position embedding (queries included) is added at the
    input and again after every block but the last."""

    def __init__(self, cfg: SideConfig, clip_width: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid, d))
        self.query_embed = nn.Parameter(torch.zeros(1, cfg.num_queries, d))
        self.query_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_queries, d))
        self.blocks = nn.ModuleList(SideBlock(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.fusion_layers = nn.ModuleDict({f"layer_{i}": FusionLayer(clip_width, d) for i in cfg.fusion_blocks})
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.query_embed, std=0.02)
        nn.init.normal_(self.query_pos_embed, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _pos(self, h: int, w: int) -> torch.Tensor:
        pos = self.pos_embed
        g = self.cfg.grid
        if (h, w) != (g, g) or torch.jit.is_tracing():  # traced graphs must resample for any size
            pos = pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
        return torch.cat([self.query_pos_embed, pos], dim=1)

    def _fuse(self, i: int, x: torch.Tensor, clip_maps: list[torch.Tensor], grid) -> torch.Tensor:
        key = f"layer_{i}"
        if key not in self.fusion_layers:
            return x
        q = self.cfg.num_queries
        return torch.cat([x[:, :q], self.fusion_layers[key](x[:, q:], clip_maps[i], grid)], dim=1)

    def forward(self, image: torch.Tensor, clip_maps: list[torch.Tensor], decode: tuple[int, ...]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """image: (B, 3, H, W); clip_maps[i]: (B, C_clip, h', w') fused at side block i.
        Returns (queries (B, Q, D), patch map (B, D, H/16, W/16)) after each block in `decode`."""
        x = self.patch_embed(image)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        pos = self._pos(h, w).to(x.dtype)
        q = self.cfg.num_queries
        x = torch.cat([self.query_embed.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1) + pos
        x = self._fuse(0, x, clip_maps, (h, w))
        outs = []
        for i, blk in enumerate(self.blocks, start=1):
            x = self._fuse(i, blk(x), clip_maps, (h, w))
            if i in decode:
                outs.append((x[:, :q], tokens_to_map(x[:, q:], h, w).contiguous()))
            if i == max(decode):
                break  # later blocks feed no output
            if i < len(self.blocks):
                x = x + pos
        return outs


class MLP(nn.Module):
    """Linear (or 1x1 conv) layers with ReLU between."""

    def __init__(self, c_in: int, hidden: int, c_out: int, layers: int, conv: bool = False):
        super().__init__()
        dims = [c_in] + [hidden] * (layers - 1) + [c_out]
        make = (lambda a, b: nn.Conv2d(a, b, 1)) if conv else nn.Linear
        self.layers = nn.ModuleList(make(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """Query MLP, pixel MLP and attention MLP: mask logits = <query, pixel> (unscaled); per CLIP
    head an attention-bias map = <query, attn_h>, rescaled by a learnable Linear(1, 1)."""

    def __init__(self, width: int, clip_heads: int, embed: int = 256, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.clip_heads, self.embed = clip_heads, embed
        self.query_mlp = MLP(width, hidden, embed, layers)
        self.pix_mlp = MLP(width, hidden, embed, layers, conv=True)
        self.attn_mlp = MLP(width, hidden, embed * clip_heads, layers, conv=True)
        self.bias_scaling = nn.Linear(1, 1)

    def forward(self, query: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q, D), x (B, D, h, w) -> masks (B, Q, h, w), bias (B, heads, Q, h, w)."""
        query = self.query_mlp(query)
        masks = torch.einsum("bqc,bchw->bqhw", query, self.pix_mlp(x))
        attn = self.attn_mlp(x)
        b, _, h, w = attn.shape
        attn = attn.view(b, self.clip_heads, self.embed, h, w)
        bias = torch.einsum("bqc,bnchw->bnqhw", query, attn)
        bias = self.bias_scaling(bias.unsqueeze(-1)).squeeze(-1)
        return masks, bias
