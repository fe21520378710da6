"""`create_model`, `from_pretrained` and `list_models`: the public way to build models."""
from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..utils.io import to_plain
from . import hf_hub, model_folder, published
from . import models as _families  # noqa: F401  (importing the family files registers every variant)
from .registry import get_builder, list_models, model_options, weight_options
from .meta_arch import SegmentationModel
from .weights import apply_state_dict, load_pretrained

__all__ = ["create_model", "from_pretrained", "list_models"]


def create_model(name: str, num_classes: int | None = None, pretrained: bool | str | os.PathLike | None = None,
                 **options: Any) -> SegmentationModel:
    """Build a registered model (`segadapter.list_models()`).

    `num_classes` defaults to the number of `classes` names for open-vocabulary models, else 150.

    `pretrained`:
      True              the variant's default published weights, registered with it in its family
                        file (the backbone's, or the whole fine-tuned model where its class count
                        matches; SAN: OpenAI's CLIP and its tokenizer), fetched from the Hugging Face Hub
      "in22k", ...      a named alternative the variant registered
      "hf-hub:ORG/NAME[@REV]" or "ORG/NAME[@REV]"   any repository in a layout the converters read
      a local file or folder (wins over a hub id of the same spelling): a `save_pretrained`
                        folder, or published weights in one of the layouts the converters read
    Encoder-only weights leave the adapters and head freshly initialised; `model.load_report`
    says what was loaded from where, what stayed fresh and what was not used.
    """
    if num_classes is None:
        classes = options.get("classes")
        num_classes = len(classes) if isinstance(classes, (list, tuple)) and classes else 150
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    pretrained, options = _resolve_published(name, num_classes, pretrained, options)
    builder = get_builder(name)
    accepted = model_options(name)
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for model "
                          f"{name!r}; it takes: {', '.join(sorted(accepted))}")
    try:
        model = builder(num_classes=num_classes, **options)
    except ValueError as e:  # a known option with an invalid value (a TypeError is a bug: it surfaces)
        raise ConfigError(f"invalid options for model {name!r}: {e}") from None
    if not isinstance(model, SegmentationModel):  # a builder's bug: the rest of the toolkit reads the contract
        raise TypeError(f"the builder of {name!r} returned a {type(model).__name__}, not a SegmentationModel")
    model.config = {"name": name, "num_classes": num_classes, "options": to_plain(options)}
    if pretrained is not None:
        model.load_report = load_pretrained(model, hf_hub.local_path(pretrained))
        model.load_report.source = hf_hub.source_name(pretrained, model.load_report.source)
        model.on_weights_loaded()  # e.g. SAN embeds its names once CLIP's text tower is loaded
    return model


def _resolve_published(name: str, num_classes: int, pretrained, options: dict[str, Any]):
    """`pretrained=True` / a named alternative -> a hub id (SAN: the `clip` and `vocab` options)."""
    if pretrained is False:
        return None, options
    named = pretrained if published.is_named(name, pretrained) else None
    if pretrained is not True and named is None:
        return pretrained, options
    choice = published.default_weights(name, num_classes, named)
    source = hf_hub.PREFIX + choice.repo
    if choice.options:  # the builder loads this part itself (e.g. CLIP's weights and its tokenizer)
        return None, {**options, **{o: options.get(o) or source for o in choice.options}}
    return source, options


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> SegmentationModel:
    """Rebuild a model from a `save_pretrained` folder (or a training run folder) alone."""
    directory = model_folder.resolve_model_dir(path)
    config = model_folder.read_config(directory)
    saved = {k: v for k, v in config.get("options", {}).items() if k not in weight_options(config["name"])}
    options = {**saved, **overrides}
    model = create_model(config["name"], num_classes=config["num_classes"], **options)
    apply_state_dict(model, model_folder.read_weights(directory / model_folder.WEIGHTS_NAME), source=str(directory / model_folder.WEIGHTS_NAME))
    extra = {k: v for k, v in config.items() if k not in ("format", "format_version", "name", "num_classes", "options")}
    model.config.update(extra)
    return model
