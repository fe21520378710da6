"""Loading weights from local files into our modules, strictly, with a readable report.

Published layouts (NVlabs, Hugging Face, OpenMMLab, Facebook, timm) are renamed to our keys by
the per-family converters in `checkpoint_mit.py` and `checkpoint_convnext.py`; this file reads
the file or folder, picks the converter from the model's backbone, decides which of our modules
may stay freshly initialised, and applies the weights strictly.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError

# A converter's key function returns our name, DROP (a deliberately unused tensor, e.g. an
# ImageNet classifier), or None (unknown: kept under its own name so the error shows it).
DROP = "<drop>"
# Groups of our model that stay fresh when a checkpoint has none of their keys.
HEAD_GROUPS = ("decode_head.", "adapters.")
# Weight files of a Hugging Face model folder, in order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass
class LoadReport:
    source: str
    layout: str = "segadapter"
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # parameters left freshly initialised
    ignored: list[str] = field(default_factory=list)  # checkpoint tensors deliberately unused

    def __str__(self) -> str:
        # backbone parts are named one level deeper (e.g. backbone.out_norms)
        groups = sorted({".".join(k.split(".")[:2 if k.startswith("backbone.") else 1]) for k in self.fresh})
        msg = f"loaded {len(self.loaded)} tensors from {self.source} ({self.layout} layout)"
        if self.fresh:
            msg += f"; freshly initialised: {len(self.fresh)} tensors in {', '.join(groups)}"
        if self.ignored:
            msg += f"; not used from the checkpoint: {len(self.ignored)} tensors ({_shorten(self.ignored, 3)})"
        return msg


def apply_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                     layout: str = "segadapter", optional_prefixes: tuple[str, ...] = ()) -> LoadReport:
    """Copy `state` into `model`. Every key must exist with the right shape; every model key must
    be provided unless it starts with one of `optional_prefixes` (reported as fresh)."""
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
    )
    missing = sorted(k for k in own if k not in state and not k.startswith(optional_prefixes)
                     and not k.endswith("num_batches_tracked"))
    if unexpected or mismatched or missing:
        lines = [f"{source}: weights ({layout} layout) do not fit {model.config.get('name', type(model).__name__)}"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = items[:10] + ([f"... {len(items) - 10} more"] if len(items) > 10 else [])
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
    fresh = sorted(k for k in own if k not in state)
    return LoadReport(source=source, layout=layout, loaded=sorted(state), fresh=fresh)


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load a local file/folder into `model`: our own folder, or a published layout."""
    from .hub import WEIGHTS_NAME, is_model_dir, read_weights, resolve_model_dir

    path = Path(path)
    if (path / "checkpoints" / "latest").is_file():  # a training run: its latest checkpoint
        path = resolve_model_dir(path)
    if path.is_dir() and is_model_dir(path):
        return apply_state_dict(model, read_weights(path / WEIGHTS_NAME), source=str(path))
    state = read_checkpoint(path)
    family = _converter_for(model)
    layout = family.detect_layout(state)
    if layout is None:
        raise _no_layout_error(path, state, family, model)
    converted, ignored = family.convert(state, layout)
    if layout != "segadapter" and getattr(model, "adapters", None) is not None:
        # Published heads were trained without adapters (and with ReLU, where ours use GELU):
        # an adapter model keeps only the encoder.
        ignored += [k for k in state if k.startswith("decode_head.") and k not in ignored]
        converted = {k: v for k, v in converted.items() if not k.startswith("decode_head.")}
    _check_num_classes(model, converted, path)
    optional = tuple(g for g in HEAD_GROUPS if not any(k.startswith(g) for k in converted))
    optional += family.optional_prefixes(layout)
    try:
        report = apply_state_dict(model, converted, str(path), layout, optional)
    except CheckpointError as e:
        hint = _architecture_hint(path, family, converted, model)
        raise CheckpointError(f"{hint}\n{e}" if hint else str(e)) from None
    report.ignored = sorted(ignored)
    return report


# ---------------------------------------------------------------------------------------------
# Reading files and folders


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat tensor dict of a weights file or a Hugging Face model folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_hf_folder(path)
    return _flatten(_read_file(path), path)


