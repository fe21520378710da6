"""Hungarian matching of predicted masks to ground-truth masks (Mask2Former / SAN).

Cost per (query, target) = class_w * (-p_query(target class)) + mask_w * BCE + dice_w * dice, the
mask terms on points sampled uniformly at random, the same points for every mask of an image.
The assignment itself is scipy's `linear_sum_assignment`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps x (N, C, H, W) at coords (N, P, 2) in [0, 1] (x then y, over the
    whole map extent, align_corners=False) -> (N, C, P)."""
    return F.grid_sample(x, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear", align_corners=False).squeeze(3)


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits x (T, P) targets -> (Q, T): mean over points of BCE-with-logits."""
    pos = F.softplus(-logits)  # BCE against target 1
    neg = F.softplus(logits)  # BCE against target 0
    return (pos @ targets.t() + neg @ (1 - targets).t()) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) x (T, P) -> (Q, T): 1 - (2 |p t| + 1) / (|p| + |t| + 1), p = sigmoid(logits)."""
    p = logits.sigmoid()
    inter = p @ targets.t()
    return 1 - (2 * inter + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)


class HungarianMatcher:
    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 112 * 112):
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    def cost_matrix(self, logits: torch.Tensor, point_logits: torch.Tensor, labels: torch.Tensor,
                    point_targets: torch.Tensor) -> torch.Tensor:
        """logits (Q, K+1), point_logits (Q, P), labels (T,), point_targets (T, P) -> (Q, T)."""
        cost_class = -logits.float().softmax(-1)[:, labels]
        point_logits, point_targets = point_logits.float(), point_targets.float()
        return (self.cost_class * cost_class + self.cost_mask * pairwise_sigmoid_ce(point_logits, point_targets)
                + self.cost_dice * pairwise_dice(point_logits, point_targets))

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, masks: torch.Tensor,
                 targets: list[tuple[torch.Tensor, torch.Tensor]],
                 generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """logits (B, Q, K+1), masks (B, Q, h, w) logits; targets per image: (labels (T,), masks
        (T, H, W) in {0, 1}). Returns per image (query indices, target indices), by query."""
        out = []
        for b, (labels, tgt_masks) in enumerate(targets):
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.long)
                out.append((empty, empty))
                continue
            coords = torch.rand(1, self.num_points, 2, device=masks.device, generator=generator)
            pred = point_sample(masks[b][:, None].float(), coords.expand(masks.shape[1], -1, -1))[:, 0]
            tgt = point_sample(tgt_masks[:, None].to(pred.dtype), coords.expand(len(labels), -1, -1))[:, 0]
            out.append(self.assign(self.cost_matrix(logits[b], pred, labels, tgt)))
        return out

    @staticmethod
    def assign(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimum-cost one-to-one assignment of a (Q, T) cost matrix (Q >= T): (rows, cols)."""
        rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
        return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
