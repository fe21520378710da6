"""Loading published weights or a segadapter folder into a model: reads the file (`io`), picks the
backbone family's converter, decides which of our modules may stay freshly initialised, and
applies the weights strictly (`report`)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...errors import CheckpointError
from .. import hub
from .converters import CONVERTERS, HEAD_CONVERTERS, with_reasons
from .io import read_checkpoint
from .report import LoadReport, apply_state_dict, shorten

# Groups of our model that stay fresh when a checkpoint has none of their keys.
HEAD_GROUPS = ("decode_head.", "adapters.")


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load a local file/folder into `model`: our own folder, or a published layout. Every tensor
    of the file is loaded or listed in `report.ignored` with its reason; every model tensor not
    loaded is listed in `report.fresh`."""
    path = Path(path)
    if (path / "checkpoints" / "latest").is_file():  # a training run: its latest checkpoint
        path = hub.resolve_model_dir(path)
    if path.is_dir() and hub.is_model_dir(path):
        return apply_state_dict(model, hub.read_weights(path / hub.WEIGHTS_NAME), source=str(path))
    state = read_checkpoint(path)
    head_state, rest = _convert_published_head(model, state)
    family = _converter_for(model)
    layout = family.detect_layout(rest)
    if layout is None:
        raise _no_layout_error(path, rest, family, model)
    converted, dropped = family.convert(rest, layout)
    ignored = with_reasons(dropped)
    converted.update(head_state)
    before = dict(converted)
    removed, notes = family.fit(converted, model)
    ignored.update(_sources({k: before[k] for k in removed}, state, "not used after fitting the model "
                            "(see the notes)", family, layout))
    head_type = type(model.decode_head).__name__
    if not _head_fits(model, converted):
        skip = {k: v for k, v in converted.items() if k.startswith("decode_head.")}
        ignored.update(_sources(skip, state, f"a decode head of another kind than this model's {head_type}",
                                family, layout))
    elif layout != "segadapter" and not head_state and not _keeps_published_head(model):
        # Published All-MLP heads were trained without adapters (and with ReLU, where ours use
        # GELU): such a model keeps only the encoder.
        skip = {k: v for k, v in converted.items() if k.startswith("decode_head.")}
        ignored.update(_sources(skip, state, f"a published head, which this model's {head_type} "
                                             "(trained with adapters) does not take", family, layout))
    else:
        skip = {}
    converted = {k: v for k, v in converted.items() if k not in skip}
    _check_num_classes(model, converted, path)
    optional = tuple(g for g in HEAD_GROUPS if not any(k.startswith(g) for k in converted))
    optional += family.optional_prefixes(layout)
    try:
        report = apply_state_dict(model, converted, str(path), layout, optional)
    except CheckpointError as e:
        hint = _architecture_hint(path, family, converted, model)
        raise CheckpointError(f"{hint}\n{e}" if hint else str(e)) from None
    report.ignored = dict(sorted(ignored.items()))
    report.notes = list(notes)
    return report


def _convert_published_head(model, state: dict) -> tuple[dict, dict]:
    """(our head tensors from a published head that a head converter reads, the rest of the file)."""
    head = model.decode_head
    for converter in HEAD_CONVERTERS:
        if converter.handles(head):
            converted, used = converter.convert(state)
            used = set(used)
            return converted, {k: v for k, v in state.items() if k not in used}
    return {}, state


def _sources(removed: dict, state: dict, reason: str, family, layout: str) -> dict[str, str]:
    """{file key: reason} for converted tensors that are not loaded after all. A renamed tensor
    (or a view of it) is found by where its data starts, else by its storage (a later chunk of
    one file tensor); one made from several file tensors (fused q/k/v) by converting a copy of the
    file whose every tensor holds its own index."""
    by_start: dict[int, list[str]] = {}
    by_storage: dict[int, list[str]] = {}
    for k, v in state.items():
        if v.numel():
            by_start.setdefault(v.data_ptr(), []).append(k)
            by_storage.setdefault(v.untyped_storage().data_ptr(), []).append(k)
    out, untraced = {}, []
    for k, t in removed.items():
        keys = (by_start.get(t.data_ptr()) or by_storage.get(t.untyped_storage().data_ptr())) if t.numel() else None
        if keys:
            out.update(dict.fromkeys(keys, reason))
        else:
            untraced.append(k)
    if untraced:
        names = list(state)
        tagged = {k: torch.full(v.shape, float(i), dtype=torch.float32) for i, k in enumerate(names)}
        converted, _ = family.convert(tagged, layout)
        for k in untraced:
            if k in converted:
                out.update(dict.fromkeys((names[int(i)] for i in converted[k].unique().tolist()), reason))
            else:
                out[k] = reason  # not traceable to the file: listed under our name
    return out


def _head_fits(model, state: dict) -> bool:
    """The checkpoint's decode-head tensors are all names of the model's own head."""
    own = model.state_dict()
    return all(k in own for k in state if k.startswith("decode_head."))


def _keeps_published_head(model) -> bool:
    return model.decode_head.loads_published_heads and model.adapters is None


def _converter_for(model):
    backbone = getattr(model, "backbone", None)
    for family in CONVERTERS:
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

    return (f"{path}: holds a {family.family} encoder with {words(*got)}, "
            f"but {name} has {words(*want)}: build the model that matches the checkpoint")


def _no_layout_error(path: Path, state: dict, family, model) -> CheckpointError:
    name = model.config.get("name", type(model).__name__)
    for other in CONVERTERS:
        layout = other.detect_layout(state) if other is not family else None
        if layout is not None:
            return CheckpointError(
                f"{path}: this is a {other.family} checkpoint ({layout} layout), "
                f"but {name} has a {family.family} backbone"
            )
    return CheckpointError(
        f"{path}: no known {family.family} layout matches this checkpoint "
        f"(supported: {', '.join(family.layouts)}); its first keys: {shorten(sorted(state), 6)}"
    )
