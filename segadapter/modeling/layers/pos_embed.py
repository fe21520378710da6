"""Resampling absolute position embeddings to another token grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resample_abs_pos_embed(pos: torch.Tensor, new_size: tuple[int, int], old_size: tuple[int, int] | None = None,
                           num_prefix_tokens: int = 0, mode: str = "bicubic") -> torch.Tensor:
    """(1, prefix + h*w, C) -> (1, prefix + H*W, C): the grid part resized (bicubic, as ViT and
    CLIP fine-tuning do), prefix tokens (class token) kept as they are. `old_size` defaults to a
    square grid."""
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    n, c = grid.shape[1], grid.shape[2]
    if old_size is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"position embedding of {n} grid tokens is not square; give old_size")
        old_size = (side, side)
    if tuple(old_size) == tuple(new_size):
        return pos
    grid = grid.reshape(1, old_size[0], old_size[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_size), mode=mode, align_corners=False).to(pos.dtype)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, -1, c)], dim=1)
