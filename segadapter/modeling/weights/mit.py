"""MiT / Segformer weights in published layouts -> segadapter key names.

Layouts, told apart by the name of the first patch-embedding conv:
  nvlabs          NVlabs original: encoder (`mit_b0.pth`) or full (`backbone.` + `decode_head.`,
                  whose head weights/all_mlp.py reads)
  huggingface     transformers v4 names; transformers v5 `save_pretrained` still writes these
  huggingface-v5  transformers v5 module names (a plain `torch.save(model.state_dict())`)
  openmmlab       mmseg / mmpretrain MiT (`layers.{i}.{0,1,2}`), encoder only
  segadapter      our own names in a loose file (whole model or bare backbone)
"""
from __future__ import annotations

import re

import torch

from ..backbones.mit import MIT_SPECS, MixVisionTransformer
from ..published import Published
from .converters import DROP, WeightConverter, find_prefix, join_key, register_converter, remap_keys, rename_module, same_key

FAMILY = "MiT/Segformer"
# layout -> (its first patch-embedding conv weight, encoder prefixes to look for it under)
LAYOUTS = {
    "segadapter": ("stages.0.patch_embed.proj.weight", ("backbone.", "")),
    "nvlabs": ("patch_embed1.proj.weight", ("backbone.", "")),
    "huggingface": ("encoder.patch_embeddings.0.proj.weight", ("segformer.", "")),
    "huggingface-v5": ("stages.0.patch_embeddings.proj.weight", ("segformer.", "")),
    "openmmlab": ("layers.0.0.projection.weight", ("backbone.", "")),
}
_HEADS = ("decode_head.", "auxiliary_head.")

# Block-internal module names -> ours. `attn.k`/`attn.v` are fused into `attn.kv` afterwards,
# `attn.qkv` (OpenMMLab's packed in_proj) split into `attn.q` + `attn.kv`.
_HF_BLOCK = {
    "layer_norm_1": "norm1", "attention.self.query": "attn.q", "attention.self.key": "attn.k",
    "attention.self.value": "attn.v", "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm", "attention.output.dense": "attn.proj",
    "layer_norm_2": "norm2", "mlp.dense1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv",
    "mlp.dense2": "mlp.fc2",
}
_HF5_BLOCK = {
    "layernorm_before": "norm1", "attention.q_proj": "attn.q", "attention.k_proj": "attn.k",
    "attention.v_proj": "attn.v", "attention.sequence_reduction.sequence_reduction": "attn.sr",
    "attention.sequence_reduction.layer_norm": "attn.norm", "attention.o_proj": "attn.proj",
    "layernorm_after": "norm2", "mlp.fc1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv",
    "mlp.fc2": "mlp.fc2",
}
_MM_BLOCK = {
    "norm1": "norm1", "attn.attn.out_proj": "attn.proj", "attn.sr": "attn.sr", "attn.norm": "attn.norm",
    "norm2": "norm2", "ffn.layers.0": "mlp.fc1", "ffn.layers.1": "mlp.dwconv", "ffn.layers.4": "mlp.fc2",
}
_EMBED = {"proj": "proj", "layer_norm": "norm"}


def _nvlabs_encoder(k: str) -> str | None:
    if m := re.fullmatch(r"patch_embed(\d)\.(.+)", k):
        return f"stages.{int(m[1]) - 1}.patch_embed.{m[2]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", k):  # same block names as ours but the dwconv
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}." + m[3].replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
    if m := re.fullmatch(r"norm(\d)\.(.+)", k):
        return f"stages.{int(m[1]) - 1}.norm.{m[2]}"
    return DROP if k.startswith("head.") else None  # head.*: the ImageNet classifier


def _hf_encoder(k: str) -> str | None:
    if m := re.fullmatch(r"encoder\.patch_embeddings\.(\d)\.(.+)", k):
        return join_key(f"stages.{m[1]}.patch_embed.", rename_module(m[2], _EMBED))
    if m := re.fullmatch(r"encoder\.block\.(\d)\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.blocks.{m[2]}.", rename_module(m[3], _HF_BLOCK))
    if m := re.fullmatch(r"encoder\.layer_norm\.(\d)\.(\w+)", k):
        return f"stages.{m[1]}.norm.{m[2]}"
    return None


