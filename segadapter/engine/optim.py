"""AdamW with the paper's parameter groups.

The model names each parameter's group (`model.param_group(name)`: 'backbone', 'adapter', 'head',
...) and, where its backbone has them, layer ids (`model.layer_id(name)`); the config's lr
multipliers are keyed by group name (`optim.lr_mult`, with `head_lr_mult` / `adapter_lr_mult` as
the defaults for 'head' / 'adapter'). Frozen parameters are left out. No weight decay on
normalisation layers and position-like parameters; optional layer-wise lr decay.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, cfg)`; each group carries its own `lr` and `weight_decay`.
    `cfg.fused` None: PyTorch's fused kernel where every trainable parameter is on a device it
    has one for (the CPU, CUDA); the state dict is the same either way, so runs resume across."""
    groups = param_groups(model, cfg)
    fused = cfg.fused
    if fused is None:
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                    for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                             fused=bool(fused) or None)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """One group per distinct (lr multiplier, decay) pair, in first-seen parameter order.

    Each group also records `lr_mult` and the parameter `names` (for logs and tests; the
    optimizer ignores extra keys, and they round-trip through its state_dict).
    """
    no_decay = _norm_param_ids(model)
    exempt = model.no_weight_decay()
    if cfg.layer_decay is not None and model.layer_id(next(n for n, _ in model.named_parameters())) is None:
        raise ConfigError("optim.layer_decay needs a backbone with layer ids (ConvNeXt); "
                          "set optim.layer_decay=null for this model")
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = group_lr_mult(model.param_group(name), cfg)
        if cfg.layer_decay is not None:
            lid, top = model.layer_id(name)
            mult *= cfg.layer_decay ** (top - lid)
        decay = id(p) not in no_decay and name not in exempt and not any(s in name for s in cfg.no_decay_names)
        key = (mult, decay)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr_mult": mult, "lr": cfg.lr * mult,
                           "weight_decay": cfg.weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def group_lr_mult(group: str, cfg: OptimConfig) -> float:
    """The lr multiplier of a parameter group: `optim.lr_mult[group]`, else the legacy keys."""
    if group in cfg.lr_mult:
        return cfg.lr_mult[group]
    return {"head": cfg.head_lr_mult, "adapter": cfg.adapter_lr_mult}.get(group, 1.0)


def _norm_param_ids(model: nn.Module) -> set[int]:
    # By class name so that custom norms (LayerNorm2d, ...) are covered without a registry.
    return {id(p) for m in model.modules() if "Norm" in type(m).__name__
            for p in m.parameters(recurse=False)}



def lr_by_group(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    """The current lr of each parameter group by name (`backbone`, `adapter`, `head`, ...); a name
    whose groups have different lrs (layer-wise decay) is split by multiplier: `backbone_x0.59`."""
    groups = []
    for i, group in enumerate(optimizer.param_groups):
        names = group.get("names")
        groups.append((model.param_group(names[0]) if names else f"group{i}", group.get("lr_mult", 1.0), group["lr"]))
    lrs: dict[str, set[float]] = {}
    for name, _, lr in groups:
        lrs.setdefault(name, set()).add(lr)
    return {(name if len(lrs[name]) == 1 else f"{name}_x{mult:.3g}"): lr for name, mult, lr in groups}
