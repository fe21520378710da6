"""Segmentation losses.

The loss every Segformer-family recipe uses is pixel cross-entropy on logits bilinearly upsampled
from stride 4 to the label size. Written naively that materialises (B, K, H, W) logits, their
log-softmax and two gradients of the same size - 315 MB each for 2 x 150 classes x 512^2 - and
on a CPU the step spends much of its time streaming those through memory. `UpsampledCrossEntropy`
computes the same function (the same bilinear taps as `F.interpolate(..., align_corners=False)`)
a few label rows at a time in a channels-last layout, keeping only per-pixel log-sum-exp for the
backward pass: the full-resolution logits never exist.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
_CHUNK_ELEMENTS = 1 << 20  # logits per chunk: ~4 MB of fp32, cache-sized


def seg_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel CE with `logits` upsampled (bilinear, align_corners=False) to the label size,
    averaged over non-ignored pixels (0 when every pixel is ignored, instead of NaN).

    On CPU the upsampling is fused into the loss (`UpsampledCrossEntropy`); elsewhere it runs as
    `F.interpolate` + `F.cross_entropy`. Both compute the same value and gradient."""
    if logits.shape[-2:] != labels.shape[-2:] and logits.device.type == "cpu":
        return UpsampledCrossEntropy.apply(logits, labels, ignore_index)
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    valid = (labels != ignore_index).sum().clamp_min(1)
    return loss / valid


def bilinear_taps(in_size: int, out_size: int, device=None):
    """Source indices (i0, i1) and weights (w0, w1) of each output position, as PyTorch's
    bilinear resize computes them with align_corners=False and an explicit output size."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) * scale - 0.5).clamp_min(0)
    i0 = src.long()  # floor, src >= 0
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = src - i0
    return i0, i1, 1 - w1, w1


def _resize_width(x: torch.Tensor, taps) -> torch.Tensor:
    """(.., w, K) -> (.., W, K) along dim -2."""
    i0, i1, w0, w1 = taps
    return x.index_select(-2, i0) * w0[:, None] + x.index_select(-2, i1) * w1[:, None]


def _resize_width_transposed(g: torch.Tensor, taps, in_size: int) -> torch.Tensor:
    """Adjoint of `_resize_width`: (.., W, K) -> (.., w, K)."""
    i0, i1, w0, w1 = taps
    out = g.new_zeros(g.shape[:-2] + (in_size, g.shape[-1]))
    out.index_add_(g.dim() - 2, i0, g * w0[:, None])
    out.index_add_(g.dim() - 2, i1, g * w1[:, None])
    return out


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _row_chunks(height: int, width: int, classes: int):
    rows = max(1, _CHUNK_ELEMENTS // max(1, width * classes))
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


class UpsampledCrossEntropy(torch.autograd.Function):
    """sum over valid pixels of CE(upsample(logits), labels) / number of valid pixels."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            b, k, h, w = logits.shape
            height, width = labels.shape[-2:]
            x = logits.detach().to(_compute_dtype(logits)).permute(0, 2, 3, 1)  # (B, h, w, K): classes innermost
            row_taps, col_taps = bilinear_taps(h, height, x.device), bilinear_taps(w, width, x.device)
            wide = _resize_width(x, col_taps)  # (B, h, W, K)
            valid = labels != ignore_index
            safe = labels.masked_fill(~valid, 0)
            lse = torch.empty(b, height, width, dtype=x.dtype, device=x.device)
            total = torch.zeros((), dtype=torch.float64, device=x.device)
            for i in range(b):
                for r0, r1 in _row_chunks(height, width, k):
                    z = _resize_rows(wide[i], row_taps, r0, r1)  # (rows, W, K)
                    lse[i, r0:r1] = torch.logsumexp(z, dim=-1)
                    picked = z.gather(-1, safe[i, r0:r1, :, None]).squeeze(-1)
                    total += ((lse[i, r0:r1] - picked) * valid[i, r0:r1]).sum(dtype=torch.float64)
            count = valid.sum().clamp_min(1)
        ctx.save_for_backward(logits, safe, valid, lse, count)
        ctx.taps = (row_taps, col_taps)
        return (total / count).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, safe, valid, lse, count = ctx.saved_tensors
        row_taps, col_taps = ctx.taps
        b, k, h, w = logits.shape
        height, width = safe.shape[-2:]
        x = logits.to(_compute_dtype(logits)).permute(0, 2, 3, 1)
        wide = _resize_width(x, col_taps)
        grad_wide = torch.zeros_like(wide)
        scale = grad_out.to(x.dtype) / count
        i0, i1, w0, w1 = row_taps
        for i in range(b):
            for r0, r1 in _row_chunks(height, width, k):
                # d CE / d z = softmax(z) - onehot(label), zero on ignored pixels
                p = _resize_rows(wide[i], row_taps, r0, r1).sub_(lse[i, r0:r1, :, None]).exp_()
                p.scatter_add_(-1, safe[i, r0:r1, :, None], torch.full_like(p[..., :1], -1.0))
                p.mul_((valid[i, r0:r1] * scale)[..., None])
                grad_wide[i].index_add_(0, i0[r0:r1], p * w0[r0:r1, None, None])
                grad_wide[i].index_add_(0, i1[r0:r1], p * w1[r0:r1, None, None])
        grad = _resize_width_transposed(grad_wide, col_taps, w).permute(0, 3, 1, 2)
        return grad.to(logits.dtype), None, None


def _resize_rows(wide_image: torch.Tensor, taps, r0: int, r1: int) -> torch.Tensor:
    """Output rows r0:r1 of the height resize of one (h, W, K) image."""
    i0, i1, w0, w1 = taps
    return (wide_image.index_select(0, i0[r0:r1]) * w0[r0:r1, None, None]
            + wide_image.index_select(0, i1[r0:r1]) * w1[r0:r1, None, None])
