"""Decode heads: each owns its output, its per-pixel prediction and its loss (see `base`)."""
from .all_mlp import AllMLPHead
from .base import PixelHead, resize_scores
from .segdeformer import SegDeformerHead

__all__ = ["AllMLPHead", "PixelHead", "resize_scores", "SegDeformerHead"]
