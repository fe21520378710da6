"""Resampling absolute (learned) position embeddings to another token grid."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resample_abs_pos_embed(pos_embed: torch.Tensor, new_size: tuple[int, int],
                           old_size: tuple[int, int] | None = None, num_prefix_tokens: int = 0,
                           mode: str = "bicubic") -> torch.Tensor:
    """(1, prefix + h*w, C) -> (1, prefix + H*W, C): the grid part resized (bicubic,
    align_corners=False, no antialias - as mmseg / the official ViT code), prefix tokens (the
    class token's entry) kept as they are. `old_size` defaults to a square grid."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n = grid.shape[1]
    if old_size is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"position embedding of {n} grid tokens is not square; pass old_size")
        old_size = (side, side)
    if old_size[0] * old_size[1] != n:
        raise ValueError(f"position embedding has {n} grid tokens, not {old_size[0]}x{old_size[1]}")
    new_size = (new_size[0], new_size[1])  # no int(): traced sizes stay dynamic in an ONNX export
    if tuple(old_size) == tuple(int(s) for s in new_size) and not torch.jit.is_tracing():
        return pos_embed
    c = grid.shape[-1]
    grid = grid.reshape(1, old_size[0], old_size[1], c).permute(0, 3, 1, 2)
    # fp32 interpolation: bicubic is not implemented for every low-precision dtype
    grid = F.interpolate(grid.float(), size=new_size, mode=mode, align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], c)
    return torch.cat([prefix, grid], dim=1)