def _read_hf_folder(folder: Path) -> dict[str, torch.Tensor]:
    for name in HF_WEIGHT_FILES:
        f = folder / name
        if not f.is_file():
            continue
        if name.endswith(".index.json"):  # sharded: merge the shards listed in the index
            try:
                shards = sorted(set(json.loads(f.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{f}: not a valid shard index ({e})") from None
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_flatten(_read_file(folder / shard), folder / shard))
            return state
        return _flatten(_read_file(f), f)
    raise CheckpointError(f"{folder}: no model weights in this folder (looked for {', '.join(HF_WEIGHT_FILES)})")


def _read_file(path: Path):
    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"{path}: cannot read safetensors weights ({e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found is None:  # not a pickle / torch file at all
            raise CheckpointError(f"{path}: cannot read weights (not a PyTorch checkpoint)") from None
        # Never unpickle arbitrary objects: tell the user how to strip the file to tensors.
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors ({found[1]}) and cannot be loaded safely "
            "(weights_only=True); re-save only its state dict from a copy you trust, e.g. "
            "torch.save(ckpt['state_dict'], 'weights.pth')"
        ) from None
    except Exception as e:  # truncated zip, ...
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None


def _flatten(obj, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap training containers ({'state_dict': ...}, {'model': ...}) to the tensor dict."""
    for _ in range(3):
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in ("state_dict", "model", "module") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {_shorten(sorted(map(str, obj)), 8)})")
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------------------------------------
# Helpers shared by the converters


def find_prefix(state: dict, anchor: str, prefixes: tuple[str, ...]) -> str | None:
    """The first prefix p with p + anchor in state (a layout's tell-tale key)."""
    return next((p for p in prefixes if p + anchor in state), None)


def first_layout(state: dict, layouts: dict[str, tuple[str, tuple[str, ...]]]) -> str | None:
    """The first layout name whose (anchor, prefixes) tell-tale key is in `state`."""
    return next((name for name, (anchor, prefixes) in layouts.items()
                 if find_prefix(state, anchor, prefixes) is not None), None)


def join_key(head: str, tail: str | None) -> str | None:
    """`head + tail`, or None when the tail did not map."""
    return None if tail is None else head + tail


def same_key(k: str) -> str:
    return k


def remap_keys(state: dict[str, torch.Tensor], key_fn: Callable[[str], str | None]
               ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename every key with `key_fn`; returns (renamed state, dropped keys)."""
    out, dropped = {}, []
    for k, v in state.items():
        new = key_fn(k)
        if new == DROP:
            dropped.append(k)
        else:
            out[new if new is not None else k] = v
    return out, dropped


def rename_module(rest: str, table: dict[str, str]) -> str | None:
    """`rest` = 'module.path.param'; map the module path through `table` (longest match)."""
    module, _, param = rest.rpartition(".")
    for src in sorted(table, key=len, reverse=True):
        if module == src:
            return f"{table[src]}.{param}"
    return None


# ---------------------------------------------------------------------------------------------
# Policy and errors


def _converter_for(model):
    from . import checkpoint_convnext, checkpoint_mit

    backbone = getattr(model, "backbone", None)
    for family in (checkpoint_mit, checkpoint_convnext):
        if family.handles(backbone):
            return family
    raise CheckpointError(f"no published-weight converter for a {type(backbone).__name__} backbone; "
                          "load a segadapter model folder instead")


def _check_num_classes(model, state: dict, path: Path) -> None:
    w = state.get("decode_head.classifier.weight")
    k = getattr(model, "num_classes", None)
    if w is not None and k is not None and w.shape[0] != k:
        raise CheckpointError(
            f"{path}: the checkpoint's decode head predicts {w.shape[0]} classes but the model was "
            f"built with num_classes={k}; build it with num_classes={w.shape[0]}, or start from "
            "encoder-only weights to train a new head"
        )


def _architecture_hint(path: Path, family, state: dict, model) -> str:
    got = family.describe(state)
    spec = getattr(model.backbone, "spec", None)
    if got is None or spec is None:
        return ""
    want = (tuple(spec.widths), tuple(spec.depths))
    if got == want:
        return ""
    name = model.config.get("name", type(model).__name__)

    def words(widths, depths):
        variant = family.variant_name(widths, depths)
        return f"widths {widths}, depths {depths}" + (f" ({variant})" if variant else "")

    return (f"{path}: holds a {family.FAMILY} encoder with {words(*got)}, "
            f"but {name} has {words(*want)}: build the model that matches the checkpoint")


def _no_layout_error(path: Path, state: dict, family, model) -> CheckpointError:
    from . import checkpoint_convnext, checkpoint_mit

    name = model.config.get("name", type(model).__name__)
    for other in (checkpoint_mit, checkpoint_convnext):
        layout = other.detect_layout(state) if other is not family else None
        if layout is not None:
            return CheckpointError(
                f"{path}: this is a {other.FAMILY} checkpoint ({layout} layout), "
                f"but {name} has a {family.FAMILY} backbone"
            )
    return CheckpointError(
        f"{path}: no known {family.FAMILY} layout matches this checkpoint "
        f"(supported: {', '.join(family.LAYOUTS)}); its first keys: {_shorten(sorted(state), 6)}"
    )


def _shorten(items: list[str], n: int) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")
