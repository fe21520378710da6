"""Mask-classification loss (Mask2Former's set criterion, as SAN trains with it).

For each supervised output (the last one and the deep-supervision ones, each matched on its
own): cross-entropy over K+1 classes (no-object weight 0.1) of every query against its matched
target class or no-object; for matched pairs BCE and dice on points chosen by importance
sampling (3x oversampled random points, the 75% most uncertain, |logit| smallest, plus 25%
uniform), normalised by the number of target masks. Semantic labels become one binary mask per
class present (ignored pixels are negatives of every mask).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.padding import pad_to_multiple
from .mask import dice_loss
from .matcher import HungarianMatcher, point_sample


def semantic_to_targets(labels: torch.Tensor, num_classes: int, ignore_index: int = 255
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, H, W) labels -> per image (classes present (T,), binary masks (T, H, W) float)."""
    out = []
    for lab in labels:
        classes = torch.unique(lab)
        classes = classes[(classes != ignore_index) & (classes >= 0)]
        if (classes >= num_classes).any():
            raise ValueError(f"label {int(classes.max())} is out of range for {num_classes} classes")
        out.append((classes, (lab[None] == classes[:, None, None]).float()))
    return out


def padded_targets(labels: torch.Tensor, image_size: tuple[int, int], divisor: int, num_classes: int,
                   ignore_index: int = 255) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Targets on the grid of masks predicted for a padded input: (B, H, W) labels resized
    (nearest) to the input's `image_size`, padded at the bottom/right with `ignore_index` to
    multiples of `divisor` (as the input was), then one binary mask per class present."""
    if labels.shape[-2:] != tuple(image_size):
        labels = F.interpolate(labels[:, None].float(), size=tuple(image_size), mode="nearest")[:, 0].long()
    labels = pad_to_multiple(labels, divisor, value=ignore_index)
    return semantic_to_targets(labels, num_classes, ignore_index)


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def importance_points(logits: torch.Tensor, num_points: int, oversample: float, ratio: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (N, 1, h, w) -> coords (N, num_points, 2) in [0, 1]: the int(ratio * num_points)
    most uncertain of int(oversample * num_points) random points, then uniform ones."""
    n = logits.shape[0]
    dev = logits.device
    candidates = torch.rand(n, int(num_points * oversample), 2, device=dev, generator=generator)
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()
    n_unc = int(ratio * num_points)
    idx = uncertainty.topk(n_unc, dim=1).indices
    picked = torch.gather(candidates, 1, idx[..., None].expand(-1, -1, 2))
    rand = torch.rand(n, num_points - n_unc, 2, device=dev, generator=generator)
    return torch.cat([picked, rand], dim=1)


class MaskClassificationCriterion(nn.Module):
    def __init__(self, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 no_object_weight: float = 0.1, num_points: int = 112 * 112, oversample: float = 3.0,
                 importance: float = 0.75):
        super().__init__()
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.no_object_weight = no_object_weight
        self.num_points, self.oversample, self.importance = num_points, oversample, importance
        self.matcher = HungarianMatcher(class_weight, mask_weight, dice_weight, num_points)

    def class_loss(self, logits: torch.Tensor, indices, targets) -> torch.Tensor:
        """Weighted CE over (B, Q, K+1) logits; unmatched queries target no-object (index K)."""
        k = logits.shape[-1] - 1
        target = torch.full(logits.shape[:2], k, dtype=torch.long, device=logits.device)
        for b, ((src, tgt), (labels, _)) in enumerate(zip(indices, targets)):
            target[b, src.to(logits.device)] = labels[tgt.to(labels.device)].to(logits.device)
        weight = torch.ones(k + 1, device=logits.device)
        weight[k] = self.no_object_weight
        return F.cross_entropy(logits.float().transpose(1, 2), target, weight)

    def mask_losses(self, masks: torch.Tensor, indices, targets, num_masks: float,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.cat([s + b * masks.shape[1] for b, (s, _) in enumerate(indices)]).to(masks.device)
        if src.numel() == 0:  # no target in the batch: zero, but keep the graph
            zero = masks.sum() * 0.0
            return zero, zero
        pred = masks.flatten(0, 1)[src][:, None].float()
        tgt = torch.cat([m[t.to(m.device)] for (_, t), (_, m) in zip(indices, targets)])[:, None].to(pred)
        with torch.no_grad():
            coords = importance_points(pred, self.num_points, self.oversample, self.importance, generator)
            point_tgt = point_sample(tgt, coords)[:, 0]
        point_pred = point_sample(pred, coords)[:, 0]
        return sigmoid_ce_loss(point_pred, point_tgt, num_masks), dice_loss(point_pred, point_tgt).sum() / num_masks

    def forward(self, outputs: list[tuple[torch.Tensor, torch.Tensor]],
                targets: list[tuple[torch.Tensor, torch.Tensor]],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """outputs: [(class logits (B, Q, K+1), mask logits (B, Q, h, w))], deep-supervision
        ones first, the final one last. Returns weighted 'loss_ce', 'loss_mask', 'loss_dice'
        (final output) and the same with '_{i}' for the i-th deep-supervision output."""
        num_masks = max(float(sum(len(labels) for labels, _ in targets)), 1.0)
        losses = {}
        for j, (logits, masks) in enumerate(outputs):
            suffix = "" if j == len(outputs) - 1 else f"_{j}"
            indices = self.matcher(logits, masks, targets, generator)
            bce, dice = self.mask_losses(masks, indices, targets, num_masks, generator)
            losses["loss_ce" + suffix] = self.class_weight * self.class_loss(logits, indices, targets)
            losses["loss_mask" + suffix] = self.mask_weight * bce
            losses["loss_dice" + suffix] = self.dice_weight * dice
        return losses
