"""CLIP (Radford et al. 2021) written in-tree: a vision transformer and a causal text transformer
whose embeddings meet in a shared space.

Module and parameter names follow OpenAI's release, so its state dicts (and open_clip's, which
use the same names) load 1:1: `visual.conv1`, `visual.class_embedding`,
`visual.positional_embedding`, `visual.ln_pre`, `visual.transformer.resblocks.N.{ln_1,
attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `visual.ln_post`,
`visual.proj`, `token_embedding`, `positional_embedding`, `transformer.resblocks.N.*`,
`ln_final`, `text_projection`, `logit_scale`. Tokens are kept batch-first (B, L, C); attention
runs through `scaled_dot_product_attention`.

The vision tower also exposes its pieces (`embed`, the blocks, `pool`) so that SAN can tap
intermediate tokens and run its last blocks with an attention bias.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.pos_embed import resample_abs_pos_embed


@dataclass(frozen=True)
class ClipVisionConfig:
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class ClipTextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12


@dataclass(frozen=True)
class ClipConfig:
    embed_dim: int = 512
    vision: ClipVisionConfig = field(default_factory=ClipVisionConfig)
    text: ClipTextConfig = field(default_factory=ClipTextConfig)
    act: str = "quick_gelu"  # OpenAI weights; open_clip's LAION ViTs use "gelu"

    def with_act(self, act: str) -> "ClipConfig":
        return replace(self, act=act)


CLIP_CONFIGS = {
    "vit-b16": ClipConfig(512, ClipVisionConfig(224, 16, 768, 12, 12), ClipTextConfig(width=512, heads=8)),
    "vit-b32": ClipConfig(512, ClipVisionConfig(224, 32, 768, 12, 12), ClipTextConfig(width=512, heads=8)),
    "vit-l14": ClipConfig(768, ClipVisionConfig(224, 14, 1024, 24, 16), ClipTextConfig(width=768, heads=12)),
    "vit-l14-336": ClipConfig(768, ClipVisionConfig(336, 14, 1024, 24, 16), ClipTextConfig(width=768, heads=12)),
}


def clip_config(name_or_config: str | ClipConfig) -> ClipConfig:
    if isinstance(name_or_config, ClipConfig):
        return name_or_config
    try:
        return CLIP_CONFIGS[name_or_config]
    except KeyError:
        raise ValueError(f"unknown CLIP config {name_or_config!r}; known: {', '.join(CLIP_CONFIGS)}") from None


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _activation(act: str) -> nn.Module:
    if act == "quick_gelu":
        return QuickGELU()
    if act == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown CLIP activation {act!r}; expected quick_gelu or gelu")


class ClipAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names (fused q/k/v)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x: (B, L, C); bias: additive, broadcastable to (B, heads, L, L)."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal and bias is None)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, act: str = "quick_gelu", mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = ClipAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, hidden), gelu=_activation(act), c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias, causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, act: str = "quick_gelu", mlp_ratio: float = 4.0):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, act, mlp_ratio) for _ in range(layers))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, bias, causal)
        return x


def resize_pos_embed(pos: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], prefix: int = 1) -> torch.Tensor:
    """CLIP's (prefix + H*W, C) position embedding resampled to `dst` (bicubic, class-token row
    kept); differentiable, and always resampled while tracing so an ONNX graph serves every size."""
    return resample_abs_pos_embed(pos[None], dst, src, prefix)[0]


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ClipVisionConfig, embed_dim: int, act: str = "quick_gelu"):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.patch_size = cfg.patch_size
        self.grid_size = (cfg.grid, cfg.grid)
        self.conv1 = nn.Conv2d(3, w, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.grid ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, act, cfg.mlp_ratio)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))

    @property
    def width(self) -> int:
        return self.cfg.width

    @property
    def heads(self) -> int:
        return self.cfg.heads

    def embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patchify, prepend the class token, add the (resized) position embedding, ln_pre.
        Returns tokens (B, 1 + h*w, C) and the patch grid (h, w)."""
        x = self.conv1(pixels)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + resize_pos_embed(self.positional_embedding, self.grid_size, (h, w)).to(x.dtype)
        return self.ln_pre(x), (h, w)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """ln_post + projection of (…, C) tokens (the class token, or SAN's SLS tokens)."""
        return self.ln_post(tokens) @ self.proj

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x, _ = self.embed(pixels)
        x = self.transformer(x)
        return self.pool(x[:, 0])


class CLIP(nn.Module):
    """Image and text towers; `encode_image`/`encode_text` give unnormalised embeddings."""

    def __init__(self, config: ClipConfig | str = "vit-b16"):
        super().__init__()
        cfg = clip_config(config)
        self.config = cfg
        t = cfg.text
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.act)
        self.transformer = Transformer(t.width, t.layers, t.heads, cfg.act)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.zeros(t.context_length, t.width))
        self.ln_final = nn.LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.zeros(t.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(0.0))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """OpenAI's initialisation scheme (normal with width-dependent std; logit scale 1/0.07)."""
        if self.logit_scale.is_meta:
            return
        v, t = self.config.vision, self.config.text
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.visual.class_embedding, std=v.width ** -0.5)
        nn.init.normal_(self.visual.positional_embedding, std=v.width ** -0.5)
        nn.init.normal_(self.visual.proj, std=v.width ** -0.5)
        nn.init.normal_(self.text_projection, std=t.width ** -0.5)
        nn.init.kaiming_uniform_(self.visual.conv1.weight, a=5 ** 0.5)
        for tower in (self.visual.transformer, self.transformer):
            width, depth = tower.width, len(tower.resblocks)
            proj_std = width ** -0.5 * (2 * depth) ** -0.5
            for blk in tower.resblocks:
                nn.init.normal_(blk.attn.in_proj_weight, std=width ** -0.5)
                nn.init.zeros_(blk.attn.in_proj_bias)
                nn.init.normal_(blk.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(blk.attn.out_proj.bias)
                nn.init.normal_(blk.mlp.c_fc.weight, std=(2 * width) ** -0.5)
                nn.init.zeros_(blk.mlp.c_fc.bias)
                nn.init.normal_(blk.mlp.c_proj.weight, std=proj_std)
                nn.init.zeros_(blk.mlp.c_proj.bias)
        self.logit_scale.fill_(torch.log(torch.tensor(1 / 0.07)).item())

    @property
    def context_length(self) -> int:
        return self.config.text.context_length

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (B, 3, H, W) normalised with CLIP's mean/std -> (B, embed_dim)."""
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L<=context) token ids, end token = the largest id of each row -> (B, embed_dim)."""
        n = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)
        x = self.ln_final(self.transformer(x, causal=True))
        # the feature is read at the end token, the largest id of each row
        x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        return x @ self.text_projection

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image-to-text logits, text-to-image logits), as CLIP's contrastive objective uses."""
        img = F.normalize(self.encode_image(pixels), dim=-1)
        txt = F.normalize(self.encode_text(ids), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        return logits, logits.t()
