"""The official SegDeformer head (lygsbw/segdeformer, mmseg 0.29 `SegDeformerHead3`) -> our
`SegDeformerHead`. Its backbone keys are mmseg's MiT (the `openmmlab` layout of weights/mit.py).

Official module       ours
  convs.i, fusion_conv, conv_seg       the same names (ConvModule = conv + bn)
  class_token.q / .k                   mid_query / mid_key (the external module's Attn_mid)
  class_token.cls_token (1, K, C)      class_tokens (K, C)   X_class
  class_token.prop_token (1, K, C)     info_tokens (K, C)    X_info
  trans.attn                           internal_attn (self-attention over X_inter)
  trans.cross_attn                     external_attn (X_inter attends to X_mid)
"""
from __future__ import annotations

import re

import torch

from ..heads.segdeformer import SegDeformerHead
from .converters import HeadConverter, register_head_converter

_MODULES = {"class_token.q": "mid_query", "class_token.k": "mid_key", "trans.attn": "internal_attn",
            "trans.cross_attn": "external_attn"}
_TOKENS = {"class_token.cls_token": "class_tokens", "class_token.prop_token": "info_tokens"}
_SAME = re.compile(r"(convs\.\d+|fusion_conv)\.(conv|bn)\.\w+|conv_seg\.(weight|bias)")
_PROJECT = re.compile(r"(trans\.attn|trans\.cross_attn)\.(query|key|value|out)_project\.(conv|bn)\.(\w+)")
_LINEAR = re.compile(r"(class_token\.[qk])\.(weight|bias)")


def _our_key(rest: str) -> str | None:
    if _SAME.fullmatch(rest):
        return rest
    if m := _PROJECT.fullmatch(rest):
        return f"{_MODULES[m[1]]}.{m[2]}_project.{m[3]}.{m[4]}"
    if m := _LINEAR.fullmatch(rest):
        return f"{_MODULES[m[1]]}.{m[2]}"
    return _TOKENS.get(rest)


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(our `decode_head.*` tensors, the file keys they came from, none dropped); empty unless
    the file holds the official head (told by its class tokens)."""
    if "decode_head.class_token.cls_token" not in state:
        return {}, [], []
    out, used = {}, []
    for k, v in state.items():
        if not k.startswith("decode_head."):
            continue
        new = _our_key(k[len("decode_head."):])
        if new is None:
            continue  # not part of this head: the backbone converter reports it
        out["decode_head." + new] = v[0] if new in _TOKENS.values() else v
        used.append(k)
    return out, used, []


CONVERTER = register_head_converter(HeadConverter(SegDeformerHead, convert))
