"""AdamW with the paper's parameter groups.

lr x `head_lr_mult` for `decode_head.*`, x `adapter_lr_mult` for `adapters.*`; no weight decay on
normalisation layers and position-like parameters; optional layer-wise lr decay for ConvNeXt.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, cfg)`; each group carries its own `lr` and `weight_decay`."""
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas,
                             weight_decay=cfg.weight_decay)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """One group per distinct (lr multiplier, decay) pair, in first-seen parameter order.

    Each group also records `lr_mult` and the parameter `names` (for logs and tests; the
    optimizer ignores extra keys, and they round-trip through its state_dict).
    """
    no_decay = _norm_param_ids(model)
    layer_id = _layer_id_fn(model) if cfg.layer_decay is not None else None
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = _prefix_mult(name, cfg)
        if layer_id is not None:
            lid, top = layer_id(name)
            mult *= cfg.layer_decay ** (top - lid)
        decay = id(p) not in no_decay and not any(s in name for s in cfg.no_decay_names)
        key = (mult, decay)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr_mult": mult, "lr": cfg.lr * mult,
                           "weight_decay": cfg.weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def _prefix_mult(name: str, cfg: OptimConfig) -> float:
    if name.startswith("decode_head."):
        return cfg.head_lr_mult
    if name.startswith("adapters."):
        return cfg.adapter_lr_mult
    return 1.0


def _norm_param_ids(model: nn.Module) -> set[int]:
    # By class name so that custom norms (LayerNorm2d, ...) are covered without a registry.
    return {id(p) for m in model.modules() if "Norm" in type(m).__name__
            for p in m.parameters(recurse=False)}


def _layer_id_fn(model: nn.Module):
    """Map a parameter name to (layer id, top id) for ConvNeXt; lr scale = decay ** (top - id).

    Depth grows with the network: stem 0, stage 0 -> 1, stage 1 (and its downsample) -> 2,
    stage 2 in groups of 3 blocks -> 3, 4, ..., stage 3 (and its downsample) -> the last backbone
    id. Everything outside these (output norms, adapters, head) sits at `top` and keeps its lr.
    ConvNeXt-T gets 6 backbone depths, S/B 12, matching the usual ConvNeXt fine-tuning recipe.
    """
    backbone = getattr(model, "backbone", None)
    if not (hasattr(backbone, "stages") and hasattr(backbone, "downsample_layers")):
        raise ConfigError("optim.layer_decay needs a ConvNeXt backbone (backbone.stages and "
                          "backbone.downsample_layers); set optim.layer_decay=null for this model")
    last = 3 + math.ceil(len(backbone.stages[2]) / 3)
    top = last + 1

    def layer_id(name: str) -> tuple[int, int]:
        parts = name.split(".")
        if parts[0] != "backbone" or len(parts) < 3 or parts[1] not in ("stages", "downsample_layers"):
            return top, top
        stage = int(parts[2])
        if stage == 0:
            return (0 if parts[1] == "downsample_layers" else 1), top
        if stage == 1:
            return 2, top
        if stage == 2:
            return (3 if parts[1] == "downsample_layers" else 3 + int(parts[3]) // 3), top
        return last, top

    return layer_id
