"""segadapter: semantic segmentation with SegAdapter and the methods it is compared with (Segformer,
ConvNeXt + All-MLP, SeMask, SegDeformer, SegViT, SAN): training, evaluation, inference, export."""
from .errors import CheckpointError, ConfigError, DataError, SegAdapterError
from .inference import Inferencer, Prediction, Preprocessing
from .modeling.factory import create_model, from_pretrained, list_models

__version__ = "0.1.0"

__all__ = [
    "create_model",
    "from_pretrained",
    "list_models",
    "Inferencer",
    "Prediction",
    "Preprocessing",
    "SegAdapterError",
    "ConfigError",
    "DataError",
    "CheckpointError",
]
