"""Test-time inference lives in `segadapter.inference.segment` (inference/ sits below evaluation/);
the names stay importable from here."""
from ..inference.segment import MODES, check_inference_args, eval_mode, inference, is_tta

__all__ = ["MODES", "check_inference_args", "eval_mode", "inference", "is_tta"]
