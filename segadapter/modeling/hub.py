"""Old import path of our model-folder format, which lives in `model_folder.py` (the Hugging Face
Hub itself is `hf_hub.py`)."""
from .model_folder import (CARD_NAME, CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, is_model_dir, read_config,
                           read_weights, resolve_model_dir, save_pretrained)

__all__ = ["CARD_NAME", "CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "is_model_dir", "read_config",
           "read_weights", "resolve_model_dir", "save_pretrained"]
