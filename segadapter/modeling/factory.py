"""`create_model` and `from_pretrained`: the public way to build models."""
from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..utils.io import to_plain
from .registry import get_builder
from .segmentor import Segmentor


def create_model(name: str, num_classes: int = 150, pretrained: str | os.PathLike | None = None,
                 **options: Any) -> Segmentor:
    """Build a registered model (`segadapter.list_models()`).

    `pretrained` is a local file or folder: a `save_pretrained` folder, or published weights in
    one of the NVlabs / Hugging Face / OpenMMLab / Facebook / timm layouts (encoder-only weights
    leave the adapter and head freshly initialised; the load report says which).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    builder = get_builder(name)
    try:
        model = builder(num_classes=num_classes, **options)
    except TypeError as e:  # unknown or misplaced option
        raise ConfigError(f"invalid options for model {name!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"invalid options for model {name!r}: {e}") from None
    model.config = {"name": name, "num_classes": num_classes, "options": to_plain(options)}
    if pretrained is not None:
        from .pretrained import load_pretrained

        model.load_report = load_pretrained(model, pretrained)
    return model


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> Segmentor:
    """Rebuild a model from a `save_pretrained` folder (or a training run folder) alone."""
    from .hub import load_model_dir

    return load_model_dir(path, **overrides)

