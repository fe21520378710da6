"""Old import path of the Segmentor, which lives in `meta_arch/segmentor.py`."""
from .meta_arch.segmentor import PARAM_GROUPS, Segmentor

__all__ = ["PARAM_GROUPS", "Segmentor"]
