"""SAN variants: a frozen CLIP backbone + the SAN head (see heads/san.py for the structure).

`build_san(variant, ...) -> SideAdapterSegmentor` (backbone, head and vocabulary). Without `clip`
the CLIP is random (logit scale set to CLIP's trained 100) and the
class embeddings are placeholders; without `classes`, `num_classes` placeholder names.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from ...errors import ConfigError
from ..backbones.clip import CLIP, clip_config
from ..backbones.clip_backbone import ClipBackbone
from ..heads.san import SANHead
from ..heads.san_side import SideConfig
from ..published import Published
from ..registry import option_names, register_model
from ..meta_arch import SideAdapterSegmentor
from ..vocabulary import check_names

SAN_VARIANTS = {
    # CLIP config, taps (block counts: ln_pre, then the fusion blocks), CLIP input scale, OpenAI's CLIP
    "san-vit-b16": dict(clip="vit-b16", taps=(0, 3, 6, 9), clip_scale=0.5, hub="openai/clip-vit-base-patch16"),
    "san-vit-l14": dict(clip="vit-l14-336", taps=(0, 6, 12, 18), clip_scale=0.7,
                        hub="openai/clip-vit-large-patch14-336"),
}


def placeholder_names(num_classes: int) -> list[str]:
    return [f"class {i}" for i in range(num_classes)]


def _tokenizer(vocab, clip_path):
    from ...text.tokenizer import ClipTokenizer

    if vocab is not None:
        return ClipTokenizer.from_path(vocab)
    # a Hugging Face CLIP folder carries its vocabulary
    if clip_path is not None and Path(clip_path).is_dir() and (Path(clip_path) / "merges.txt").is_file():
        return ClipTokenizer.from_hf_folder(clip_path)
    return None


def build_san(variant: str = "san-vit-b16", classes: Sequence[str] | None = None,
              clip: str | os.PathLike | CLIP | None = None, vocab: str | os.PathLike | None = None,
              num_classes: int | None = None, side_width: int = 240, side_heads: int = 6,
              side_depth: int = 8, num_queries: int = 100, clip_act: str | None = None,
              clip_config_override=None, ignore_index: int = 255) -> SideAdapterSegmentor:
    """Build a SAN model: CLIP backbone, SAN head, and the vocabulary of `classes`.

    classes   class names (the vocabulary); None: `num_classes` placeholders ("class 0", ...)
    clip      CLIP weights (a path: OpenAI/open_clip/TorchScript/HF folder/SAN release; or a hub id,
              hf-hub:ORG/NAME, fetched into the Hugging Face cache) or a CLIP
    vocab     CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz or an HF CLIP folder; or a hub id)
    With CLIP weights and a vocabulary the class names are embedded with CLIP's text tower and
    the 14 prompt templates; otherwise with placeholders (nothing can be recognised by name).
    """
    if variant not in SAN_VARIANTS:
        raise ConfigError(f"unknown SAN variant {variant!r}; known: {', '.join(SAN_VARIANTS)}")
    spec = SAN_VARIANTS[variant]
    cfg = clip_config(clip_config_override or spec["clip"])
    if clip_act is not None:
        cfg = replace(cfg, act=clip_act)
    from .. import hf_hub

    clip_spec = None if clip is None or isinstance(clip, CLIP) else clip
    clip_path = None if clip_spec is None else hf_hub.local_path(clip_spec)  # a hub id: fetched
    vocab = None if vocab is None else hf_hub.local_path(vocab)
    if clip_path is not None and clip_act is None:
        from ..weights.clip import clip_act_of

        cfg = replace(cfg, act=clip_act_of(clip_path) or cfg.act)  # as a Hugging Face folder declares
    if isinstance(clip, CLIP):
        clip_model = clip
    else:
        clip_model = CLIP(cfg)
        if not clip_model.logit_scale.is_meta:
            with torch.no_grad():  # a trained CLIP's scale (100), which SAN's recipe relies on
                clip_model.logit_scale.fill_(math.log(100.0))
    backbone = ClipBackbone(clip_model, taps=spec["taps"], clip_scale=spec["clip_scale"])
    if isinstance(clip, CLIP) and not backbone.clip_pretrained.is_meta:
        backbone.clip_pretrained.fill_(True)

    if classes is None:
        names = placeholder_names(num_classes if num_classes is not None else 171)
    else:
        names = check_names(classes, "classes")
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes={num_classes} but {len(names)} class names were given")
    side = SideConfig(width=side_width, heads=side_heads, depth=side_depth, num_queries=num_queries,
                      deep_supervision=(side_depth - 1, side_depth))
    tokenizer = _tokenizer(vocab, clip_path)
    head = SANHead(backbone, len(names), side, ignore_index=ignore_index)
    model = SideAdapterSegmentor(backbone, head, class_names=names, tokenizer=tokenizer)
    if clip_path is not None:  # CLIP's weights through the loader every backbone uses; CLIP only
        from ..weights.load import load_pretrained

        model.load_report = load_pretrained(model, clip_path, parts=("backbone.",))
        model.load_report.source = hf_hub.source_name(clip_spec, model.load_report.source)
    if classes is not None:
        model.vocabulary.refresh()  # embedded by text when CLIP weights and a vocabulary came
    return model


def _register() -> None:
    # `clip` only says where the initial CLIP weights come from: a saved SAN folder carries them
    for name, spec in SAN_VARIANTS.items():
        # pretrained=True: OpenAI's CLIP, weights and tokenizer from one repository, through clip= and vocab=
        clip = Published(spec["hub"], "clip", "OpenAI's CLIP, as SAN starts from (weights and tokenizer)",
                         options=("clip", "vocab"))
        register_model(name, weight_options=("clip",), open_vocabulary=True, options=option_names(build_san),
                       published=[clip], card_tags=("san",))(
            lambda num_classes, _n=name, **kw: build_san(_n, num_classes=num_classes, **kw))


_register()
