"""Prediction pictures live in `segadapter.inference.visualize` (inference/ sits below
evaluation/); the names stay importable from here."""
from ..inference.visualize import (OVERLAY_FORMATS, colorize, output_names, overlay, save_prediction)

__all__ = ['OVERLAY_FORMATS', 'colorize', 'output_names', 'overlay', 'save_prediction']
