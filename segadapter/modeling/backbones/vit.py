"""Plain Vision Transformer (ViT-T/S/B/L, patch 16) as a segmentation backbone.

As SegViT and the mmseg ViT use it: qkv bias, LayerNorm eps 1e-6, GELU, MLP ratio 4, no final
norm, and the class token removed right after the position embedding is added (no block sees it;
`keep_cls_token=True` keeps it, e.g. to compare with a classification ViT). The position embedding
is stored for the `img_size` grid and resized bicubically for any other input grid; inputs are
padded bottom/right to a multiple of the patch size (mmseg's "corner" padding).

Stochastic depth: `drop_path_mode="both"` (timm, the default) drops the attention and the MLP
branch; `"ffn"` drops only the MLP branch, as the mmseg 0.24 ViT does (its attention has no
DropPath; SegViT's models use it).

Stages for the Segmentor: stage i runs the blocks after the previous tap up to tap
`out_indices[i]`; what flows between stages is the NCHW token map (a (map, cls) pair when the
class token is kept) and `stage_output` hands that map to the head.

Shrunk (SegViT's query-based down-sampling, QD): block `shrink_index` takes as queries the token
map subsampled with stride 2 (`x[:, :, ::2, ::2]`), keys and values at full resolution (norm1 on
both), and its residual is the subsampled input; every later block runs at 1/32.
Parameter names follow timm (`patch_embed.proj`, `blocks.{i}.norm1/attn.qkv/attn.proj/norm2/
mlp.fc1/mlp.fc2`, `pos_embed`, `cls_token`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import Backbone
from ..layers import DropPath
from ..layers import resample_abs_pos_embed


@dataclass(frozen=True)
class ViTSpec:
    width: int
    depth: int
    heads: int

    @property
    def widths(self) -> tuple[int]:  # the shape the weight loader's architecture hint compares
        return (self.width,)

    @property
    def depths(self) -> tuple[int]:
        return (self.depth,)


VIT_SPECS = {
    "t": ViTSpec(192, 12, 3),
    "s": ViTSpec(384, 12, 6),
    "b": ViTSpec(768, 12, 12),
    "l": ViTSpec(1024, 24, 16),
}
DEFAULT_OUT_INDICES = {"t": (5, 7, 11), "s": (5, 7, 11), "b": (5, 7, 11), "l": (7, 15, 23)}
DEFAULT_DROP_PATH = {"t": 0.1, "s": 0.1, "b": 0.1, "l": 0.3}
DROP_PATH_MODES = ("both", "ffn")  # timm: both residual branches; mmseg 0.24 ViT: the FFN branch only


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; optionally with fewer queries
    (`xq`) than keys/values (the QD block), projecting only what each side needs."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"ViT width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, xq: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        if xq is None:
            q, k, v = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
            m = n
        else:
            m = xq.shape[1]
            w_q, w_kv = self.qkv.weight.split([c, 2 * c])
            b_q, b_kv = self.qkv.bias.split([c, 2 * c])
            q = F.linear(xq, w_q, b_q).reshape(b, m, h, c // h).transpose(1, 2)
            k, v = F.linear(x, w_kv, b_kv).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, m, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with `query_stride` 2 it is SegViT's QD block."""

    def __init__(self, dim: int, num_heads: int, drop_path: float, eps: float, attn_drop: float = 0.0,
                 query_stride: int = 1, drop_path_mode: str = "both"):
        super().__init__()
        self.query_stride = query_stride
        self.drop_path_mode = drop_path_mode
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, attn_drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)

    def _drop_attn(self, x: torch.Tensor) -> torch.Tensor:
        # mmseg 0.24 ViT ("ffn"): the attention branch is never dropped, only the FFN's
        return self.drop_path(x) if self.drop_path_mode == "both" else x

    def forward(self, x: torch.Tensor, hw: tuple[int, int], prefix: int) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.query_stride == 1:
            x = x + self._drop_attn(self.attn(self.norm1(x)))
        else:
            y = self.norm1(x)  # per-token norm: norm1 of the subsampled x = subsampled norm1(x)
            xq, new_hw = subsample_tokens(x, hw, prefix, self.query_stride)
            yq, _ = subsample_tokens(y, hw, prefix, self.query_stride)
            x, hw = xq + self._drop_attn(self.attn(y, yq)), new_hw
        return x + self.drop_path(self.mlp(self.norm2(x))), hw


