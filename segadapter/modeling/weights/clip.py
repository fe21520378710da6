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
`load_pretrained` like every other backbone. `load_clip` builds a bare CLIP from a file (config
read off the shapes) for parity checks. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ...errors import CheckpointError
from ..backbones.clip import CLIP, CLIP_CONFIGS, ClipConfig, ClipTextConfig, ClipVisionConfig, clip_config
from ..backbones.clip_backbone import ClipBackbone
from .converters import WeightConverter, register_converter, with_reasons
from .io import read_checkpoint

# tensors that are not weights: TorchScript attributes, cached masks and position ids
_NOT_WEIGHTS = re.compile(r"(^|\.)(input_resolution|context_length|vocab_size|attn_mask|position_ids)$")

LAYOUTS = {  # layout -> tell-tale key
    "openai": "visual.conv1.weight",
    "huggingface": "vision_model.embeddings.patch_embedding.weight",
    "san": "clip_visual_extractor.conv1.weight",
}
# the SAN release's training criterion buffer, preprocessing constants, and its head (read by
# weights/san.py before this converter; a bare CLIP, `load_clip`, does not use it)
_SAN_NOT_CLIP = re.compile(r"^(criterion\.|pixel_mean$|pixel_std$|side_adapter_network\.|ov_classifier\.bg_embed$)")
_HF_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}


@dataclass
class ClipLoadReport:
    source: str
    layout: str
    config: ClipConfig
    loaded: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # file tensors not used -> why

    def __str__(self) -> str:
        v = self.config.vision
        msg = (f"loaded {len(self.loaded)} CLIP tensors from {self.source} ({self.layout} layout; "
               f"ViT width {v.width}, {v.layers} layers, patch {v.patch_size}, {v.image_size}px, "
               f"embed {self.config.embed_dim}, {self.config.act})")
        if self.ignored:
            msg += f"; not used: {len(self.ignored)} tensors ({', '.join(list(self.ignored)[:4])}" + \
                   (", ...)" if len(self.ignored) > 4 else ")")
        return msg


# ---------------------------------------------------------------------------------------------
# Reading


def read_clip_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat tensor dict of a CLIP weights file, TorchScript archive or HF folder."""
    return read_checkpoint(path)


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


def _hf_config(path: Path) -> dict:
    """Activation and head counts from a Hugging Face folder's config.json ({} if none)."""
    cfg = path / "config.json" if path.is_dir() else None
    if cfg is None or not cfg.is_file():
        return {}
    try:
        raw = json.loads(cfg.read_text())
    except ValueError:
        return {}
    v, t = raw.get("vision_config", {}), raw.get("text_config", {})
    out = {"act": v.get("hidden_act") if v.get("hidden_act") in ("quick_gelu", "gelu") else None,
           "vision_heads": v.get("num_attention_heads"), "text_heads": t.get("num_attention_heads")}
    return {k: val for k, val in out.items() if val is not None}


def apply_clip_state(model: CLIP, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy `state` (our names) into `model`; every key and shape must match both ways."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in sorted(state.items()) if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"{source}: CLIP weights do not fit the CLIP model"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) +
                             (f", ... {len(items) - 8} more" if len(items) > 8 else ""))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
    return sorted(state)


def load_clip_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """(our-name CLIP state, layout, ignored keys) of a local file or folder."""
    state = read_clip_state(path)
    layout = detect_layout(state)
    if layout is None:
        raise CheckpointError(f"{path}: not a CLIP checkpoint (no {', '.join(LAYOUTS.values())}); "
                              f"first keys: {', '.join(sorted(state)[:6])}")
    converted, ignored = convert(state, layout)
    return converted, layout, ignored


def load_clip(path: str | os.PathLike, config: ClipConfig | str | None = None,
              act: str | None = None) -> tuple[CLIP, ClipLoadReport]:
    """A CLIP with the weights of `path` and its load report. With `config` None the
    architecture is read off the tensor shapes (activation: `act`, the HF folder's config, or
    QuickGELU as OpenAI's weights use)."""
    path = Path(path)
    converted, layout, ignored = load_clip_state(path)
    hf = _hf_config(path)
    act = act or hf.get("act") or (clip_config(config).act if config is not None else "quick_gelu")
    if config is None:
        cfg = infer_config(converted, act)
        if "vision_heads" in hf and "text_heads" in hf:
            cfg = replace(cfg, vision=replace(cfg.vision, heads=hf["vision_heads"]),
                          text=replace(cfg.text, heads=hf["text_heads"]))
    else:
        cfg = replace(clip_config(config), act=act)
    if config is not None:
        got = infer_config(converted, act)
        if _shapes(got) != _shapes(cfg):
            raise CheckpointError(f"{path}: holds a CLIP with {_describe(got)}, but the model wants "
                                  f"{_describe(cfg)}; pick the config that matches the file")
    with torch.device("cpu"):
        model = CLIP(cfg)
    loaded = apply_clip_state(model, converted, str(path))
    return model, ClipLoadReport(str(path), layout, cfg, loaded, dict(sorted(with_reasons(ignored).items())))


def _shapes(cfg: ClipConfig) -> tuple:
    """What the tensor shapes determine (not the head count or activation)."""
    v, t = cfg.vision, cfg.text
    return (cfg.embed_dim, v.image_size, v.patch_size, v.width, v.layers, v.mlp_ratio,
            t.context_length, t.vocab_size, t.width, t.layers)


def _describe(cfg: ClipConfig) -> str:
    v, t = cfg.vision, cfg.text
    return (f"ViT width {v.width} x {v.layers} layers, patch {v.patch_size} at {v.image_size}px, "
            f"text width {t.width} x {t.layers} layers, embed {cfg.embed_dim}")


# ---------------------------------------------------------------------------------------------
# The backbone converter: CLIP inside a SAN model


def clip_act_of(path: str | os.PathLike) -> str | None:
    """The activation a Hugging Face CLIP folder declares (None elsewhere)."""
    return _hf_config(Path(path)).get("act")


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
