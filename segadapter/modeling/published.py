"""What `pretrained=True` (or a named alternative such as "in22k") loads: each variant registers
its published weights beside its declaration (`register_model(..., published=[...], named={...})`
in its family file, as timm keeps `default_cfgs` beside `@register_model`); this file only holds
the record and the rule that picks one. It names no family.

Each entry is a Hugging Face repository in a layout the toolkit reads; `part` says what it fills:
the backbone (encoder-only weights; the rest of the model starts fresh), the whole model (a
fine-tuned model whose class count must match), or a part handed to the builder as options
(`options`: the hub id goes to those builder options instead of being loaded afterwards).
`paper` says where the weights were used, or how they differ from what the method's paper used.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .registry import named_weights, published_weights


@dataclass(frozen=True)
class Published:
    repo: str
    part: str  # "backbone" | "model" | what the builder options fill (e.g. "clip")
    paper: str
    num_classes: int | None = None  # "model": the class count the weights predict
    dataset: str | None = None
    options: tuple[str, ...] = ()  # builder options that take the hub id (the builder loads it)


def choices(name: str) -> list[Published]:
    """The default weights of a variant, in order of preference (a whole model first, where its
    class count matches); [] for a variant with no published weights."""
    return list(published_weights(name))


def is_named(name: str, tag) -> bool:
    """Whether `tag` names one of `name`'s published alternatives (`pretrained="in22k"`)."""
    return isinstance(tag, str) and tag in named_weights(name)


def default_weights(name: str, num_classes: int, named: str | None = None) -> Published:
    """What `pretrained=True` (or a named option, e.g. "in22k") means for `name` built with
    `num_classes` classes."""
    if named is not None:
        alternatives = named_weights(name)
        if named not in alternatives:
            raise ConfigError(f"{name}: no published weights named {named!r}"
                              + (f"; named ones: {', '.join(sorted(alternatives))}" if alternatives else ""))
        return alternatives[named]
    options = choices(name)
    if not options:
        raise ConfigError(f"{name}: no default published weights; give pretrained=PATH or an ORG/NAME hub id")
    for p in options:
        if p.part != "model" or p.num_classes == num_classes:
            return p
    raise ConfigError(f"{name}: its published weights are whole models for other class counts "
                      f"({', '.join(str(p.num_classes) for p in options)}), not {num_classes}; give pretrained=PATH")
