"""SegViT-Shrunk's head: query-based up-sampling (QU) followed by one ATM stage.

QU: a grid of learnable queries (40 x 40 = 1,600: the 1/16 grid of a 640 crop, resized bicubically
to the input's 1/16 grid) runs through one standard 3-layer post-norm decoder per tapped map,
shallow to deep - first the projected 1/16 features (before the QD block), then the 1/32 ones -
so the output keeps the 1/16 grid. Those tokens are the keys/values (no projection) of a single ATM
stage of 3 layers with its own K class queries; each layer's mask (not cumulative) and class
logits are supervised.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ..layers import resample_abs_pos_embed
from ..losses.mask import IGNORE_INDEX
from .segvit import DecoderLayer, FixedAssignmentHead, MaskClassOutput, init_decoder_weights, tokens


class ShrunkATMHead(FixedAssignmentHead):
    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 512,
                 num_heads: int = 16, num_layers: int = 3, dropout: float = 0.1, query_grid: int = 40, *,
                 ce_weight: float = 1.0, focal_weight: float = 20.0, dice_weight: float = 1.0,
                 no_object_weight: float = 0.1, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 ignore_index: int = IGNORE_INDEX, output_stride: int = 16,
                 image_size: tuple[int, int] | None = None):
        super().__init__()
        if num_layers < 1 or not in_channels:
            raise ConfigError("Shrunk ATM head needs at least one input and one decoder layer")
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.image_size = tuple(image_size) if image_size is not None else None
        self.query_grid = query_grid
        self.input_proj = nn.ModuleList(nn.Linear(c, embed_dim) for c in in_channels)
        self.proj_norm = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in in_channels)
        self.qu_decoders = nn.ModuleList(
            nn.ModuleList(DecoderLayer(embed_dim, num_heads, 4, dropout) for _ in range(num_layers))
            for _ in in_channels)
        self.grid_queries = nn.Embedding(query_grid * query_grid, embed_dim)  # N(0, 1)
        self.atm_layers = nn.ModuleList(DecoderLayer(embed_dim, num_heads, 4, dropout) for _ in range(num_layers))
        self.queries = nn.Embedding(num_classes, embed_dim)
        self.class_embed = nn.Linear(embed_dim, num_classes + 1)
        self._loss_options(ce_weight, focal_weight, dice_weight, no_object_weight, focal_alpha,
                           focal_gamma, ignore_index)
        init_decoder_weights(self.qu_decoders, fused_cross=True)  # torch's standard decoder layers
        init_decoder_weights(self.atm_layers)
        for m in (*self.input_proj, self.class_embed):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.grid_queries.weight)
        nn.init.normal_(self.queries.weight)

    def forward(self, feats: list[torch.Tensor]) -> MaskClassOutput:
        if len(feats) != len(self.qu_decoders):
            raise ValueError(f"Shrunk head built for {len(self.qu_decoders)} inputs, got {len(feats)}")
        b = feats[0].shape[0]
        hw = feats[0].shape[-2:]  # the 1/16 grid of the first tap
        g = self.query_grid
        grid_q = resample_abs_pos_embed(self.grid_queries.weight.unsqueeze(0), hw, (g, g))
        x = grid_q.expand(b, -1, -1)
        for f, proj, norm, layers in zip(feats, self.input_proj, self.proj_norm, self.qu_decoders):
            mem = norm(proj(tokens(f)))
            for layer in layers:
                x, _ = layer(x, mem)
        q = self.queries.weight.unsqueeze(0).expand(b, -1, -1)
        class_logits, masks = [], []
        for layer in self.atm_layers:
            q, sim = layer(q, x, similarity=True)
            class_logits.append(self.class_embed(q))
            masks.append(sim.reshape(b, -1, *hw))
        return MaskClassOutput(class_logits, masks)
