"""Segmentation losses.

The loss every Segformer-family recipe uses is pixel cross-entropy on logits bilinearly upsampled
from stride 4 to the label size. Written naively that materialises (B, K, H, W) logits, their
log-softmax and two gradients of the same size - 315 MB each for 2 x 150 classes x 512^2 - and
on a CPU the step spends much of its time streaming those through memory. `UpsampledCrossEntropy`
computes the same function (the same bilinear taps as `F.interpolate(..., align_corners=False)`)
a few label rows at a time in a channels-last layout (each chunk resized from the low-res rows it
needs), and the backward pass recomputes each chunk's softmax the same way: no full-resolution
float tensor, and none larger than a chunk, is ever allocated.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
_CHUNK_ELEMENTS = 1 << 20  # logits per chunk: ~4 MB of fp32, cache-sized
_FUSE_MIN_ELEMENTS = 1 << 25  # below ~128 MB of full-resolution logits (e.g. 2 x 19 x 512 x 1024)
# the plain path is as fast or faster once glibc keeps freed memory (benchmarks/fused_loss.py)
_MATMUL_MAX_SIDE = 256  # low-res side up to which `upsample_logits` resizes by matmul on a CPU


def seg_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel CE with `logits` upsampled (bilinear, align_corners=False) to the label size,
    averaged over non-ignored pixels (0 when every pixel is ignored, instead of NaN).

    On CPU, for large outputs, the upsampling is fused into the loss (`UpsampledCrossEntropy`);
    otherwise it runs as `F.interpolate` + `F.cross_entropy`. Both compute the same value and
    gradient."""
    resize = logits.shape[-2:] != labels.shape[-2:]
    if resize and logits.device.type == "cpu" and labels.numel() * logits.shape[1] >= _FUSE_MIN_ELEMENTS:
        return UpsampledCrossEntropy.apply(logits, labels, ignore_index)
    return plain_cross_entropy(logits, labels, ignore_index)


def plain_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """`seg_cross_entropy` written the usual way: upsample (`upsample_logits`), then `F.cross_entropy`."""
    logits = upsample_logits(logits, labels.shape[-2:])
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    valid = (labels != ignore_index).sum().clamp_min(1)
    return loss / valid


def upsample_logits(logits: torch.Tensor, size) -> torch.Tensor:
    """Logits resized to `size` for a loss: `F.interpolate(..., "bilinear", align_corners=False)`.

    On a CPU, for maps up to `_MATMUL_MAX_SIDE` a side, as two products with the interpolation
    matrices (`resize_matrix`; fp32, autocast off): the same function, and its backward is two
    more products instead of torch's scatter-style upsampling backward - 1.4-1.8x faster for the
    loss's forward + backward at a CPU recipe's sizes (benchmarks/fused_loss.py --upsample).
    """
    size = tuple(int(v) for v in size)
    h, w = logits.shape[-2:]
    if (h, w) == size:
        return logits
    if logits.device.type != "cpu" or logits.dim() != 4 or max(h, w) > _MATMUL_MAX_SIDE:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    with torch.autocast("cpu", enabled=False):
        x = logits.to(_compute_dtype(logits))
        rows = resize_matrix(h, size[0], x.dtype)
        cols = resize_matrix(w, size[1], x.dtype)
        return rows @ (x @ cols.T)


