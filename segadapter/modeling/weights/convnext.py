"""ConvNeXt weights in published layouts -> segadapter key names.

Layouts, told apart by a tell-tale key:
  facebook      Facebook original (`downsample_layers`, `stages.{i}.{j}.dwconv`; our names too),
                classification (`norm`, `head` dropped) or mmseg-style (`backbone.norm{i}`)
  timm          `stem`, `stages.{i}.downsample`, `stages.{i}.blocks.{j}.conv_dw/mlp.fc1/...`
  huggingface   `convnext.embeddings`, `convnext.encoder.stages.{i}.layers.{j}` (ConvNextModel /
                ForImageClassification / Backbone, whose `hidden_states_norms` are our out_norms)
  mmpretrain    OpenMMLab `backbone.stages.{i}.{j}.depthwise_conv/pointwise_conv1/...`
  segadapter    our own names in a loose file (with `out_norms` or our decode head)
ImageNet weights have no per-output norms (`out_norms`): those stay fresh. Foreign decode heads
(UperNet, ...) never fit our All-MLP head and are dropped.
"""
from __future__ import annotations

import re

import torch

from ..backbones.convnext import CONVNEXT_SPECS, ConvNeXt
from ..published import Published
from .converters import DROP, WeightConverter, find_prefix, join_key, register_converter, remap_keys, rename_module, same_key

FAMILY = "ConvNeXt"
LAYOUTS = {
    "segadapter": ("out_norms.0.weight", ("backbone.", "")),
    "facebook": ("stages.0.0.dwconv.weight", ("backbone.", "")),
    "timm": ("stages.0.blocks.0.conv_dw.weight", ("backbone.", "")),
    "huggingface": ("embeddings.patch_embeddings.weight", ("convnext.", "backbone.", "")),
    "mmpretrain": ("stages.0.0.depthwise_conv.weight", ("backbone.", "")),
}
_HEADS = ("decode_head.", "auxiliary_head.")

_TIMM_BLOCK = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2"}
_HF_BLOCK = {"dwconv": "dwconv", "layernorm": "norm", "pwconv1": "pwconv1", "pwconv2": "pwconv2"}
_MM_BLOCK = {"depthwise_conv": "dwconv", "norm": "norm", "pointwise_conv1": "pwconv1",
             "pointwise_conv2": "pwconv2"}


def _facebook(k: str) -> str | None:
    if re.fullmatch(r"(downsample_layers\.\d\.[01]|stages\.\d\.\d+\.(dwconv|norm|pwconv1|pwconv2))\.\w+", k) \
            or re.fullmatch(r"stages\.\d\.\d+\.gamma", k):
        return k
    if m := re.fullmatch(r"norm(\d)\.(\w+)", k):  # mmseg-style per-output norms
        return f"out_norms.{m[1]}.{m[2]}"
    return DROP if k.startswith(("norm.", "head.")) else None  # classification norm + head


def _timm(k: str) -> str | None:
    if m := re.fullmatch(r"stem\.([01])\.(\w+)", k):
        return f"downsample_layers.0.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d)\.downsample\.([01])\.(\w+)", k):
        return f"downsample_layers.{m[1]}.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(?:ls\.)?gamma", k):
        return f"stages.{m[1]}.{m[2]}.gamma"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.{m[2]}.", rename_module(m[3], _TIMM_BLOCK))
    return DROP if k.startswith("head.") else None  # head.norm / head.fc: the classifier


def _hf(k: str) -> str | None:
    if m := re.fullmatch(r"embeddings\.(patch_embeddings|layernorm)\.(\w+)", k):
        return f"downsample_layers.0.{0 if m[1] == 'patch_embeddings' else 1}.{m[2]}"
    if m := re.fullmatch(r"encoder\.stages\.(\d)\.downsampling_layer\.([01])\.(\w+)", k):
        return f"downsample_layers.{m[1]}.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"encoder\.stages\.(\d)\.layers\.(\d+)\.layer_scale_parameter", k):
        return f"stages.{m[1]}.{m[2]}.gamma"
    if m := re.fullmatch(r"encoder\.stages\.(\d)\.layers\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.{m[2]}.", rename_module(m[3], _HF_BLOCK))
    if m := re.fullmatch(r"hidden_states_norms\.stage(\d)\.(\w+)", k):
        return f"out_norms.{int(m[1]) - 1}.{m[2]}"
    return DROP if k.startswith(("layernorm.", "classifier.")) else None  # pooled norm + classifier


