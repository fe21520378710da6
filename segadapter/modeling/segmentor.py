"""The Segmentor: wires a staged backbone (+ optional adapters after every stage) to a decode head.

It holds no method-specific logic: the head owns its prediction and loss, the adapters own
their coarse map and its loss. Eval `model(images)` returns per-pixel class scores (B, K, h, w)
at `output_stride`; `model(images, labels)` returns those as "logits", every weighted "loss_*"
term and their sum "loss".
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Optimizer parameter groups by top-level module: the config's lr multipliers are keyed by these.
PARAM_GROUPS = {"backbone": "backbone", "adapters": "adapter", "decode_head": "head"}


class Segmentor(nn.Module):
    def __init__(self, backbone: nn.Module, decode_head: nn.Module, num_classes: int,
                 adapters: nn.ModuleList | None = None):
        super().__init__()
        self.backbone = backbone
        self.adapters = adapters
        self.decode_head = decode_head
        self.num_classes = num_classes
        self.config: dict[str, Any] = {}

    @property
    def output_stride(self) -> int:
        return self.decode_head.output_stride

    def extract_features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stage maps for the head, and the adapters' side outputs (empty without adapters).

        With adapters, the adapted map of stage i is both the stage's output to the head and the
        input of stage i+1 ("semantic flow")."""
        feats, sides = [], []
        x = images
        for i in range(len(self.backbone.out_channels)):
            x = self.backbone.stage_forward(i, x)
            if self.adapters is not None:
                x, side = self.adapters[i](x)
                sides.append(side)
            feats.append(self.backbone.stage_output(i, x))
        return feats, sides

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        feats, sides = self.extract_features(images)
        raw = self.decode_head(feats)
        if labels is None and not self.training:
            return self.decode_head.predict(raw)
        out: dict[str, torch.Tensor] = {"logits": self.decode_head.predict(raw)}
        if sides:
            out["coarse"] = self.adapters.coarse_map(sides)
        if labels is not None:
            losses = self.decode_head.loss(raw, labels)
            if sides:
                losses.update(self.adapters.loss(out["coarse"], labels))
            out.update(losses)
            out["loss"] = sum(losses.values())
        return out

    # -- what the optimizer needs to know ------------------------------------------------------

    def param_group(self, name: str) -> str:
        """'backbone', 'adapter' or 'head' for a parameter name."""
        return PARAM_GROUPS.get(name.split(".", 1)[0], "head")

    def layer_id(self, name: str) -> tuple[int, int] | None:
        """(depth id, top id) for layer-wise lr decay, from the backbone; None when the backbone
        has no layer ids. Everything outside the backbone sits at the top."""
        if not hasattr(self.backbone, "layer_id"):
            return None
        top = self.backbone.num_layer_ids
        group, _, rest = name.partition(".")
        return (self.backbone.layer_id(rest) if group == "backbone" else top), top

    def save_pretrained(self, directory, **extra: Any) -> None:
        """Write `config.json` + `model.safetensors` (see `segadapter.from_pretrained`)."""
        from .hub import save_pretrained

        save_pretrained(self, directory, **extra)
