"""The interfaces weight converters implement - one per backbone family (`WeightConverter`, keyed
by the backbone class) and one per published decode head (`HeadConverter`, keyed by the head
class) - their registries, and the helpers they share (layout detection by tell-tale keys, key
renaming). `load.load_pretrained` composes the two."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# A converter's key function returns our name, DROP (a deliberately unused tensor, e.g. an
# ImageNet classifier), or None (unknown: kept under its own name so the error shows it).
DROP = "<drop>"

# Why a published tensor is not used, by the shape of its name (first match wins). Every tensor a
# converter drops gets one of these reasons in the load report: nothing is dropped in silence.
_DROP_REASONS = (
    (re.compile(r"(^|\.)(input_resolution|context_length|vocab_size|attn_mask|position_ids)$"),
     "not a weight (a TorchScript attribute or a cached buffer)"),
    (re.compile(r"(^|\.)(criterion\.|loss_decode\.)|empty_weight$"), "a training criterion's buffer"),
    (re.compile(r"^(pixel_mean|pixel_std)$"),
     "preprocessing constants (the model folder's preprocessing record holds ours)"),
    (re.compile(r"^auxiliary_head\."), "the auxiliary head of the published training (not used at inference)"),
    (re.compile(r"(^|\.)conv_seg\."), "mmseg's conv_seg, which the Segformer head never uses"),
    (re.compile(r"^decode_head\."), "a decode head of another kind than this model's"),
    (re.compile(r"(^|\.)mask_token$"), "the masked-image-modelling token (unused for segmentation)"),
    (re.compile(r"(^|[./])(head|classifier|fc_norm|pre_logits|pooler)[./]"),
     "the image-classification head (not part of a segmentation model)"),
    (re.compile(r"(^|[./])(norm|layernorm|ln1|encoder_norm)[./]"),
     "the classifier's final norm (segmentation taps the blocks' outputs)"),
)


def drop_reason(key: str) -> str:
    """Why a dropped published tensor is not used (see `_DROP_REASONS`)."""
    return next((why for pattern, why in _DROP_REASONS if pattern.search(key)), "not used by this model")


def with_reasons(dropped) -> dict[str, str]:
    """{key: reason} of a converter's dropped keys (a list gets the reasons by name)."""
    if isinstance(dropped, dict):
        return dict(dropped)
    return {k: drop_reason(k) for k in dropped}


@dataclass(frozen=True)
class WeightConverter:
    """Published layouts of one backbone family -> our `backbone.*` key names (a loose file in our
    own names, the `segadapter` layout, may hold the whole model).

    `layouts` maps a layout name to its tell-tale (anchor key, possible prefixes); the first layout
    whose anchor is present wins, unless the family gives its own `detect_layout(state)`.
    `convert(state, layout) -> (state, dropped keys)` renames to full model keys; the optional hooks:
    `fit(state, model) -> (removed keys, report notes)` adapts a converted state to the model in place
    (resampled position embeddings), `optional_prefixes(layout)` names model keys that may stay
    fresh with that layout, `describe(state) -> (widths, depths)` and `variant_name(widths, depths)`
    word the error when a checkpoint holds another size of the family."""

    family: str
    layouts: dict
    backbone_type: type
    convert: Callable[[dict, str], tuple[dict, list[str]]]
    detect: Callable[[dict], str | None] | None = None
    fit: Callable[[dict, Any], tuple[list[str], list[str]]] = lambda state, model: ([], [])
    optional_prefixes: Callable[[str], tuple[str, ...]] = lambda layout: ()
    describe: Callable[[dict], tuple | None] = lambda state: None
    variant_name: Callable[[Any, Any], str | None] = lambda widths, depths: None

    def handles(self, backbone) -> bool:
        return isinstance(backbone, self.backbone_type)

    def detect_layout(self, state: dict) -> str | None:
        return self.detect(state) if self.detect is not None else first_layout(state, self.layouts)


CONVERTERS: list[WeightConverter] = []


def register_converter(converter: WeightConverter) -> WeightConverter:
    CONVERTERS.append(converter)
    return converter


@dataclass(frozen=True)
class HeadConverter:
    """A published decode head of one head class -> our head's keys, read before the backbone
    converter sees the file.

    `convert(state) -> (our `decode_head.*` tensors, file keys used, file keys deliberately not
    used)`: all empty when the file holds no such head. `layout`: the name of the file's layout
    when this head identifies it (the official SegViT release), else None (the backbone's layout
    names it). `fit(state, head) -> notes` adapts the converted tensors to the head in place
    (e.g. a query grid of another crop size); `fresh`: head keys no file provides (filled by the
    model itself, e.g. class-name embeddings)."""

    head_type: type
    convert: Callable[[dict], tuple[dict, list[str], list[str]]]
    layout: str | None = None
    fit: Callable[[dict, Any], list[str]] = lambda state, head: []
    fresh: tuple[str, ...] = ()

    def handles(self, head) -> bool:
        return isinstance(head, self.head_type)


HEAD_CONVERTERS: list[HeadConverter] = []


def register_head_converter(converter: HeadConverter) -> HeadConverter:
    HEAD_CONVERTERS.append(converter)
    return converter


def find_prefix(state: dict, anchor: str, prefixes: tuple[str, ...]) -> str | None:
    """The first prefix p with p + anchor in state (a layout's tell-tale key)."""
    return next((p for p in prefixes if p + anchor in state), None)


def first_layout(state: dict, layouts: dict[str, tuple[str, tuple[str, ...]]]) -> str | None:
    """The first layout name whose (anchor, prefixes) tell-tale key is in `state`."""
    return next((name for name, (anchor, prefixes) in layouts.items()
                 if find_prefix(state, anchor, prefixes) is not None), None)


def join_key(head: str, tail: str | None) -> str | None:
    """`head + tail`, or None when the tail did not map."""
    return None if tail is None else head + tail


def same_key(k: str) -> str:
    return k


def remap_keys(state: dict[str, torch.Tensor], key_fn: Callable[[str], str | None]
               ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename every key with `key_fn`; returns (renamed state, dropped keys)."""
    out, dropped = {}, []
    for k, v in state.items():
        new = key_fn(k)
        if new == DROP:
            dropped.append(k)
        else:
            out[new if new is not None else k] = v
    return out, dropped


def rename_module(rest: str, table: dict[str, str]) -> str | None:
    """`rest` = 'module.path.param'; map the module path through `table` (longest match)."""
    module, _, param = rest.rpartition(".")
    for src in sorted(table, key=len, reverse=True):
        if module == src:
            return f"{table[src]}.{param}"
    return None
