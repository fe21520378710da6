"""The backbone contract (`Backbone`): a staged encoder the meta-architectures run stage by stage,
so adapters can rewrite what flows between stages. Every capability is declared here with its
default; code outside this file reads them directly, never probing.

    out_channels           channels of each stage's output to the head
    out_strides            stride of each stage's output
    stage_forward(i, x)    stage i on what stage i-1 handed on (the image for i = 0)
    stage_output(i, x)     what the head sees of stage i (default: x itself)
    num_layer_ids          the top depth id for layer-wise lr decay; None: no layer ids
    layer_id(name)         a parameter's depth id (backbones that declare `num_layer_ids`)
    no_weight_decay()      parameter names (relative to the backbone) exempt from weight decay
"""
from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    out_channels: tuple[int, ...]
    out_strides: tuple[int, ...]
    num_layer_ids: int | None = None

    def stage_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stage_output(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def layer_id(self, name: str) -> int:
        raise NotImplementedError(f"{type(self).__name__} declares no layer ids (num_layer_ids is None)")

    def no_weight_decay(self) -> set[str]:
        return set()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output to the head."""
        feats = []
        for i in range(len(self.out_channels)):
            x = self.stage_forward(i, x)
            feats.append(self.stage_output(i, x))
        return feats
