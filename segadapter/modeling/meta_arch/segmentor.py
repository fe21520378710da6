"""The Segmentor: wires a staged backbone (+ optional adapters after every stage) to a decode head.

It holds no method-specific logic: the head owns its prediction and loss, the adapters own
their coarse map and its loss. Eval `model(images)` returns per-pixel class scores (B, K, h, w)
at `output_stride` (or at the input size, for heads that declare `at_input_size`);
`model(images, labels)` returns every weighted "loss_*" term and their sum "loss" - the
predictions ("logits", and the adapters' "coarse" map) only on request (`predictions=True`), or
in training mode without labels.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backbones.base import Backbone
from ..heads.base import DecodeHead
from .. import model_folder
from .base import SegmentationModel

# Optimizer parameter groups by top-level module: the config's lr multipliers are keyed by these.
PARAM_GROUPS = {"backbone": "backbone", "adapters": "adapter", "decode_head": "head"}


class Segmentor(SegmentationModel):
    """The encoder-decoder meta-architecture; the model contract is `SegmentationModel`'s."""

    def __init__(self, backbone: Backbone, decode_head: DecodeHead, num_classes: int,
                 adapters: nn.ModuleList | None = None):
        super().__init__()
        self.backbone = backbone
        self.adapters = adapters
        self.decode_head = decode_head
        if decode_head.num_classes != num_classes:
            raise ValueError(f"the decode head predicts {decode_head.num_classes} classes, not {num_classes}")

    def on_weights_loaded(self) -> None:
        """The head's hook, and an open-vocabulary model embeds its names by text if it now can
        (e.g. CLIP arrived)."""
        self.decode_head.on_weights_loaded()
        if self.vocabulary is not None:
            self.vocabulary.refresh()

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

    def forward_raw(self, images: torch.Tensor):
        """(the head's raw output, the adapters' side outputs): what `forward` predicts from and
        computes the losses on. Other meta-architectures run their parts differently here."""
        feats, sides = self.extract_features(images)
        return self.decode_head(feats), sides

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, out_size=None,
                predictions: bool = False):
        """`out_size`: where the caller will resize the scores to (the image's own size); a head
        that resizes its masks to the output itself (SAN) predicts there, the others ignore it.
        With `labels`, the loss terms; the predictions too with `predictions=True`."""
        raw, sides = self.forward_raw(images)
        head = self.decode_head
        size = images.shape[-2:] if head.at_input_size else None
        if out_size is not None and head.takes_output_size:
            size = tuple(int(s) for s in out_size)
        if labels is None and not self.training:
            return head.predict(raw, size)
        out: dict[str, torch.Tensor] = {}
        coarse = self.adapters.coarse_map(sides) if sides else None
        if labels is None or predictions:
            out["logits"] = head.predict(raw, size)
            if coarse is not None:
                out["coarse"] = coarse
        if labels is not None:
            losses = head.loss(raw, labels)
            if coarse is not None:
                losses.update(self.adapters.loss(coarse, labels))
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
        top = self.backbone.num_layer_ids
        if top is None:
            return None
        group, _, rest = name.partition(".")
        return (self.backbone.layer_id(rest) if group == "backbone" else top), top

    def no_weight_decay(self) -> set[str]:
        """Parameter names the backbone and head exempt from weight decay (position embeddings,
        queries, tokens), as full model names."""
        return ({f"decode_head.{n}" for n in self.decode_head.no_weight_decay()}
                | {f"backbone.{n}" for n in self.backbone.no_weight_decay()})

    def save_pretrained(self, directory, **extra: Any) -> None:
        """Write `config.json` + `model.safetensors` (see `segadapter.from_pretrained`)."""
        model_folder.save_pretrained(self, directory, **extra)
