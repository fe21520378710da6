"""CLIP weights from local files into our `CLIP` (`backbones/clip.py`), strictly, with a report.

Layouts, told apart by a tell-tale key:
  openai       OpenAI state dicts, OpenAI TorchScript archives (`ViT-B-16.pt`: read with
               torch.jit.load; their `input_resolution`, `context_length`, `vocab_size` are
               dropped) and open_clip checkpoints, which use the same names as ours
  huggingface  `CLIPModel` (`vision_model.*`, `text_model.*`, separate q/k/v projections, Linear
               projections stored transposed), a folder or a weights file
  san          the official SAN release (detectron2 `{'model': ...}`): CLIP split into
               `clip_visual_extractor.*` (blocks 1-9), `clip_rec_head.*` (blocks 10-12, ln_post,
               proj) and `ov_classifier.*` (the text tower); the SAN head is read by
               weights/san.py
The CLIP backbone converter (`CONVERTER`, keyed by `ClipBackbone`) gives `backbone.clip.*` and
sets `backbone.clip_pretrained` (the text tower is now trained): SAN models load CLIP through
`load_pretrained` like every other backbone. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ...errors import CheckpointError
from ..backbones.clip import CLIP_CONFIGS, ClipConfig, ClipTextConfig, ClipVisionConfig
from ..backbones.clip_backbone import ClipBackbone
from .converters import WeightConverter, register_converter

# tensors that are not weights: TorchScript attributes, cached masks and position ids
_NOT_WEIGHTS = re.compile(r"(^|\.)(input_resolution|context_length|vocab_size|attn_mask|position_ids)$")

LAYOUTS = {  # layout -> tell-tale key
    "openai": "visual.conv1.weight",
    "huggingface": "vision_model.embeddings.patch_embedding.weight",
    "san": "clip_visual_extractor.conv1.weight",
}
# the SAN release's training criterion buffer, preprocessing constants, and its head (read by
# weights/san.py before this converter)
_SAN_NOT_CLIP = re.compile(r"^(criterion\.|pixel_mean$|pixel_std$|side_adapter_network\.|ov_classifier\.bg_embed$)")
_HF_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}


# ---------------------------------------------------------------------------------------------
# Reading


def detect_layout(state: dict) -> str | None:
    return next((name for name, key in LAYOUTS.items() if key in state), None)


# ---------------------------------------------------------------------------------------------
# Converting to our names


def _from_hf(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    towers = {"vision_model.": "visual.transformer.resblocks.", "text_model.": "transformer.resblocks."}
    for k, v in state.items():
        if _NOT_WEIGHTS.search(k):
            ignored.append(k)
            continue
        new = None
        if m := re.fullmatch(r"(vision_model\.|text_model\.)encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", k):
            block = towers[m[1]] + m[2] + "."
            if q := re.fullmatch(r"self_attn\.([qkv])_proj", m[3]):
                qkv.setdefault(f"{block}attn.in_proj_{m[4]}", {})[q[1]] = v
                continue
            if m[3] in _HF_BLOCK:
                new = f"{block}{_HF_BLOCK[m[3]]}.{m[4]}"
        else:
            new = {
                "vision_model.embeddings.class_embedding": "visual.class_embedding",
                "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
                "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
                "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                "text_model.embeddings.position_embedding.weight": "positional_embedding",
                "logit_scale": "logit_scale",
            }.get(k)
            if m := re.fullmatch(r"vision_model\.(pre_layrnorm|post_layernorm)\.(weight|bias)", k):
                new = f"visual.{'ln_pre' if m[1] == 'pre_layrnorm' else 'ln_post'}.{m[2]}"
            elif m := re.fullmatch(r"text_model\.final_layer_norm\.(weight|bias)", k):
                new = f"ln_final.{m[1]}"
            elif k in ("visual_projection.weight", "text_projection.weight"):  # Linear: (out, in)
                new, v = ("visual.proj" if k.startswith("visual") else "text_projection"), v.t()
        out[new if new is not None else k] = v  # unknown keys keep their name: the error shows them
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"incomplete q/k/v projections for {key} (found {sorted(parts)})")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, ignored


def _from_san(state: dict[str, torch.Tensor], split: int | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """CLIP tensors of an official SAN checkpoint (its head read elsewhere: weights/san.py)."""
    if split is None:  # blocks in the feature extractor = index of the first recognition block
        split = 1 + max((int(m[1]) for k in state
                         if (m := re.match(r"clip_visual_extractor\.resblocks\.(\d+)\.", k))), default=-1)
    out, ignored = {}, []
    for k, v in state.items():
        if _NOT_WEIGHTS.search(k):
            ignored.append(k)
        elif m := re.fullmatch(r"clip_visual_extractor\.resblocks\.(\d+)\.(.+)", k):
            out[f"visual.transformer.resblocks.{m[1]}.{m[2]}"] = v
        elif m := re.fullmatch(r"clip_visual_extractor\.(conv1\.weight|class_embedding|positional_embedding|ln_pre\..+)", k):
            out[f"visual.{m[1]}"] = v
        elif m := re.fullmatch(r"clip_rec_head\.resblocks\.(\d+)\.(.+)", k):
            out[f"visual.transformer.resblocks.{int(m[1]) + split}.{m[2]}"] = v
        elif m := re.fullmatch(r"clip_rec_head\.(ln_post\..+|proj)", k):
            out[f"visual.{m[1]}"] = v
        elif (m := re.fullmatch(r"ov_classifier\.(.+)", k)) and m[1] != "bg_embed":
            out[m[1]] = v
        elif _SAN_NOT_CLIP.match(k):
            ignored.append(k)
        else:
            out[k] = v  # unknown: kept under its own name so the strict check names it
    return out, ignored


def convert(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(our CLIP state dict, keys deliberately not used)."""
    if layout == "openai":
        ignored = [k for k in state if _NOT_WEIGHTS.search(k)]
        return {k: v for k, v in state.items() if k not in ignored}, ignored
    if layout == "huggingface":
        return _from_hf(state)
    if layout == "san":
        return _from_san(state)
    raise ValueError(f"unknown CLIP layout {layout!r}")


