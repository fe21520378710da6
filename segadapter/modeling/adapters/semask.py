"""SeMask's semantic attention (Jain et al. 2021) for the SeMask-MIT comparator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SemanticWindowAttention(nn.Module):
    """softmax(S_Q S_K^T) V inside non-overlapping windows (one head, no scaling), then a
    projection. S_Q is the side output (the supervised class map)."""

    def __init__(self, dim: int, num_classes: int, window_size: int = 7, dropout: float = 0.1):
        super().__init__()
        self.window = window_size
        self.cls = nn.Linear(dim, num_classes)  # S_Q, the side output
        self.key = nn.Linear(dim, num_classes)  # S_K
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1)  # NHWC
        sq, sk, v = self.cls(t), self.key(t), self.value(t)
        side = sq.permute(0, 3, 1, 2)
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        mask = None
        if ph or pw:
            sq, sk, v = (F.pad(a, (0, 0, 0, pw, 0, ph)) for a in (sq, sk, v))
            valid = torch.zeros(h + ph, w + pw, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
            mask = _windows(valid[None, :, :, None], ws).squeeze(-1)[:, None, :].repeat(b, 1, 1)  # keys only
        q, k, v = (_windows(a, ws) for a in (sq, sk, v))
        attn = q @ k.transpose(-2, -1)
        if mask is not None:
            attn = attn.masked_fill(~mask, float("-inf"))
        out = attn.softmax(dim=-1) @ v
        out = _unwindows(out, ws, b, h + ph, w + pw)[:, :h, :w]
        out = self.drop(self.proj(out))
        return out.permute(0, 3, 1, 2), side


def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws*ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)