@functools.lru_cache(maxsize=32)
def resize_matrix(in_size: int, out_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (out_size x in_size) matrix of a 1-D bilinear resize with align_corners=False (two
    taps per row, `bilinear_taps`), on the CPU; cached (a handful of sizes per run)."""
    with torch.inference_mode(False):  # a normal tensor even if first asked for under inference_mode
        i0, i1, w0, w1 = bilinear_taps(in_size, out_size)
        m = torch.zeros(out_size, in_size, dtype=dtype)
        rows = torch.arange(out_size)
        m.index_put_((rows, i0), w0.to(dtype), accumulate=True)
        m.index_put_((rows, i1), w1.to(dtype), accumulate=True)
    return m


def bilinear_taps(in_size: int, out_size: int, device=None):
    """Source indices (i0, i1) and weights (w0, w1) of each output position, as PyTorch's
    bilinear resize computes them with align_corners=False and an explicit output size."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) * scale - 0.5).clamp_min(0)
    i0 = src.long()  # floor, src >= 0
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = src - i0
    return i0, i1, 1 - w1, w1


def _resize_width(slab: torch.Tensor, width: int) -> torch.Tensor:
    """(1, K, r, w) -> (r, W*K) with classes innermost: the width half of the resize, by torch's
    channels-last bilinear kernel (resizing to the same height is the identity, weights 0/1)."""
    x = slab.contiguous(memory_format=torch.channels_last)
    wide = F.interpolate(x, size=(x.shape[2], width), mode="bilinear", align_corners=False)
    return wide.permute(0, 2, 3, 1).reshape(x.shape[2], -1)


def _resize_width_backward(grad_wide: torch.Tensor, width: int, in_shape) -> torch.Tensor:
    """Adjoint of `_resize_width`: (r, W*K) -> (1, K, r, w)."""
    r, classes = grad_wide.shape[0], in_shape[1]
    g = grad_wide.view(1, r, width, classes).permute(0, 3, 1, 2)  # channels-last (1, K, r, W)
    return torch.ops.aten.upsample_bilinear2d_backward(g, [r, width], list(in_shape), False, None, None)


def _chunk_logits(slab: torch.Tensor, R: torch.Tensor, width: int) -> torch.Tensor:
    """A chunk's upsampled logits (rows, W, K) from the low-res rows it reads, `slab` (1, K, r, w):
    width by `_resize_width`, height by the chunk's bilinear matrix R (rows x r)."""
    return (R @ _resize_width(slab, width)).view(R.shape[0], width, slab.shape[1])


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _row_plan(taps, width: int, classes: int, dtype):
    """Label rows in cache-sized chunks; for each, the low-res rows it reads (k0:k1) and the
    dense (rows x (k1 - k0)) bilinear matrix R, so that the chunk's logits are one small matmul
    R @ wide[k0:k1] and its gradient flows back as R^T @ grad: a single pass either way."""
    i0, i1, w0, w1 = taps
    height = len(i0)
    rows = max(1, _CHUNK_ELEMENTS // max(1, width * classes))
    plan = []
    for r0 in range(0, height, rows):
        r1 = min(r0 + rows, height)
        k0, k1 = int(i0[r0]), int(i1[r1 - 1]) + 1
        R = torch.zeros(r1 - r0, k1 - k0, dtype=dtype, device=i0.device)
        ar = torch.arange(r1 - r0, device=i0.device)
        R.index_put_((ar, i0[r0:r1] - k0), w0[r0:r1].to(dtype), accumulate=True)
        R.index_put_((ar, i1[r0:r1] - k0), w1[r0:r1].to(dtype), accumulate=True)
        plan.append((r0, r1, k0, k1, R))
    return plan


class UpsampledCrossEntropy(torch.autograd.Function):
    """sum over valid pixels of CE(upsample(logits), labels) / number of valid pixels."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            b, k, h, w = logits.shape
            height, width = labels.shape[-2:]
            x = logits.detach().to(_compute_dtype(logits))
            plan = _row_plan(bilinear_taps(h, height, x.device), width, k, x.dtype)
            valid = labels != ignore_index
            safe = labels.masked_fill(~valid, 0)
            total = torch.zeros((), dtype=torch.float64, device=x.device)
            for i in range(b):
                for r0, r1, k0, k1, R in plan:
                    z = _chunk_logits(x[i:i + 1, :, k0:k1], R, width)
                    # torch's last-dim log-softmax is one fused pass; max / sub / exp / sum as
                    # separate ops stream the chunk through memory four times
                    logp = torch.log_softmax(z, -1).gather(-1, safe[i, r0:r1, :, None]).squeeze(-1)
                    total -= (logp * valid[i, r0:r1]).sum(dtype=torch.float64)
            count = valid.sum().clamp_min(1)
        ctx.save_for_backward(logits, safe, valid, count)
        ctx.plan = plan
        return (total / count).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, safe, valid, count = ctx.saved_tensors
        b, k = logits.shape[:2]
        width = safe.shape[-1]
        x = logits.to(_compute_dtype(logits))
        grad = torch.zeros_like(x, memory_format=torch.channels_last)
        scale = grad_out.to(x.dtype) / count
        minus_one = torch.full((1, 1, 1), -1.0, dtype=x.dtype, device=x.device)
        for i in range(b):
            for r0, r1, k0, k1, R in ctx.plan:
                # d CE / d z = softmax(z) - onehot(label), zero on ignored pixels
                slab = x[i:i + 1, :, k0:k1]
                p = torch.softmax(_chunk_logits(slab, R, width), -1)
                p.scatter_add_(-1, safe[i, r0:r1, :, None], minus_one.expand(r1 - r0, width, 1))
                p.mul_((valid[i, r0:r1] * scale)[..., None])
                grad[i:i + 1, :, k0:k1] += _resize_width_backward(R.T @ p.view(r1 - r0, width * k), width, slab.shape)
        return grad.to(logits.dtype), None, None
