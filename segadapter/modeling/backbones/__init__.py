"""Staged backbones: `out_channels`, `out_strides`, `stage_forward(i, x)`, `stage_output(i, x)`."""
from .convnext import ConvNeXt, convnext
from .mit import MixVisionTransformer, mit

__all__ = ["ConvNeXt", "convnext", "MixVisionTransformer", "mit"]
