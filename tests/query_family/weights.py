"""Its published release (a made-up layout: `encoder.conv{1,2}.*`, `query_head.*`) -> our keys:
a backbone converter keyed by the backbone class and a head converter keyed by the head class."""
from __future__ import annotations

import re

from segadapter.modeling.weights.converters import (HeadConverter, WeightConverter, register_converter,
                                                    register_head_converter)

from .backbone import TinyConvBackbone
from .head import TinyQueryHead

RELEASE = "toy-release"


def _backbone(state: dict, layout: str) -> tuple[dict, list[str]]:
    out, dropped = {}, []
    for k, v in state.items():
        if m := re.fullmatch(r"encoder\.conv([12])\.(weight|bias)", k):
            out[f"backbone.stages.{int(m[1]) - 1}.0.{m[2]}"] = v
        else:
            dropped.append(k)
    return out, dropped


def _head(state: dict) -> tuple[dict, list[str], list[str]]:
    used = [k for k in state if k.startswith("query_head.")]
    return {"decode_head." + k[len("query_head."):]: state[k] for k in used}, used, []


def to_release(state: dict) -> dict:
    """Our state dict in the release's layout (what the test publishes)."""
    out = {}
    for k, v in state.items():
        if m := re.fullmatch(r"backbone\.stages\.([01])\.0\.(weight|bias)", k):
            out[f"encoder.conv{int(m[1]) + 1}.{m[2]}"] = v
        elif k.startswith("decode_head."):
            out["query_head." + k[len("decode_head."):]] = v
    return out


register_converter(WeightConverter("TinyConv", {RELEASE: ("conv1.weight", ("encoder.",))}, TinyConvBackbone,
                                   convert=_backbone))
register_head_converter(HeadConverter(TinyQueryHead, _head))
