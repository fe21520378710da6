"""The head: learned queries read the stride-4 map once (one cross-attention), then each query
gives class logits (K + 1, the last "no object") and a mask (its dot product with the pixel
embeddings). Prediction is `MaskClassificationHead`'s; the loss is the toolkit's Hungarian matcher
and mask criterion on `padded_targets`, the glue any query head shares."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segadapter.modeling.heads.base import DETECTRON2_MASK_SCORES, MaskClassificationHead
from segadapter.modeling.losses.mask_criterion import MaskClassificationCriterion, padded_targets


@dataclass
class QueryOutput:
    class_logits: torch.Tensor  # (B, Q, K + 1)
    mask_logits: torch.Tensor  # (B, Q, h, w) on the stride-4 grid


class TinyQueryHead(MaskClassificationHead):
    output_space = DETECTRON2_MASK_SCORES  # TTA averages the probabilities themselves
    takes_output_size = True  # masks are resized to the output before the class combination

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, num_queries: int = 6, dim: int = 16,
                 ignore_index: int = 255):
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.pixel = nn.Conv2d(in_channels[0], dim, 1)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.5)
        self.classify = nn.Linear(dim, num_classes + 1)
        self.criterion = MaskClassificationCriterion(num_points=64)

    def forward(self, feats: list[torch.Tensor]) -> QueryOutput:
        pixels = self.pixel(feats[0])  # (B, D, h, w)
        flat = pixels.flatten(2)  # (B, D, N)
        q = self.queries.expand(pixels.shape[0], -1, -1)
        q = q + torch.softmax(q @ flat / flat.shape[1] ** 0.5, -1) @ flat.transpose(1, 2)
        return QueryOutput(self.classify(q), torch.einsum("bqd,bdhw->bqhw", q, pixels))

    def final_output(self, raw: QueryOutput):
        return raw.class_logits, raw.mask_logits

    def masks_at(self, masks: torch.Tensor, raw: QueryOutput, size):
        return F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False), None

    def loss(self, raw: QueryOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = padded_targets(labels, tuple(labels.shape[-2:]), 1, self.num_classes, self.ignore_index)
        return self.criterion([(raw.class_logits, raw.mask_logits)], targets)

    def classes_in(self, state: dict[str, torch.Tensor]) -> int | None:
        weight = state.get("classify.weight")
        return None if weight is None else weight.shape[0] - 1