def subsample_tokens(x: torch.Tensor, hw: tuple[int, int], prefix: int, stride: int
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Tokens of the grid subsampled as `map[:, :, ::stride, ::stride]`; prefix tokens kept."""
    b, _, c = x.shape
    grid = x[:, prefix:].reshape(b, hw[0], hw[1], c)[:, ::stride, ::stride]
    new_hw = (grid.shape[1], grid.shape[2])
    return torch.cat([x[:, :prefix], grid.reshape(b, -1, c)], dim=1), new_hw


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = -x.shape[-2] % p, -x.shape[-1] % p
        if pad_h or pad_w or torch.jit.is_tracing():  # mmseg "corner" padding: bottom/right, zeros
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(x)


def _as_pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


class ViT(Backbone):
    """ViT encoder with taps at `out_indices` (0-based block indices; the last tap must be the
    last block, pass `depth` to truncate). `forward` returns the tapped NCHW maps."""

    def __init__(self, spec: ViTSpec, img_size=224, patch_size: int = 16, in_chans: int = 3,
                 out_indices=None, drop_path_rate: float = 0.1, keep_cls_token: bool = False,
                 shrink_index: int | None = None, layer_norm_eps: float = 1e-6, attn_drop: float = 0.0,
                 depth: int | None = None, drop_path_mode: str = "both"):
        super().__init__()
        depth = spec.depth if depth is None else int(depth)
        if depth != spec.depth:
            spec = ViTSpec(spec.width, depth, spec.heads)
        self.spec = spec
        out_indices = tuple(int(i) for i in (out_indices if out_indices is not None else (depth - 1,)))
        if not out_indices or any(b <= a for a, b in zip(out_indices, out_indices[1:])) \
                or out_indices[0] < 0 or out_indices[-1] != depth - 1:
            raise ConfigError(f"ViT out_indices {list(out_indices)}: need strictly increasing block indices "
                              f"ending at the last block ({depth - 1}); set depth to use fewer blocks")
        if drop_path_mode not in DROP_PATH_MODES:
            raise ConfigError(f"ViT drop_path_mode {drop_path_mode!r}: expected one of {', '.join(DROP_PATH_MODES)}")
        if shrink_index is not None and not 0 <= shrink_index < depth:
            raise ConfigError(f"ViT shrink_index {shrink_index} is not a block index (0..{depth - 1})")
        self.out_indices = out_indices
        self.shrink_index = shrink_index
        self.drop_path_mode = drop_path_mode
        self.patch_size = patch_size
        self.keep_cls_token = keep_cls_token
        self.num_prefix_tokens = 1 if keep_cls_token else 0
        self.grid_size = tuple(math.ceil(s / patch_size) for s in _as_pair(img_size))
        c = spec.width
        self.out_channels = (c,) * len(out_indices)
        self.out_strides = tuple(patch_size * (2 if shrink_index is not None and i >= shrink_index else 1)
                                 for i in out_indices)

        self.patch_embed = PatchEmbed(patch_size, in_chans, c)
        if keep_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        n_pos = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, c))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, 0 -> rate
        self.blocks = nn.ModuleList(
            Block(c, spec.heads, dpr[i], layer_norm_eps, attn_drop, 2 if i == shrink_index else 1, drop_path_mode)
            for i in range(depth))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.keep_cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.patch_embed.proj.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.patch_embed.proj.bias)

    # ----------------------------------------------------------------- the backbone contract
    def stage_blocks(self, i: int) -> range:
        start = 0 if i == 0 else self.out_indices[i - 1] + 1
        return range(start, self.out_indices[i] + 1)

    def stage_forward(self, i: int, x):
        """Stage 0 takes the images; every stage returns the NCHW token map (with the class
        token: a (map, cls) pair) that flows to the next stage and, via stage_output, to the head."""
        if i == 0:
            tokens, hw = self.embed(x)
        else:
            tokens, hw = self._to_tokens(x)
        for j in self.stage_blocks(i):
            tokens, hw = self.blocks[j](tokens, hw, self.num_prefix_tokens)
        return self._to_map(tokens, hw)

    def stage_output(self, i: int, x) -> torch.Tensor:
        return x[0] if isinstance(x, tuple) else x

    # ----------------------------------------------------------------- pieces
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens + position embedding (resized to this grid); the class token is
        prepended only when kept (dropping it after the addition leaves the patch tokens as here)."""
        x = self.patch_embed(images)
        hw = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        pos = resample_abs_pos_embed(self.pos_embed, hw, self.grid_size, self.num_prefix_tokens)
        if self.keep_cls_token:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + pos, hw

    def _to_map(self, tokens: torch.Tensor, hw: tuple[int, int]):
        b, _, c = tokens.shape
        grid = tokens[:, self.num_prefix_tokens:].transpose(1, 2).reshape(b, c, hw[0], hw[1])
        return (grid, tokens[:, :1]) if self.keep_cls_token else grid

    def _to_tokens(self, x) -> tuple[torch.Tensor, tuple[int, int]]:
        grid, cls = x if isinstance(x, tuple) else (x, None)
        tokens = grid.flatten(2).transpose(1, 2)
        if cls is not None:
            tokens = torch.cat([cls, tokens], dim=1)
        return tokens, (grid.shape[-2], grid.shape[-1])

    # ----------------------------------------------------------------- optimiser hooks
    def layer_id(self, name: str) -> tuple[int, int]:
        """(layer id, top) for layer-wise lr decay: embeddings 0, block i -> i + 1."""
        top = len(self.blocks) + 1
        if name.startswith(("patch_embed.", "pos_embed", "cls_token")):
            return 0, top
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1, top
        return top, top

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"} if self.keep_cls_token else {"pos_embed"}


def vit(variant: str, drop_path_rate: float | None = None, out_indices=None, **kwargs) -> ViT:
    if variant not in VIT_SPECS:
        raise ConfigError(f"unknown ViT variant {variant!r}; expected one of {', '.join(VIT_SPECS)}")
    if drop_path_rate is None:
        drop_path_rate = DEFAULT_DROP_PATH[variant]
    if out_indices is None and kwargs.get("depth") is None:
        out_indices = DEFAULT_OUT_INDICES[variant]
    return ViT(VIT_SPECS[variant], drop_path_rate=drop_path_rate, out_indices=out_indices, **kwargs)
