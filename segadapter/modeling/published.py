"""The default published weights of every registered variant: what `pretrained=True` loads.

One table, kept here. Each entry is a Hugging Face repository in a layout the toolkit reads
(checked against the public model pages); `part` says what it fills: the backbone (encoder-only
weights; the rest of the model starts fresh), the whole model (a fine-tuned Segformer whose class
count matches), or SAN's CLIP (weights and tokenizer files from the same repository, through the
`clip` / `vocab` options). `paper` says where the weights were used, or how they differ from what
the method's paper used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Published:
    repo: str
    part: str  # "backbone" | "model" | "clip"
    paper: str
    num_classes: int | None = None  # "model": the class count the weights predict
    dataset: str | None = None


_MIT = "ImageNet-1k MiT encoder, as Segformer and SegAdapter (and SegDeformer, SeMask) start from"
_SEGFORMER_ADE = {0: 512, 1: 512, 2: 512, 3: 512, 4: 512, 5: 640}
_CONVNEXT = {"t": "tiny", "s": "small", "b": "base"}
_CONVNEXT_NOTE = "ImageNet-1k ConvNeXt (the 22k-pretrained base is the named option `in22k`)"
_VIT = {"b": "google/vit-base-patch16-384", "l": "google/vit-large-patch16-384"}
_VIT_NOTE = ("ImageNet-21k + 1k ViT at 384 px, in transformers' layout; SegViT's paper starts from the same "
             "weights as SETR's timm/jx files (`jx_vit_*_p16_384`)")
_VIT_SMALL = {"t": "timm/vit_tiny_patch16_384.augreg_in21k_ft_in1k",
              "s": "timm/vit_small_patch16_384.augreg_in21k_ft_in1k"}
_CLIP = {"san-vit-b16": "openai/clip-vit-base-patch16", "san-vit-l14": "openai/clip-vit-large-patch14-336"}

# named alternatives: `pretrained="in22k"` on a variant that lists it
NAMED = {("convnext-b", "in22k"): Published("facebook/convnext-base-224-22k", "backbone", "ImageNet-22k ConvNeXt-B"),
         ("adapt-convnext-b", "in22k"): Published("facebook/convnext-base-224-22k", "backbone", "ImageNet-22k ConvNeXt-B"),
         ("segdeformer-convnext-b", "in22k"): Published("facebook/convnext-base-224-22k", "backbone",
                                                        "ImageNet-22k ConvNeXt-B")}


def _segformer_choices(b: int) -> list[Published]:
    ade = _SEGFORMER_ADE[b]
    return [
        Published(f"nvidia/segformer-b{b}-finetuned-ade-{ade}-{ade}", "model",
                  f"Segformer-B{b} fine-tuned on ADE20K at {ade} px (the Segformer paper's model)", 150, "ade20k"),
        Published(f"nvidia/segformer-b{b}-finetuned-cityscapes-1024-1024", "model",
                  f"Segformer-B{b} fine-tuned on Cityscapes at 1024 px (the Segformer paper's model)", 19, "cityscapes"),
        Published(f"nvidia/mit-b{b}", "backbone", _MIT),
    ]


def choices(name: str) -> list[Published]:
    """The default weights of a variant, in order of preference (a whole model first, where its
    class count matches); [] for a variant with no published weights."""
    if m := re.fullmatch(r"segformer-b(\d)", name):
        return _segformer_choices(int(m[1]))
    if m := re.fullmatch(r"(?:adapt-mit|semask-mit|segdeformer-mit)-b(\d)", name):
        return [Published(f"nvidia/mit-b{m[1]}", "backbone", _MIT)]
    if m := re.fullmatch(r"(?:adapt-|segdeformer-)?convnext-([tsb])", name):
        return [Published(f"facebook/convnext-{_CONVNEXT[m[1]]}-224", "backbone", _CONVNEXT_NOTE)]
    if m := re.fullmatch(r"segvit-(?:shrunk-)?vit-([bl])", name):
        return [Published(_VIT[m[1]], "backbone", _VIT_NOTE)]
    if m := re.fullmatch(r"segvit-vit-([ts])", name):
        return [Published(_VIT_SMALL[m[1]], "backbone", "timm's AugReg ViT at 384 px (the CPU-scale variants; "
                                                          "not in SegViT's paper)")]
    if name in _CLIP:
        return [Published(_CLIP[name], "clip", "OpenAI's CLIP, as SAN starts from (weights and tokenizer)")]
    return []


def default_weights(name: str, num_classes: int, named: str | None = None) -> Published:
    """What `pretrained=True` (or a named option, e.g. "in22k") means for `name` built with
    `num_classes` classes."""
    if named is not None:
        if (name, named) not in NAMED:
            known = sorted(tag for (n, tag) in NAMED if n == name)
            raise ConfigError(f"{name}: no published weights named {named!r}"
                              + (f"; named ones: {', '.join(known)}" if known else ""))
        return NAMED[(name, named)]
    options = choices(name)
    if not options:
        raise ConfigError(f"{name}: no default published weights; give pretrained=PATH or an ORG/NAME hub id")
    for p in options:
        if p.part != "model" or p.num_classes == num_classes:
            return p
    raise AssertionError("unreachable: every table row ends with a backbone entry")
