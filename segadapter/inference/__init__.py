"""Inference for users: a model's preprocessing record and the `Inferencer`."""
from .inferencer import Inferencer, Prediction
from .preprocess import LegacyPreprocessingWarning, Preprocessing, preprocessing_of

__all__ = ["Inferencer", "LegacyPreprocessingWarning", "Prediction", "Preprocessing", "preprocessing_of"]
