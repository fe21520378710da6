"""Can a model segment classes given by name, and which names does it hold now? The policy that
`predict --classes`, zero-shot `eval`, the `Inferencer` and the web demo share (one place)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .heads.base import is_open_vocabulary


def check_takes_class_names(model: nn.Module, what: str = "class names", names: Sequence[str] | None = None) -> None:
    """ConfigError (one line, before any work) when `model` cannot segment classes given by name:
    a fixed-class model, or an open-vocabulary model whose CLIP is random (built without CLIP
    weights: nothing can be recognised by name) or that has no CLIP vocabulary. `names` equal to
    the model's own (in order) need no text tower: they are what it segments already."""
    from .heads.san import BRING_CLIP, BRING_VOCAB

    model = getattr(model, "_orig_mod", model)
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    if not is_open_vocabulary(model):
        k = getattr(model, "num_classes", None)
        raise ConfigError(f"{what}: only open-vocabulary models (san-*) take class names; {name} segments "
                          f"the fixed set of {k} classes it was trained on")
    if names is not None and list(names) == model_class_names(model) and not holds_placeholders(model):
        return
    problem = _naming_problem(model)
    if problem == "clip":
        raise ConfigError(f"{what}: {name} was built without CLIP weights (its CLIP is random), so it cannot "
                          f"recognise anything by name. Bring {BRING_CLIP}, and {BRING_VOCAB}, when "
                          "creating or training the model (model.options.clip / model.options.vocab); "
                          "nothing is downloaded")
    if problem == "vocab":
        raise ConfigError(f"{what}: {name} has CLIP weights but no CLIP vocabulary to read class names with; "
                          f"bring {BRING_VOCAB} (model.options.vocab); nothing is downloaded")


def _naming_problem(model: nn.Module) -> str | None:
    """Why an open-vocabulary model cannot embed class names: "clip" (random CLIP), "vocab" (no
    tokenizer), or None."""
    pretrained = getattr(getattr(model, "backbone", None), "clip_pretrained", None)
    if isinstance(pretrained, torch.Tensor) and not bool(pretrained):
        return "clip"
    head = getattr(model, "decode_head", None)
    if head is not None and hasattr(head, "tokenizer") and head.tokenizer is None:
        return "vocab"
    return None


def holds_placeholders(model: nn.Module) -> bool:
    """True when a SAN head could embed its class names with CLIP's text tower (trained CLIP and a
    vocabulary) but still holds the placeholder vectors of those names: e.g. built with
    `pretrained=` CLIP or SAN-release weights, which leave the embeddings to the names. Such a
    model must embed its names before it can recognise them."""
    from .heads.san import placeholder_embeddings

    model = getattr(model, "_orig_mod", model)
    head = getattr(model, "decode_head", None)
    emb, names = getattr(head, "class_embeddings", None), getattr(head, "class_names", None)
    if not isinstance(emb, torch.Tensor) or not names or _naming_problem(model) is not None:
        return False
    return torch.allclose(emb.detach().float().cpu(), placeholder_embeddings(list(names), emb.shape[1]))


def model_class_names(model: nn.Module) -> list[str] | None:
    """The class names an (open-vocabulary) model segments now, if it names them."""
    model = getattr(model, "_orig_mod", model)
    for owner, attr in ((getattr(model, "decode_head", None), "class_names"), (model, "classes")):
        names = getattr(owner, attr, None)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return list(names)
    names = getattr(model, "config", {}).get("classes")
    return list(names) if isinstance(names, (list, tuple)) else None
