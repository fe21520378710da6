"""Model registry: one tiny builder per variant, looked up by name (timm style).

The family files in `models/` register themselves when imported; `factory` imports them all."""
from __future__ import annotations

import fnmatch
import inspect
from typing import Callable, Iterable

from ..errors import SegAdapterError

_MODELS: dict[str, Callable] = {}
_WEIGHT_OPTIONS: dict[str, tuple[str, ...]] = {}
_OPEN_VOCABULARY: set[str] = set()
_OPTIONS: dict[str, frozenset[str]] = {}
_PUBLISHED: dict[str, tuple] = {}  # name -> published.Published entries, in order of preference
_NAMED: dict[str, dict] = {}  # name -> {tag: published.Published}
_CARD_TAGS: dict[str, tuple[str, ...]] = {}
# parameters of builders that a variant fixes, never options a user passes
_NOT_OPTIONS = {"self", "num_classes", "variant", "adapter", "backbone_name", "shrunk", "name"}


def option_names(*sources: Callable | Iterable[str]) -> frozenset[str]:
    """The option names a model takes: the keyword parameters of each callable source (a builder,
    a head or options dataclass), and each iterable's names; `**kwargs` themselves add none."""
    names: set[str] = set()
    for src in sources:
        if callable(src):
            params = inspect.signature(src).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        else:
            names |= set(src)
    return frozenset(names - _NOT_OPTIONS)


def register_model(name: str, weight_options: tuple[str, ...] = (), open_vocabulary: bool = False,
                   options: frozenset[str] | None = None, published: Iterable = (), named: dict | None = None,
                   card_tags: Iterable[str] = ()):
    """Decorator: register `fn(num_classes, **options) -> nn.Module` under `name`.

    `weight_options` name options that only point at initial weights (a CLIP checkpoint): kept in
    the saved config for the record, but not used again when a saved folder is rebuilt, since the
    folder's own weights replace them. `open_vocabulary` models take their classes as names
    (`classes=[...]`), e.g. a training dataset's. `options` (see `option_names`) are the option
    names the model takes: `create_model` refuses any other in one line, before building.
    `published`: its default published weights (`published.Published`, in order of preference:
    what `pretrained=True` loads), `named`: alternatives by tag (`pretrained="in22k"`);
    `card_tags`: the Hub tags of its model card (the method, e.g. "segformer")."""

    def wrap(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        _WEIGHT_OPTIONS[name] = tuple(weight_options)
        if open_vocabulary:
            _OPEN_VOCABULARY.add(name)
        if options is not None:
            _OPTIONS[name] = frozenset(options)
        _PUBLISHED[name] = tuple(published)
        _NAMED[name] = dict(named or {})
        _CARD_TAGS[name] = tuple(card_tags)
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


def model_options(name: str) -> frozenset[str] | None:
    """The option names `name` takes (None: not declared)."""
    return _OPTIONS.get(name)


def is_open_vocabulary(name: str) -> bool:
    return name in _OPEN_VOCABULARY


def open_vocabulary_models() -> list[str]:
    """The registered models that take their classes as names."""
    return sorted(_OPEN_VOCABULARY)


def published_weights(name: str) -> tuple:
    """The variant's default published weights, in order of preference (see `published.py`)."""
    return _PUBLISHED.get(name, ())


def named_weights(name: str) -> dict:
    """The variant's published alternatives by tag."""
    return _NAMED.get(name, {})


def card_tags(name: str) -> tuple[str, ...]:
    """The Hub tags the variant's model card carries beyond the toolkit's own."""
    return _CARD_TAGS.get(name, ())
