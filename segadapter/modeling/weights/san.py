"""Weights for SAN models (backbone `ClipBackbone`, head `SANHead`) in published layouts -> our
full-model keys (`backbone.clip.*`, `decode_head.*`), in the converter shape of the other
families (handles / detect_layout / convert / optional_prefixes).

Layouts:
  openai, huggingface   a plain CLIP (see weights/clip.py): loads `backbone.clip.*`; the SAN head
                        stays freshly initialised
  san                   the official release (detectron2 `{'model': ...}`): CLIP as in
                        weights/clip.py, `side_adapter_network.vit_model.*` (timm ViT names),
                        `side_adapter_network.{query_embed, query_pos_embed, fusion_layers.layer_i.
                        input_proj.{0: LayerNorm, 1: conv}, mask_decoder.*}`, `ov_classifier.bg_embed`
In every layout `decode_head.class_embeddings` comes from the class names, not the file, and
`backbone.clip_pretrained` is set (the CLIP text tower is now trained).
"""
from __future__ import annotations

import re

import torch

from ..backbones.clip_backbone import ClipBackbone
from . import clip as weights_clip
from .converters import WeightConverter, register_converter

FAMILY = "CLIP (SAN)"
LAYOUTS = dict(weights_clip.LAYOUTS)
_DROP_SAN = re.compile(r"^(criterion\.|pixel_mean$|pixel_std$)")


def _san_key(k: str) -> str | None:
    """Our head key of an official SAN head key (None: not a head key)."""
    if m := re.fullmatch(r"side_adapter_network\.vit_model\.(patch_embed\.proj\.\w+|pos_embed|blocks\..+)", k):
        return "decode_head.side." + m[1]
    if m := re.fullmatch(r"side_adapter_network\.(query_embed|query_pos_embed)", k):
        return "decode_head.side." + m[1]
    if m := re.fullmatch(r"side_adapter_network\.fusion_layers\.(layer_\d+)\.input_proj\.([01])\.(\w+)", k):
        return f"decode_head.side.fusion_layers.{m[1]}.{'norm' if m[2] == '0' else 'proj'}.{m[3]}"
    if m := re.fullmatch(r"side_adapter_network\.mask_decoder\.(.+)", k):
        return "decode_head.mask_decoder." + m[1]
    if k == "ov_classifier.bg_embed":
        return "decode_head.no_object_embed"
    return None


def convert(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(our full-model state, keys deliberately not used)."""
    clip_state, ignored = weights_clip.convert(state, layout)
    out = {"backbone.clip." + k: v for k, v in clip_state.items()}
    out["backbone.clip_pretrained"] = torch.tensor(True)
    if layout == "san":
        rest = ignored
        ignored = []
        for k in rest:
            new = _san_key(k)
            if new is not None:
                out[new] = state[k]
            elif _DROP_SAN.match(k) or weights_clip._NOT_WEIGHTS.search(k):
                ignored.append(k)
            else:
                out[k] = state[k]  # unknown: kept under its own name so the strict check names it
    return out, ignored


def optional_prefixes(layout: str) -> tuple[str, ...]:
    if layout == "san":
        return ("decode_head.class_embeddings", "decode_head.text_embedded")
    return ("decode_head.",)  # a plain CLIP: the whole SAN head starts fresh


CONVERTER = register_converter(WeightConverter(
    FAMILY,
    LAYOUTS,
    ClipBackbone,
    convert=convert,
    detect=weights_clip.detect_layout,
    optional_prefixes=optional_prefixes,
))