def _mmpretrain(k: str) -> str | None:
    if re.fullmatch(r"downsample_layers\.\d\.[01]\.\w+", k):
        return k
    if m := re.fullmatch(r"stages\.(\d)\.(\d+)\.gamma", k):
        return f"stages.{m[1]}.{m[2]}.gamma"
    if m := re.fullmatch(r"stages\.(\d)\.(\d+)\.(.+)", k):
        return join_key(f"stages.{m[1]}.{m[2]}.", rename_module(m[3], _MM_BLOCK))
    if m := re.fullmatch(r"norm(\d)\.(\w+)", k):
        return f"out_norms.{m[1]}.{m[2]}"
    return None


def _foreign_head(k: str) -> str | None:
    # Outside the backbone: classification heads (`head.`, `classifier.`) and foreign decode heads.
    return DROP if k.startswith(_HEADS + ("head.", "classifier.")) else None


_KEY_FNS = {"segadapter": same_key, "facebook": _facebook, "timm": _timm, "huggingface": _hf,
            "mmpretrain": _mmpretrain}


def convert(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename `state` (in `layout`) to our keys; returns (state, deliberately dropped keys)."""
    anchor, prefixes = LAYOUTS[layout]
    prefix = find_prefix(state, anchor, prefixes)
    backbone_fn = _KEY_FNS[layout]
    outside_fn = same_key if layout == "segadapter" else _foreign_head

    def key_fn(k: str) -> str | None:
        if not k.startswith(prefix) or (prefix == "" and k.startswith(_HEADS)):
            return outside_fn(k)
        new = backbone_fn(k[len(prefix):])
        return new if new in (None, DROP) else "backbone." + new

    out, dropped = remap_keys(state, key_fn)
    return _fit_shapes(out), dropped


def describe(state: dict) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(widths, depths) of the encoder in a converted state dict."""
    widths, depths = [], []
    for i in range(4):
        blocks = {int(m[1]) for k in state if (m := re.match(rf"backbone\.stages\.{i}\.(\d+)\.dwconv\.weight", k))}
        if not blocks:
            return None
        widths.append(int(state[f"backbone.stages.{i}.{min(blocks)}.dwconv.weight"].shape[0]))
        depths.append(max(blocks) + 1)
    return tuple(widths), tuple(depths)


def variant_name(widths, depths) -> str | None:
    return next((f"ConvNeXt-{v.upper()}" for v, s in CONVNEXT_SPECS.items()
                 if tuple(s.widths) == tuple(widths) and tuple(s.depths) == tuple(depths)), None)


def _fit_shapes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's conv_mlp and mmpretrain's linear_pw_conv=False store the MLP as 1x1 convs; ours are Linear."""
    for k, v in state.items():
        if re.search(r"\.pwconv[12]\.weight$", k) and v.ndim == 4 and tuple(v.shape[2:]) == (1, 1):
            state[k] = v.flatten(1)
    return state



def _optional_prefixes(layout: str) -> tuple[str, ...]:
    # ImageNet weights have no (or only the last) per-output norm.
    return () if layout == "segadapter" else ("backbone.out_norms.",)


CONVERTER = register_converter(WeightConverter(
    FAMILY,
    LAYOUTS,
    ConvNeXt,
    convert=convert,
    optional_prefixes=_optional_prefixes,
    describe=describe,
    variant_name=variant_name,
))


_HF_NAMES = {"t": "tiny", "s": "small", "b": "base"}


def published_encoder(variant: str) -> Published:
    """Facebook's ImageNet-1k ConvNeXt (transformers' layout) for a variant t, s, b."""
    return Published(f"facebook/convnext-{_HF_NAMES[variant]}-224", "backbone",
                     "ImageNet-1k ConvNeXt (the 22k-pretrained base is the named option `in22k`)")


def named_encoders(variant: str) -> dict[str, Published]:
    """Alternatives by tag: the ImageNet-22k ConvNeXt-B (`pretrained="in22k"`)."""
    if variant != "b":
        return {}
    return {"in22k": Published("facebook/convnext-base-224-22k", "backbone", "ImageNet-22k ConvNeXt-B")}
