"""Published Segformer All-MLP decode heads -> our `AllMLPHead` (heads/all_mlp.py).

Layouts, told apart by the name of the first per-stage projection:
  NVlabs / mmseg 0.x  `decode_head.linear_c{1..4}.proj`, `linear_fuse.{conv,bn}`, `linear_pred`
                      (and mmseg's `conv_seg`, created by its base class and never used)
  Hugging Face        `decode_head.linear_c.{0..3}.proj` (transformers 5: `linear_projections`),
                      `linear_fuse`, `batch_norm`, `classifier`
The projections are Linear layers there and 1x1 convs here. Heads of other kinds (mmseg 1.x's
SegformerHead, with BN + ReLU after every projection) are not read here: the loader lists them as
a decode head of another kind.
"""
from __future__ import annotations

import re

import torch

from ..heads.all_mlp import AllMLPHead
from .converters import HeadConverter, register_head_converter, rename_module

_NVLABS = {"linear_fuse.conv": "fuse", "linear_fuse.bn": "fuse_norm", "linear_pred": "classifier"}
_HF = {"linear_fuse": "fuse", "batch_norm": "fuse_norm", "classifier": "classifier"}


def _nvlabs_key(rest: str) -> str | None:
    if m := re.fullmatch(r"linear_c(\d)\.proj\.(\w+)", rest):
        return f"proj.{int(m[1]) - 1}.{m[2]}"
    return rename_module(rest, _NVLABS)


def _hf_key(rest: str) -> str | None:
    if m := re.fullmatch(r"(?:linear_c|linear_projections)\.(\d)\.proj\.(\w+)", rest):
        return f"proj.{m[1]}.{m[2]}"
    return rename_module(rest, _HF)


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    if "decode_head.linear_c1.proj.weight" in state:
        key_fn, dropped = _nvlabs_key, [k for k in state if k.startswith("decode_head.conv_seg.")]
    elif "decode_head.linear_c.0.proj.weight" in state or "decode_head.linear_projections.0.proj.weight" in state:
        key_fn, dropped = _hf_key, []
    else:
        return {}, [], []
    out, used = {}, []
    for k, v in state.items():
        if not k.startswith("decode_head.") or k in dropped:
            continue
        new = key_fn(k[len("decode_head."):])
        if new is None:
            continue  # not part of this head: the loader lists it
        if re.fullmatch(r"proj\.\d+\.weight", new) and v.ndim == 2:
            v = v[:, :, None, None]  # Linear -> 1x1 conv
        out["decode_head." + new] = v
        used.append(k)
    return out, used, dropped


CONVERTER = register_head_converter(HeadConverter(AllMLPHead, convert))
