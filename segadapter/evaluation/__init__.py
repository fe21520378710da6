"""Metrics, test-time inference, the evaluation loop and prediction pictures."""
from .evaluate import evaluate
from .inference import check_inference_args, eval_mode, inference
from .metrics import ConfusionMatrix, MetricResult
from .visualize import colorize, overlay, save_prediction

__all__ = [
    "ConfusionMatrix",
    "MetricResult",
    "check_inference_args",
    "colorize",
    "eval_mode",
    "evaluate",
    "inference",
    "overlay",
    "save_prediction",
]
