"""Weights from local files: reading (`io`), converters keyed by backbone class (`mit`, `convnext`,
`vit`, `clip`) and by head class (`all_mlp`, `segvit`, `segdeformer`, `san`) behind the interfaces
in `converters`, strict application with a report (`report`), and the loading policy that
composes them (`load`)."""
from . import all_mlp, clip, convnext, mit, san, segdeformer, segvit, vit  # noqa: F401  (registers the converters)
from .converters import CONVERTERS, DROP, WeightConverter, register_converter
from .io import read_checkpoint
from .load import load_pretrained
from .report import LoadReport, apply_state_dict

__all__ = ["CONVERTERS", "DROP", "WeightConverter", "register_converter", "read_checkpoint", "load_pretrained",
           "LoadReport", "apply_state_dict"]
