"""Mask-classification losses with SegViT's fixed assignment (query i <-> class i).

For an image, class c is "present" when some non-ignored pixel has label c. Per output:
  - CE over K + 1 classes for every query: target c if class c is present, else "no object"
    (index K, weight `no_object_weight`); the weighted mean over the batch.
  - For present classes only, query c's mask logits (bilinearly resized to the label size) against
    `labels == c`, ignored pixels counting as negatives: sigmoid focal loss (mean over pixels) and
    dice `1 - (2I + 1) / (P + T + 1)`, each summed over masks and divided by the number of present
    masks in the batch (at least 1).

Memory: at label resolution these terms need a few (masks, H, W) fp32 tensors - 150 masks of
512 x 512 are 157 MB each, and autograd would keep several of them per output. Instead the masks
are processed in chunks of at most `chunk_elements` full-resolution values, and in training each
chunk runs under activation checkpointing: only the low-resolution logits are kept, and the
backward pass recomputes the chunk's upsampling, focal and dice terms. Values and gradients are
exactly those of the direct computation; peak memory is one chunk's, whatever K and the image size.
Worst case measured (benchmarks/mask_loss_memory.py: K = 150, batch 2, 512 x 512, every class
present, 3 outputs, forward + backward): 244 MB of live tensors chunked, 2.9 GB all at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = 255
CHUNK_ELEMENTS = 1 << 22  # full-resolution mask values per chunk (16 masks of 512 x 512, 16 MB fp32)


def present_classes(labels: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, K) bool: which classes occur (outside ignored pixels) in each label map."""
    b = labels.shape[0]
    flat = labels.reshape(b, -1)
    bad = (flat >= num_classes) & (flat != ignore_index) | (flat < 0)
    if bool(bad.any()):
        raise ValueError(f"labels hold values outside 0..{num_classes - 1} that are not the ignore "
                         f"index {ignore_index}: {sorted(flat[bad].unique().tolist())[:8]}")
    idx = torch.where(flat == ignore_index, num_classes, flat)
    hits = torch.zeros(b, num_classes + 1, dtype=torch.bool, device=labels.device)
    hits.scatter_(1, idx, True)
    return hits[:, :num_classes]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Per mask (first axis): mean over the rest of the RetinaNet focal loss, binary targets.

    With z = logit of the true side (x for positives, -x for negatives), p_t = sigmoid(z), so
    BCE = softplus(-z) and 1 - p_t = sigmoid(-z): the same values as the textbook form in fewer
    full-resolution passes."""
    pos = targets > 0.5
    nz = torch.where(pos, -logits, logits)
    loss = F.softplus(nz) * torch.sigmoid(nz).pow(gamma)
    if alpha >= 0:
        loss = loss * torch.where(pos, alpha, 1 - alpha)
    return loss.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per mask: 1 - (2 sum(p t) + 1) / (sum p + sum t + 1), p = sigmoid(logits)."""
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def _chunk_terms(logits: torch.Tensor, labels: torch.Tensor, image: torch.Tensor, cls: torch.Tensor,
                 alpha: float, gamma: float) -> torch.Tensor:
    """Summed (focal, dice) of a chunk of masks: low-res logits (n, h, w) -> label size."""
    size = labels.shape[-2:]
    x = logits.float()
    if x.shape[-2:] != size:
        x = F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    t = (labels[image] == cls[:, None, None]).to(x.dtype)  # ignored pixels (255) are negatives
    return torch.stack([sigmoid_focal_loss(x, t, alpha, gamma).sum(), dice_loss(x, t).sum()])


def mask_loss_sums(mask_logits: torch.Tensor, labels: torch.Tensor, present: torch.Tensor,
                   alpha: float = 0.25, gamma: float = 2.0, chunk_elements: int = CHUNK_ELEMENTS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, dice) summed over the present masks: query c's logits (B, Q=K, h, w) against class c."""
    image, cls = present.nonzero(as_tuple=True)
    if image.numel() == 0:
        zero = mask_logits.sum() * 0.0  # keeps the graph: every image fully ignored
        return zero, zero
    per_chunk = max(1, chunk_elements // labels[0].numel())
    total = mask_logits.new_zeros(2, dtype=torch.float32)
    recompute = torch.is_grad_enabled() and mask_logits.requires_grad
    for s in range(0, image.numel(), per_chunk):
        i, c = image[s:s + per_chunk], cls[s:s + per_chunk]
        chunk = mask_logits[i, c]
        if recompute:
            total = total + checkpoint(_chunk_terms, chunk, labels, i, c, alpha, gamma, use_reentrant=False)
        else:
            total = total + _chunk_terms(chunk, labels, i, c, alpha, gamma)
    return total[0], total[1]


def fixed_assignment_loss(class_logits: list[torch.Tensor], mask_logits: list[torch.Tensor],
                          labels: torch.Tensor, num_classes: int, *, ce_weight: float = 1.0,
                          focal_weight: float = 20.0, dice_weight: float = 1.0,
                          no_object_weight: float = 0.1, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                          ignore_index: int = IGNORE_INDEX, chunk_elements: int = CHUNK_ELEMENTS
                          ) -> dict[str, torch.Tensor]:
    """SegViT's loss over every supervised output (equally weighted, summed): already-weighted
    'loss_ce', 'loss_focal', 'loss_dice'. class_logits[i]: (B, K, K+1); mask_logits[i]: (B, K, h, w)."""
    k = num_classes
    if class_logits[0].shape[1] != k or mask_logits[0].shape[1] != k:
        raise ValueError(f"fixed assignment needs one query per class ({k}), got "
                         f"{class_logits[0].shape[1]} class and {mask_logits[0].shape[1]} mask queries")
    present = present_classes(labels, k, ignore_index)
    if k <= 255 and 0 <= ignore_index <= 255:  # 1 byte per pixel for the per-chunk target gathers
        labels = labels.to(torch.uint8)
    num_masks = present.sum().clamp(min=1).float()
    target = torch.where(present, torch.arange(k, device=labels.device), k)  # (B, K)
    weight = torch.ones(k + 1, device=labels.device)
    weight[k] = no_object_weight
    ce = focal = dice = 0.0
    for cls, masks in zip(class_logits, mask_logits):
        ce = ce + F.cross_entropy(cls.float().transpose(1, 2), target, weight=weight)
        f, d = mask_loss_sums(masks, labels, present, focal_alpha, focal_gamma, chunk_elements)
        focal, dice = focal + f / num_masks, dice + d / num_masks
    return {"loss_ce": ce_weight * ce, "loss_focal": focal_weight * focal, "loss_dice": dice_weight * dice}