# ---------------------------------------------------------------------------------------------
# Config from shapes, strict loading


def _count(state: dict, prefix: str) -> int:
    return 1 + max((int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))), default=-1)


def infer_config(state: dict[str, torch.Tensor], act: str = "quick_gelu") -> ClipConfig:
    """The ClipConfig of a state dict in our names (heads = width / 64, as all CLIP ViTs)."""
    try:
        conv = state["visual.conv1.weight"]
        vw, patch = conv.shape[0], conv.shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        tw = state["ln_final.weight"].shape[0]
        vision = ClipVisionConfig(grid * patch, patch, vw, _count(state, "visual.transformer.resblocks."), max(1, vw // 64),
                                  state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / vw)
        text = ClipTextConfig(state["positional_embedding"].shape[0], state["token_embedding.weight"].shape[0],
                              tw, max(1, tw // 64), _count(state, "transformer.resblocks."))
        return ClipConfig(state["visual.proj"].shape[1], vision, text, act)
    except KeyError as e:
        raise CheckpointError(f"not a complete CLIP state dict: no {e.args[0]}") from None


# ---------------------------------------------------------------------------------------------
# The backbone converter: CLIP inside a SAN model


def clip_act_of(path: str | os.PathLike) -> str | None:
    """The activation a Hugging Face CLIP folder's config.json declares (None elsewhere)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        act = json.loads(cfg.read_text()).get("vision_config", {}).get("hidden_act")
    except (ValueError, AttributeError):
        return None
    return act if act in ("quick_gelu", "gelu") else None


def _convert_backbone(state: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    clip_state, ignored = convert(state, layout)
    out = {"backbone.clip." + k: v for k, v in clip_state.items()}
    out["backbone.clip_pretrained"] = torch.tensor(True)
    return out, ignored


def _describe_state(state: dict) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """((vision width, text width, embedding), (vision layers, text layers)) of a converted state."""
    clip = {k[len("backbone.clip."):]: v for k, v in state.items() if k.startswith("backbone.clip.")}
    try:
        cfg = infer_config(clip)
    except CheckpointError:
        return None
    return (cfg.vision.width, cfg.text.width, cfg.embed_dim), (cfg.vision.layers, cfg.text.layers)


def _variant_name(widths, depths) -> str | None:
    return next((f"CLIP {name}" for name, c in CLIP_CONFIGS.items()
                 if (c.vision.width, c.text.width, c.embed_dim) == tuple(widths)
                 and (c.vision.layers, c.text.layers) == tuple(depths)), None)


CONVERTER = register_converter(WeightConverter(
    "CLIP",
    {k: (v, ("",)) for k, v in LAYOUTS.items()},
    ClipBackbone,
    convert=_convert_backbone,
    detect=detect_layout,
    describe=_describe_state,
    variant_name=_variant_name,
))
