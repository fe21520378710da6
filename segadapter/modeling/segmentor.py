"""The Segmentor: backbone (+ optional adapter after every stage) + decode head + loss."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .losses import IGNORE_INDEX, seg_cross_entropy


class Segmentor(nn.Module):
    """Encoder-decoder segmentation model.

    With `adapters`, the adapted map of stage i is both the stage's output to the head and the
    input of stage i+1 ("semantic flow"); the adapters' side outputs, resized to the head's
    stride-4 grid and summed, form the coarse map supervised with weight `coarse_weight`.
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, num_classes: int,
                 adapters: nn.ModuleList | None = None, coarse_weight: float = 0.4,
                 ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.backbone = backbone
        self.adapters = adapters
        self.decode_head = decode_head
        self.num_classes = num_classes
        self.coarse_weight = coarse_weight
        self.ignore_index = ignore_index
        self.config: dict[str, Any] = {}

    def extract_features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stage maps for the head, and the adapters' side outputs (empty without adapters)."""
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
        logits = self.decode_head(feats)
        if labels is None and not self.training:
            return logits
        out: dict[str, torch.Tensor] = {"logits": logits}
        if sides and (self.training or labels is not None):
            out["coarse"] = self.coarse_map(sides, logits.shape[-2:])
        if labels is not None:
            out.update(self.loss(out, labels))
        return out

    @staticmethod
    def coarse_map(sides: list[torch.Tensor], size) -> torch.Tensor:
        coarse = 0
        for s in sides:
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            coarse = coarse + s
        return coarse

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """CE(main) + coarse_weight * CE(coarse); both upsampled to the label size."""
        losses = {"loss_main": seg_cross_entropy(outputs["logits"], labels, self.ignore_index)}
        total = losses["loss_main"]
        if "coarse" in outputs:
            losses["loss_coarse"] = seg_cross_entropy(outputs["coarse"], labels, self.ignore_index)
            total = total + self.coarse_weight * losses["loss_coarse"]
        losses["loss"] = total
        return losses

    def save_pretrained(self, directory, **extra: Any) -> None:
        """Write `config.json` + `model.safetensors` (see `segadapter.from_pretrained`)."""
        from .hub import save_pretrained

        save_pretrained(self, directory, **extra)
