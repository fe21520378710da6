"""The official SegViT release's decode heads (mmseg 0.x `ATMHead` / Shrunk `QU + ATM`) -> our
`ATMHead` / `ShrunkATMHead` (heads/segvit.py, heads/segvit_shrunk.py). Its backbone keys are mmseg's
ViT (the `mmseg` layout of weights/vit.py); the file's layout is reported as `segvit`.

Official module                          ours
  input_proj_{i}, proj_norm_{i}          input_proj.{i-1}, proj_norm.{i-1}
  decoder_{i}.layers.{j} (plain)         decoders.{i-1}.{j}
  q, class_embed (plain)                 queries, class_embed
  decoder_{i}.layers.{j} (Shrunk QU)     qu_decoders.{i-1}.{j}; `q` -> grid_queries
  atm.decoder_1.layers.{j}, atm.q,       atm_layers.{j}, queries, class_embed
  atm.class_embed (Shrunk)
Decoder layers are torch's TransformerDecoderLayer (fused in_proj) or the official attention
with separate q/k/v; a Shrunk grid of another crop size is resampled (`fit`).
"""
from __future__ import annotations

import math
import re

import torch

from ..heads.segvit import FixedAssignmentHead
from ..layers import resample_abs_pos_embed
from .converters import HeadConverter, register_head_converter

_DEC_LAYER = {"self_attn.out_proj": "self_attn.proj", "linear1": "fc1", "linear2": "fc2",
              "norm1": "norm1", "norm2": "norm2", "norm3": "norm3", "multihead_attn.q": "cross_attn.q",
              "multihead_attn.k": "cross_attn.k", "multihead_attn.v": "cross_attn.v",
              "multihead_attn.proj": "cross_attn.proj", "multihead_attn.out_proj": "cross_attn.proj"}


def _decoder_layer(prefix: str, rest: str, v):
    """One official decoder layer parameter (torch TransformerDecoderLayer names) -> ours."""
    if m := re.fullmatch(r"self_attn\.in_proj_(weight|bias)", rest):
        return [(f"{prefix}self_attn.qkv.{m[1]}", v)]
    if m := re.fullmatch(r"multihead_attn\.in_proj_(weight|bias)", rest):  # standard decoder: fused q/k/v
        return [(f"{prefix}cross_attn.{n}.{m[1]}", t) for n, t in zip("qkv", v.chunk(3))]
    mod, _, p = rest.rpartition(".")
    return [(f"{prefix}{_DEC_LAYER[mod]}.{p}", v)] if mod in _DEC_LAYER else None


def _head_key(k: str, v, shrunk: bool):
    """[(our head key, tensor)], or None: not a key of this head."""
    if m := re.fullmatch(r"(input_proj|proj_norm)_(\d+)\.(weight|bias)", k):
        return [(f"{m[1]}.{int(m[2]) - 1}.{m[3]}", v)]
    if not shrunk:
        if m := re.fullmatch(r"decoder_(\d+)\.layers\.(\d+)\.(.+)", k):
            return _decoder_layer(f"decoders.{int(m[1]) - 1}.{m[2]}.", m[3], v)
        new = {"q.weight": "queries.weight", "class_embed.weight": "class_embed.weight",
               "class_embed.bias": "class_embed.bias"}.get(k)
        return [(new, v)] if new else None
    if m := re.fullmatch(r"decoder_(\d+)\.layers\.(\d+)\.(.+)", k):
        return _decoder_layer(f"qu_decoders.{int(m[1]) - 1}.{m[2]}.", m[3], v)
    if m := re.fullmatch(r"atm\.decoder_1\.layers\.(\d+)\.(.+)", k):
        return _decoder_layer(f"atm_layers.{m[1]}.", m[2], v)
    new = {"q.weight": "grid_queries.weight", "atm.q.weight": "queries.weight",
           "atm.class_embed.weight": "class_embed.weight", "atm.class_embed.bias": "class_embed.bias"}.get(k)
    return [(new, v)] if new else None


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Empty unless the file holds the official head, told by its query embedding `q` (ours:
    `queries`, so a loose file in our names is never taken for it)."""
    if "decode_head.q.weight" not in state:
        return {}, [], []
    shrunk = "decode_head.atm.class_embed.weight" in state
    out, used, dropped = {}, [], []
    for k, v in state.items():
        if not k.startswith("decode_head."):
            continue
        rest = k[len("decode_head."):]
        if rest.startswith(("loss_decode.", "atm.loss_decode.")) or rest.endswith("empty_weight"):
            dropped.append(k)  # the criterion's class-weight buffer
            continue
        new = _head_key(rest, v, shrunk)
        if new is None:
            continue  # not part of this head: the loader lists it
        out.update({"decode_head." + nk: nv for nk, nv in new})
        used.append(k)
    return out, used, dropped


def fit(state: dict[str, torch.Tensor], head: FixedAssignmentHead) -> list[str]:
    """A Shrunk QU query grid of another crop size, resampled bicubically to the head's."""
    grid_q = state.get("decode_head.grid_queries.weight")
    if grid_q is None or head.query_grid is None:
        return []
    side, want = math.isqrt(grid_q.shape[0]), head.query_grid
    if side * side != grid_q.shape[0] or side == want:
        return []
    state["decode_head.grid_queries.weight"] = resample_abs_pos_embed(grid_q[None], (want, want), (side, side))[0]
    return [f"QU query grid resampled (bicubic) from {side}x{side} to {want}x{want}"]


CONVERTER = register_head_converter(HeadConverter(FixedAssignmentHead, convert, layout="segvit", fit=fit))
