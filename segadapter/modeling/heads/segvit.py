"""SegViT's Attention-to-Mask (ATM) decode head, as the official code runs it.

One stage per tapped backbone layer, deepest first. A stage projects its feature tokens
(Linear C -> D, LayerNorm) and runs 3 post-norm decoder layers on the class queries: self-attention,
cross-attention to the features, ReLU FFN (4D), dropout 0.1, no positional embeddings. The
cross-attention of a stage's last layer also returns its pre-softmax scaled similarity, averaged
over heads: that is the stage's (B, K, h, w) mask logit. K learnable queries (N(0, 1)) seed the
first stage; each later stage continues from the previous stage's queries. Masks accumulate as
logits on the grid of the last stage; one Linear(D, K + 1) (the extra class: "no object") gives
every stage's class logits. All stages are supervised (`losses_mask.fixed_assignment_loss`).

Prediction, in the official order: each query's mask logits are resized (bilinear) to the crop
size the model was built for (`image_size`, the official head's `image_size`), then
score[c] = sum_q softmax(cls_q)[c] * sigmoid(mask_q) without the no-object column, and the scores
are resized to the requested size (mmseg's `resize` of the head output to the input). The scores
are probabilities (`output_space`): mmseg averages sliding windows in this space and flip /
multi-scale passes as the mean of their softmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..losses.mask import IGNORE_INDEX, fixed_assignment_loss
from .base import MMSEG_MASK_SCORES, MaskClassificationHead


@dataclass
class MaskClassOutput:
    """Raw output of a mask-classification head: one entry per supervised output, last = final."""
    class_logits: list[torch.Tensor]  # (B, K, K + 1)
    mask_logits: list[torch.Tensor]  # (B, K, h, w)


# ---------------------------------------------------------------------------------------- layers
class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Queries attend to memory tokens; with `similarity`, also returns the head-averaged
    pre-softmax scaled similarity (B, Nq, Nk) - the ATM mask logits."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, similarity: bool = False):
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, -1).transpose(1, 2)
        k = self.k(mem).reshape(b, mem.shape[1], h, -1).transpose(1, 2)
        v = self.v(mem).reshape(b, mem.shape[1], h, -1).transpose(1, 2)
        drop = self.attn_drop if self.training else 0.0
        sim = None
        if similarity:
            logits = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, Nq, Nk)
            sim = logits.mean(1)
            out = F.dropout(logits.softmax(-1), drop, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), sim


class DecoderLayer(nn.Module):
    """Post-norm transformer decoder layer (as torch's TransformerDecoderLayer, ReLU, dropout)."""

    def __init__(self, dim: int, num_heads: int, ffn_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"decoder width {dim} is not divisible by {num_heads} heads")
        self.self_attn = SelfAttention(dim, num_heads, dropout)
        self.cross_attn = CrossAttention(dim, num_heads, dropout)
        self.fc1 = nn.Linear(dim, ffn_ratio * dim)
        self.fc2 = nn.Linear(ffn_ratio * dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, similarity: bool = False):
        x = self.norm1(x + self.dropout(self.self_attn(x)))
        y, sim = self.cross_attn(x, mem, similarity)
        x = self.norm2(x + self.dropout(y))
        y = self.fc2(self.dropout(F.relu(self.fc1(x))))
        return self.norm3(x + self.dropout(y)), sim


def init_decoder_weights(module: nn.Module, fused_cross: bool = False) -> None:
    """The official init: trunc-normal(0.02) Linears with zero bias, LayerNorms 1/0; the
    projections that torch's nn.MultiheadAttention holds as one fused `in_proj` (self-attention,
    and cross-attention of standard decoders when `fused_cross`) keep its xavier-uniform init."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, SelfAttention):
            nn.init.xavier_uniform_(m.qkv.weight)
        elif fused_cross and isinstance(m, CrossAttention):
            d = m.q.weight.shape[1]
            bound = math.sqrt(6.0 / (d + 3 * d))  # xavier bound of the fused (3D, D) matrix
            for lin in (m.q, m.k, m.v):
                nn.init.uniform_(lin.weight, -bound, bound)


def tokens(feature_map: torch.Tensor) -> torch.Tensor:
    return feature_map.flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------------------------- heads
class FixedAssignmentHead(MaskClassificationHead):
    """What the ATM heads share: the official fixed-assignment loss (query i to class i) and the
    official prediction order (masks resized to the crop, combined, scores resized)."""

    num_classes: int
    output_space = MMSEG_MASK_SCORES
    image_size: tuple[int, int] | None = None  # masks are resized here before the combination

    def _loss_options(self, ce_weight, focal_weight, dice_weight, no_object_weight, focal_alpha,
                      focal_gamma, ignore_index):
        self.loss_options = dict(ce_weight=ce_weight, focal_weight=focal_weight, dice_weight=dice_weight,
                                 no_object_weight=no_object_weight, focal_alpha=focal_alpha,
                                 focal_gamma=focal_gamma, ignore_index=ignore_index)

    def final_output(self, raw: MaskClassOutput) -> tuple[torch.Tensor, torch.Tensor]:
        return raw.class_logits[-1], raw.mask_logits[-1]

    def masks_at(self, masks: torch.Tensor, raw, size):
        """As the official head: the mask logits at `image_size` (or straight at `size` when the
        head has none), the scores then resized to `size`."""
        masks = masks.float()
        target = self.image_size or (tuple(size) if size is not None else None)
        if target is not None and tuple(masks.shape[-2:]) != tuple(target):
            masks = F.interpolate(masks, size=tuple(target), mode="bilinear", align_corners=False)
        return masks, size

    def classes_in(self, state):
        w = state.get("class_embed.weight")  # K classes + no-object
        return None if w is None else int(w.shape[0]) - 1

    def loss(self, raw: MaskClassOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return fixed_assignment_loss(raw.class_logits, raw.mask_logits, labels, self.num_classes,
                                     **self.loss_options)


class ATMHead(FixedAssignmentHead):
    """SegViT's cascaded ATM head. `in_channels`: channels of the tapped maps, shallow to deep
    (as the backbone lists them); module index i belongs to the i-th stage processed (deepest first,
    like the official `decoder_{i+1}`)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 384,
                 num_heads: int = 12, num_layers: int = 3, dropout: float = 0.1, *,
                 ce_weight: float = 1.0, focal_weight: float = 20.0, dice_weight: float = 1.0,
                 no_object_weight: float = 0.1, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 ignore_index: int = IGNORE_INDEX, output_stride: int = 16,
                 image_size: tuple[int, int] | None = None):
        super().__init__()
        if num_layers < 1 or not in_channels:
            raise ConfigError("ATM head needs at least one input and one decoder layer")
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.image_size = tuple(image_size) if image_size is not None else None
        deepest_first = list(in_channels)[::-1]
        self.input_proj = nn.ModuleList(nn.Linear(c, embed_dim) for c in deepest_first)
        self.proj_norm = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in deepest_first)
        self.decoders = nn.ModuleList(
            nn.ModuleList(DecoderLayer(embed_dim, num_heads, 4, dropout) for _ in range(num_layers))
            for _ in deepest_first)
        self.queries = nn.Embedding(num_classes, embed_dim)  # N(0, 1)
        self.class_embed = nn.Linear(embed_dim, num_classes + 1)
        self._loss_options(ce_weight, focal_weight, dice_weight, no_object_weight, focal_alpha,
                           focal_gamma, ignore_index)
        init_decoder_weights(self)
        nn.init.normal_(self.queries.weight)

    def forward(self, feats: list[torch.Tensor]) -> MaskClassOutput:
        feats = list(feats)[::-1]
        if len(feats) != len(self.decoders):
            raise ValueError(f"ATM head built for {len(self.decoders)} inputs, got {len(feats)}")
        b = feats[0].shape[0]
        q = self.queries.weight.unsqueeze(0).expand(b, -1, -1)
        class_logits, stage_masks = [], []
        for f, proj, norm, layers in zip(feats, self.input_proj, self.proj_norm, self.decoders):
            mem = norm(proj(tokens(f)))
            for j, layer in enumerate(layers):
                q, sim = layer(q, mem, similarity=j == len(layers) - 1)
            class_logits.append(self.class_embed(q))
            stage_masks.append(sim.reshape(b, -1, *f.shape[-2:]))
        size = stage_masks[-1].shape[-2:]  # the grid of the last (shallowest) stage
        cumulative, total = [], 0
        for m in stage_masks:
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            total = total + m
            cumulative.append(total)
        return MaskClassOutput(class_logits, cumulative)
