"""Channel norms for NCHW maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def norm2d(kind: str, channels: int, eps: float = 1e-6) -> nn.Module:
    """A channel norm for NCHW maps: 'ln' (LayerNorm over channels), 'bn', or 'in'."""
    kind = kind.lower()
    if kind == "ln":
        return LayerNorm2d(channels, eps=eps)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; expected one of ln, bn, in")
