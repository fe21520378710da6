"""Scaled dot-product attention with the CPU bf16 inference shortcut."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v.

    bf16 inference on CPU takes two bf16 matmuls around a last-dim softmax: without AMX the
    fused CPU kernel runs bf16 no faster than fp32, the explicit form ~25% faster. The scores
    are rounded to bf16 on the way, so logits move ~5x more than with the fused kernel (CamVid
    val mIoU checked in the README). Everything else uses the fused kernel, which never
    materialises the (N x M) score matrix."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and not torch.is_grad_enabled():
        scores = q @ (k * q.shape[-1] ** -0.5).transpose(-1, -2)
        return torch.softmax(scores, -1) @ v
    return F.scaled_dot_product_attention(q, k, v)