def _hf5_encoder(k: str) -> str | None:
    if m := re.fullmatch(r"stages\.(\d)\.patch_embeddings\.(.+)", k):
        return join_key(f"stages.{m[1]}.patch_embed.", rename_module(m[2], _EMBED))
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.blocks.{m[2]}.", rename_module(m[3], _HF5_BLOCK))
    if m := re.fullmatch(r"stages\.(\d)\.layer_norm\.(\w+)", k):
        return f"stages.{m[1]}.norm.{m[2]}"
    return None


def _mm_encoder(k: str) -> str | None:
    if m := re.fullmatch(r"layers\.(\d)\.0\.(.+)", k):
        return join_key(f"stages.{m[1]}.patch_embed.", rename_module(m[2], {"projection": "proj", "norm": "norm"}))
    if m := re.fullmatch(r"layers\.(\d)\.1\.(\d+)\.attn\.attn\.in_proj_(weight|bias)", k):
        return f"stages.{m[1]}.blocks.{m[2]}.attn.qkv.{m[3]}"
    if m := re.fullmatch(r"layers\.(\d)\.1\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.blocks.{m[2]}.", rename_module(m[3], _MM_BLOCK))
    if m := re.fullmatch(r"layers\.(\d)\.2\.(\w+)", k):
        return f"stages.{m[1]}.norm.{m[2]}"
    return None


_KEY_FNS = {
    "segadapter": same_key,
    "nvlabs": _nvlabs_encoder,
    "huggingface": _hf_encoder,
    "huggingface-v5": _hf5_encoder,
    "openmmlab": _mm_encoder,
}


def convert(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename `state` (in `layout`) to our keys; returns (state, deliberately dropped keys).
    Published decode heads are read by head converters (weights/all_mlp.py) before this."""
    anchor, prefixes = LAYOUTS[layout]
    prefix = find_prefix(state, anchor, prefixes)
    encoder_fn = _KEY_FNS[layout]

    def key_fn(k: str) -> str | None:
        if layout == "segadapter" and not k.startswith(prefix):
            return k  # the rest of a whole model in our names
        if not k.startswith(prefix) or (prefix == "" and k.startswith(_HEADS)):
            # SegformerForImageClassification's ImageNet classifier; anything else is unknown
            return DROP if k.startswith(("classifier.", "head.")) else None
        new = encoder_fn(k[len(prefix):])
        return new if new in (None, DROP) else "backbone." + new

    out, dropped = remap_keys(state, key_fn)
    return _fit_shapes(_fuse_attention(out)), dropped


def describe(state: dict) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(widths, depths) of the encoder in a converted state dict."""
    widths, depths = [], []
    for i in range(4):
        w = state.get(f"backbone.stages.{i}.patch_embed.proj.weight")
        if w is None:
            return None
        widths.append(int(w.shape[0]))
        blocks = {int(m[1]) for k in state if (m := re.match(rf"backbone\.stages\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
    return tuple(widths), tuple(depths)


def variant_name(widths, depths) -> str | None:
    return next((f"MiT-{v.upper()}" for v, s in MIT_SPECS.items()
                 if tuple(s.widths) == tuple(widths) and tuple(s.depths) == tuple(depths)), None)


def _fuse_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Separate key/value -> our fused kv (key rows first); packed q,k,v -> q + kv."""
    for k in [k for k in state if ".attn.k." in k]:
        v = k.replace(".attn.k.", ".attn.v.")
        if v in state:
            state[k.replace(".attn.k.", ".attn.kv.")] = torch.cat([state.pop(k), state.pop(v)])
    for k in [k for k in state if ".attn.qkv." in k]:
        qkv = state.pop(k)
        c = qkv.shape[0] // 3
        state[k.replace(".qkv.", ".q.")], state[k.replace(".qkv.", ".kv.")] = qkv[:c], qkv[c:]
    return state


def _fit_shapes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """1x1 conv -> Linear: OpenMMLab's Mix-FFN uses 1x1 convs (ours are Linear)."""
    for k, v in state.items():
        if re.search(r"\.mlp\.fc[12]\.weight$", k) and v.ndim == 4 and tuple(v.shape[2:]) == (1, 1):
            state[k] = v.flatten(1)
    return state


CONVERTER = register_converter(WeightConverter(
    FAMILY,
    LAYOUTS,
    MixVisionTransformer,
    convert=convert,
    describe=describe,
    variant_name=variant_name,
))


def published_encoder(variant: str) -> Published:
    """NVIDIA's ImageNet-1k MiT encoder (transformers' layout) for a variant b0-b5."""
    return Published(f"nvidia/mit-{variant}", "backbone",
                     "ImageNet-1k MiT encoder, as Segformer and SegAdapter (and SegDeformer, SeMask) start from")
