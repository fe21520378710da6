"""Model registry: one tiny builder per variant, looked up by name (timm style).

The family files in `models/` register themselves when imported; `factory` imports them all."""
from __future__ import annotations

import fnmatch
from typing import Callable

from ..errors import SegAdapterError

_MODELS: dict[str, Callable] = {}
_WEIGHT_OPTIONS: dict[str, tuple[str, ...]] = {}
_OPEN_VOCABULARY: set[str] = set()


def register_model(name: str, weight_options: tuple[str, ...] = (), open_vocabulary: bool = False):
    """Decorator: register `fn(num_classes, **options) -> nn.Module` under `name`.

    `weight_options` name options that only point at initial weights (a CLIP checkpoint): kept in
    the saved config for the record, but not used again when a saved folder is rebuilt, since the
    folder's own weights replace them. `open_vocabulary` models take their classes as names
    (`classes=[...]`), e.g. a training dataset's."""

    def wrap(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        _WEIGHT_OPTIONS[name] = tuple(weight_options)
        if open_vocabulary:
            _OPEN_VOCABULARY.add(name)
        return fn

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern (`adapt-*`)."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_builder(name: str) -> Callable:
    if name not in _MODELS:
        close = [n for n in _MODELS if n.split("-")[0] == name.split("-")[0]] or sorted(_MODELS)
        raise SegAdapterError(f"unknown model {name!r}; known models: {', '.join(sorted(close))}")
    return _MODELS[name]


def weight_options(name: str) -> tuple[str, ...]:
    return _WEIGHT_OPTIONS.get(name, ())


def is_open_vocabulary(name: str) -> bool:
    return name in _OPEN_VOCABULARY
