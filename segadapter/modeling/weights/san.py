"""The official SAN release's head (detectron2 `{'model': ...}`) -> our `SANHead`. Its CLIP keys
(`clip_visual_extractor.*`, `clip_rec_head.*`, `ov_classifier.*`) are the `san` layout of the
CLIP backbone converter (weights/clip.py).

Official module                                                   ours (decode_head.)
  side_adapter_network.vit_model.{patch_embed.proj, pos_embed,      side.*
    blocks.*} (timm ViT names), side_adapter_network.{query_embed,
    query_pos_embed}
  side_adapter_network.fusion_layers.layer_i.input_proj.{0, 1}      side.fusion_layers.layer_i.{norm, proj}
  side_adapter_network.mask_decoder.*                               mask_decoder.*
  ov_classifier.bg_embed                                            no_object_embed
`class_embeddings` and `text_embedded` never come from a file: the model's vocabulary fills them
from the class names.
"""
from __future__ import annotations

import re

import torch

from ..heads.san import SANHead
from .converters import HeadConverter, register_head_converter


def _head_key(k: str) -> str | None:
    """Our head key of an official SAN head key (None: not a head key)."""
    if m := re.fullmatch(r"side_adapter_network\.vit_model\.(patch_embed\.proj\.\w+|pos_embed|blocks\..+)", k):
        return "side." + m[1]
    if m := re.fullmatch(r"side_adapter_network\.(query_embed|query_pos_embed)", k):
        return "side." + m[1]
    if m := re.fullmatch(r"side_adapter_network\.fusion_layers\.(layer_\d+)\.input_proj\.([01])\.(\w+)", k):
        return f"side.fusion_layers.{m[1]}.{'norm' if m[2] == '0' else 'proj'}.{m[3]}"
    if m := re.fullmatch(r"side_adapter_network\.mask_decoder\.(.+)", k):
        return "mask_decoder." + m[1]
    return "no_object_embed" if k == "ov_classifier.bg_embed" else None


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    out, used = {}, []
    for k, v in state.items():
        new = _head_key(k)
        if new is not None:
            out["decode_head." + new] = v
            used.append(k)
    return out, used, []


CONVERTER = register_head_converter(HeadConverter(
    SANHead, convert, fresh=("decode_head.class_embeddings", "decode_head.text_embedded")))
