"""ViT weights in published layouts -> segadapter key names (the SegViT release's head: weights/segvit.py).

Layouts, told apart by a tell-tale key:
  segadapter   our own names in a loose file (`backbone.blocks.{i}.attn.qkv`: timm's names under
               `backbone.`, as mmseg's timm-backbone files also have; a decode head of another kind
               than the model's is listed as such by the loader)
  mmseg        OpenMMLab ViT (`patch_embed.projection`, `layers.{i}.ln1/ln2`, fused
               `attn.attn.in_proj_weight`, `attn.attn.out_proj`, `ffn.layers.0.0`/`ffn.layers.1`)
  timm         timm / jx `.pth`/`.safetensors` (`patch_embed.proj`, `blocks.{i}.norm1/attn.qkv/...`)
  huggingface  transformers ViT (`embeddings.*`, `encoder.layer.{i}.attention.attention.query` ...;
               also the renamed modules of a transformers-5 `state_dict()`), with or without `vit.`
  jax          Google AugReg / vit_jax `.npz` (`Transformer/encoderblock_{i}/...`, read by `read_npz`)
Classification heads, final norms and poolers are dropped (SegViT's ViT has no final norm).

After `convert`, `fit(state, model)` adapts the position embedding to the model: it drops the class
token (and its position entry) when the model does not keep it, resamples the grid bicubically
(224 / 384 weights -> the model's crop) and drops blocks beyond the model's depth; it returns
(removed keys, notes for the load report).
"""
from __future__ import annotations

import math
import re

import torch

from ...errors import CheckpointError
from ..backbones.base import Backbone
from ..backbones.vit import VIT_SPECS, ViT
from ..layers import resample_abs_pos_embed
from ..published import Published
from .converters import DROP, WeightConverter, find_prefix, register_converter

FAMILY = "ViT"
_JAX_Q = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
LAYOUTS = {
    "segadapter": ("blocks.0.attn.qkv.weight", ("backbone.",)),
    "mmseg": ("layers.0.attn.attn.in_proj_weight", ("backbone.", "")),
    "timm": ("blocks.0.attn.qkv.weight", ("module.", "model.", "encoder.", "")),
    "huggingface": ("encoder.layer.0.attention.attention.query.weight", ("vit.", "")),
    "huggingface5": ("layers.0.attention.q_proj.weight", ("vit.", "")),
    "jax": (_JAX_Q, ("", "opt/target/", "params/")),
}
_QKV = "#qkv"  # suffix of a q/k/v part waiting to be fused: f"{key}{_QKV}{index}"


def detect_layout(state: dict) -> str | None:
    if "backbone.blocks.0.attn.qkv.weight" in state:  # our names (timm's, under `backbone.`)
        return "segadapter"
    for name in ("mmseg", "timm", "huggingface", "huggingface5", "jax"):
        if find_prefix(state, *LAYOUTS[name]) is not None:
            return "huggingface" if name == "huggingface5" else name
    return None


# --------------------------------------------------------------------------------------- backbone
_MM_BLOCK = {"ln1": "norm1", "ln2": "norm2", "attn.attn.out_proj": "attn.proj",
             "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2"}
_HF_BLOCK = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
             "attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_HF_QKV = {"attention.attention.query": 0, "attention.attention.key": 1, "attention.attention.value": 2,
           "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2}
_TIMM_BLOCK = re.compile(r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)")


