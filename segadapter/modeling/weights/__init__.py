"""Weights from local files: reading (`io`), one converter per backbone family (`converters`,
`mit`, `convnext`), strict application with a report (`report`), and the loading policy (`load`)."""
from . import convnext, mit, san, segdeformer, vit  # noqa: F401  (registers the converters)
from .converters import CONVERTERS, DROP, WeightConverter, register_converter
from .io import read_checkpoint
from .load import load_pretrained
from .report import LoadReport, apply_state_dict

__all__ = ["CONVERTERS", "DROP", "WeightConverter", "register_converter", "read_checkpoint", "load_pretrained",
           "LoadReport", "apply_state_dict"]
