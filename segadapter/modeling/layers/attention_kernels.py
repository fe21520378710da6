"""Scaled dot-product attention: with the CPU bf16 inference shortcut (`attention`), and never
building the N x M score matrix, for attention over all tokens of a large map (`attend`)."""
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


_SDP_MATH = 0  # torch's SDPBackend.MATH: the unfused path that builds the full score matrix
_CHUNK_SCORES = 1 << 22  # scores per chunk of the fallback loop (16 MiB of fp32)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           chunked: bool | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, heads, N, C) tokens, without an N x M score matrix.

    `chunked=None` picks the fused kernel unless torch would run it through its math fallback
    (which does build the matrix: e.g. a strided last dim, or a dtype the device's fused
    kernels lack); `True` / `False` force the loop / the kernel."""
    if chunked is None:
        chunked = _sdpa_would_materialise(q, k, v, scale)
    if not chunked:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return _chunked_attention(q, k, v, scale)


def _sdpa_would_materialise(q, k, v, scale) -> bool:
    if q.device.type == "meta" or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False  # shapes only, or a graph whose attention kernel the compiler/runtime picks
    try:
        return torch._fused_sdp_choice(q, k, v, scale=scale) == _SDP_MATH
    except (AttributeError, RuntimeError, TypeError):  # private API gone or changed: play safe
        return True


def _chunked_attention(q, k, v, scale):
    return _ChunkedAttention.apply(q, k, v, scale)


class _ChunkedAttention(torch.autograd.Function):
    """Attention over query chunks of at most `_CHUNK_SCORES` scores, flash-attention style: the
    forward keeps only the output and each row's log-sum-exp; the backward recomputes each
    chunk's probabilities from them. One chunk-sized buffer (two in the backward) at a time."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        rows, acc = _chunk_rows(q, k), _acc_dtype(q)
        kt, va = k.to(acc).transpose(-1, -2), v.to(acc)  # no copies in fp32
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=acc, device=q.device)
        lse = torch.empty(q.shape[:-1], dtype=acc, device=q.device)
        for i in range(0, q.shape[-2], rows):
            p = (q[..., i:i + rows, :].to(acc) @ kt).mul_(scale)
            m = p.amax(dim=-1, keepdim=True)
            total = p.sub_(m).exp_().sum(dim=-1, keepdim=True)  # in place: one chunk buffer
            out[..., i:i + rows, :] = (p @ va).div_(total)
            lse[..., i:i + rows] = (m + total.log()).squeeze(-1)
        out = out.to(v.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        scale, rows, acc = ctx.scale, _chunk_rows(q, k), _acc_dtype(q)
        ka, va, go = k.to(acc), v.to(acc), grad_out.to(acc)
        # softmax backward: dS = P * (dP - D) with D = rowsum(dO * O)
        delta = (go * out.to(acc)).sum(-1)
        gq = torch.empty(q.shape, dtype=acc, device=q.device)
        gk, gv = torch.zeros_like(ka), torch.zeros_like(va)
        for i in range(0, q.shape[-2], rows):
            qi, gi = q[..., i:i + rows, :].to(acc), go[..., i:i + rows, :]
            p = (qi @ ka.transpose(-1, -2)).mul_(scale).sub_(lse[..., i:i + rows, None]).exp_()
            gv += p.transpose(-1, -2) @ gi
            ds = (gi @ va.transpose(-1, -2)).sub_(delta[..., i:i + rows, None]).mul_(p).mul_(scale)
            gq[..., i:i + rows, :] = ds @ ka
            gk += ds.transpose(-1, -2) @ qi
        return gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype), None


def _acc_dtype(q: torch.Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _chunk_rows(q, k) -> int:
    return max(1, _CHUNK_SCORES // max(1, q.shape[0] * q.shape[1] * k.shape[-2]))
