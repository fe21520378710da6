"""Segmentation losses."""
from .cross_entropy import (IGNORE_INDEX, UpsampledCrossEntropy, bilinear_taps, plain_cross_entropy, seg_cross_entropy,
                            upsample_logits)

__all__ = ["IGNORE_INDEX", "UpsampledCrossEntropy", "bilinear_taps", "plain_cross_entropy", "seg_cross_entropy",
           "upsample_logits"]
