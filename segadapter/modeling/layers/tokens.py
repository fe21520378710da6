"""Views between token sequences (B, N, C) and feature maps (B, C, H, W)."""
from __future__ import annotations

import torch


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, H, W) as a channels-last view: no copy, and convs on it run
    in the channels-last layout, whose outputs turn back into tokens for free."""
    return x.view(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C); a view when `x` is channels-last."""
    return x.flatten(2).transpose(1, 2)