def _mmseg(k: str, v):
    if k in ("cls_token", "pos_embed"):
        return k, v
    if m := re.fullmatch(r"patch_embed\.projection\.(weight|bias)", k):
        return f"patch_embed.proj.{m[1]}", v
    if m := re.fullmatch(r"layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)", k):  # q, k, v fused as ours
        return f"blocks.{m[1]}.attn.qkv.{m[2]}", v
    if (m := re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", k)) and m[2] in _MM_BLOCK:
        return f"blocks.{m[1]}.{_MM_BLOCK[m[2]]}.{m[3]}", v
    return DROP if k.startswith(("ln1.", "norm.", "head.", "fc_norm.")) else None  # final norm, classifier


def _timm(k: str, v):
    if k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias") or _TIMM_BLOCK.fullmatch(k):
        return k, v
    return DROP if k.startswith(("norm.", "fc_norm.", "head.", "pre_logits.")) else None


def _hf(k: str, v):
    if k == "embeddings.cls_token":
        return "cls_token", v
    if k == "embeddings.position_embeddings":
        return "pos_embed", v
    if m := re.fullmatch(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", k):
        return f"patch_embed.proj.{m[1]}", v
    if m := re.fullmatch(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)", k):
        if m[2] in _HF_QKV:
            return f"blocks.{m[1]}.attn.qkv.{m[3]}{_QKV}{_HF_QKV[m[2]]}", v
        if m[2] in _HF_BLOCK:
            return f"blocks.{m[1]}.{_HF_BLOCK[m[2]]}.{m[3]}", v
    return DROP if k.startswith(("layernorm.", "pooler.", "classifier.", "embeddings.mask_token")) else None


def _jax(k: str, v: torch.Tensor):
    """vit_jax / AugReg names; kernels are (in, out) (conv: HWIO; attention: (C, heads, hd) and
    (heads, hd, C)), torch wants (out, in)."""
    if k == "embedding/kernel":
        return "patch_embed.proj.weight", v.permute(3, 2, 0, 1)
    if k == "embedding/bias":
        return "patch_embed.proj.bias", v
    if k == "cls":
        return "cls_token", v
    if k in ("Transformer/posembed_input/pos_embedding", "pos_embedding"):
        return "pos_embed", v
    if m := re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)/(kernel|bias|scale)", k):
        i, mod, p = m[1], m[2], m[3]
        if n := re.fullmatch(r"LayerNorm_(\d)", mod):  # LayerNorm_0 before attention, the other before MLP
            return f"blocks.{i}.norm{1 if n[1] == '0' else 2}.{'weight' if p == 'scale' else 'bias'}", v
        if n := re.fullmatch(r"MlpBlock_\d/Dense_([01])", mod):
            return f"blocks.{i}.mlp.fc{int(n[1]) + 1}.{'weight' if p == 'kernel' else 'bias'}", \
                v.t() if p == "kernel" else v
        if n := re.fullmatch(r"MultiHeadDotProductAttention_\d/(query|key|value|out)", mod):
            if n[1] == "out":  # kernel (heads, hd, C) -> (C, heads*hd)
                return (f"blocks.{i}.attn.proj.weight", v.reshape(-1, v.shape[-1]).t()) if p == "kernel" \
                    else (f"blocks.{i}.attn.proj.bias", v)
            part = ("query", "key", "value").index(n[1])
            if p == "kernel":  # (C, heads, hd) -> (heads*hd, C)
                return f"blocks.{i}.attn.qkv.weight{_QKV}{part}", v.reshape(v.shape[0], -1).t()
            return f"blocks.{i}.attn.qkv.bias{_QKV}{part}", v.reshape(-1)
    return DROP if k.startswith(("Transformer/encoder_norm/", "head/", "pre_logits/")) else None


# ----------------------------------------------------------------------------------------- convert
_BACKBONE_FNS = {"mmseg": _mmseg, "timm": _timm, "huggingface": _hf, "jax": _jax}


def convert(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and reshape) `state` in `layout` to our keys; returns (state, deliberately dropped keys).
    Unknown keys are kept under their own name so that the strict load names them."""
    if layout == "segadapter":  # timm's backbone names are ours: drop its classifier parts, keep the rest
        out, dropped = {}, []
        for k, v in state.items():
            new = _timm(k[len("backbone."):], v) if k.startswith("backbone.") else (k, v)
            if new == DROP:
                dropped.append(k)
            else:
                out[k if new is None else ("backbone." + new[0] if k.startswith("backbone.") else new[0])] = v
        return out, dropped
    names = ("huggingface", "huggingface5") if layout == "huggingface" else (layout,)  # HF: either naming
    prefix = next(p for n in names if (p := find_prefix(state, *LAYOUTS[n])) is not None)
    backbone_fn = _BACKBONE_FNS[layout]
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in state.items():
        if k.startswith(prefix) and not (prefix == "" and k.startswith(("decode_head.", "auxiliary_head."))):
            new = backbone_fn(k[len(prefix):], v)
            head = "backbone."
        else:  # foreign decode / auxiliary heads, classifier heads outside the prefix
            new = DROP if k.startswith(("decode_head.", "auxiliary_head.", "head.", "classifier.")) else None
            head = ""
        if new == DROP:
            dropped.append(k)
        elif new is None:
            out[k] = v
        else:
            for nk, nv in (new if isinstance(new, list) else [new]):
                out[head + nk] = nv
    return _fuse_qkv(out), dropped


def _fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    parts: dict[str, dict[int, torch.Tensor]] = {}
    out = {}
    for k, v in state.items():
        if _QKV in k:
            base, idx = k.split(_QKV)
            parts.setdefault(base, {})[int(idx)] = v
        else:
            out[k] = v
    for base, p in parts.items():
        if sorted(p) != [0, 1, 2]:
            raise CheckpointError(f"{base}: the checkpoint lacks some of its query/key/value parts")
        out[base] = torch.cat([p[0], p[1], p[2]], dim=0)
    return out


# -------------------------------------------------------------------------------------------- fit
def fit(state: dict[str, torch.Tensor], model) -> tuple[list[str], list[str]]:
    """Adapt a converted state to `model` (a Segmentor or a bare ViT): class token, position
    grid, depth. Mutates `state`; returns (our keys removed, notes for the load report)."""
    backbone = model if isinstance(model, Backbone) else model.backbone
    prefix = "backbone." if backbone is not model else ""
    removed, notes = [], []
    pos_key, cls_key = prefix + "pos_embed", prefix + "cls_token"
    pos = state.get(pos_key)
    if pos is not None:
        src_prefix = 1 if cls_key in state else 0
        if src_prefix and not backbone.keep_cls_token:
            pos = pos[:, 1:]
            del state[cls_key]
            removed.append(cls_key)
            notes.append("class token and its position embedding not used (dropped after the position embedding)")
            src_prefix = 0
        n = pos.shape[1] - src_prefix
        side = math.isqrt(n)
        if side * side != n:
            raise CheckpointError(f"position embedding with {n} grid tokens is not a square grid")
        if (side, side) != tuple(backbone.grid_size):
            p = backbone.patch_size
            pos = resample_abs_pos_embed(pos, backbone.grid_size, (side, side), src_prefix)
            gh, gw = backbone.grid_size
            notes.append(f"position embedding resampled (bicubic) from {side}x{side} ({side * p} px) "
                         f"to {gh}x{gw} ({gh * p}x{gw * p} px)")
        state[pos_key] = pos
    depth = len(backbone.blocks)
    block = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    deeper = [k for k in state if (m := block.match(k)) and int(m[1]) >= depth]
    if deeper:
        extra = sorted({int(block.match(k)[1]) for k in deeper})
        for k in deeper:
            del state[k]
        removed += deeper
        notes.append(f"blocks {extra[0]}-{extra[-1]} of the checkpoint not used (the model has {depth})")
    return removed, notes


# ---------------------------------------------------------------------------------------- reading
def describe(state: dict) -> tuple[tuple[int], tuple[int]] | None:
    """((width,), (depth,)) of the ViT in a converted state dict."""
    w = state.get("backbone.patch_embed.proj.weight")
    blocks = {int(m[1]) for k in state if (m := re.match(r"backbone\.blocks\.(\d+)\.", k))}
    if w is None or not blocks:
        return None
    return (int(w.shape[0]),), (max(blocks) + 1,)


def variant_name(widths, depths) -> str | None:
    return next((f"ViT-{v.upper()}" for v, s in VIT_SPECS.items()
                 if s.widths == tuple(widths) and s.depths == tuple(depths)), None)


CONVERTER = register_converter(WeightConverter(
    FAMILY,
    LAYOUTS,
    ViT,
    convert=convert,
    detect=detect_layout,
    fit=fit,
    describe=describe,
    variant_name=variant_name,
))


_IN21K = ("ImageNet-21k + 1k ViT at 384 px, in transformers' layout; SegViT's paper starts from the same "
          "weights as SETR's timm/jx files (`jx_vit_*_p16_384`)")
_AUGREG = "timm's AugReg ViT at 384 px (the CPU-scale variants; not in SegViT's paper)"
_ENCODERS = {"t": ("timm/vit_tiny_patch16_384.augreg_in21k_ft_in1k", _AUGREG),
             "s": ("timm/vit_small_patch16_384.augreg_in21k_ft_in1k", _AUGREG),
             "b": ("google/vit-base-patch16-384", _IN21K), "l": ("google/vit-large-patch16-384", _IN21K)}


def published_encoder(variant: str) -> Published:
    """The ImageNet-21k + 1k ViT at 384 px for a variant t, s, b, l."""
    repo, paper = _ENCODERS[variant]
    return Published(repo, "backbone", paper)
