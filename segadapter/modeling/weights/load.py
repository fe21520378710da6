"""Loading published weights or a segadapter folder into a model: reads the file (`io`), converts
it with the head converter of the model's head class and the backbone converter of its backbone
class (`convert_checkpoint`), decides which of our modules may stay freshly initialised, and
applies the weights strictly (`report`)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...errors import CheckpointError
from .. import model_folder
from .converters import CONVERTERS, HEAD_CONVERTERS, with_reasons
from .io import read_checkpoint
from .report import LoadReport, apply_state_dict, shorten

# Groups of our model that stay fresh when a checkpoint has none of their keys.
HEAD_GROUPS = ("decode_head.", "adapters.")
# Keys of published decode heads: read by the model's head converter, or listed as not used.
FOREIGN_HEADS = ("decode_head.", "auxiliary_head.")


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike,
                    parts: tuple[str, ...] | None = None) -> LoadReport:
    """Load a local file/folder into `model`: our own folder, or a published layout. Every tensor
    of the file is loaded or listed in `report.ignored` with its reason; every model tensor not
    loaded is listed in `report.fresh`. `parts`: load only model keys under these prefixes (e.g.
    `("backbone.",)`: a SAN model's CLIP from a SAN release, its head left as it is)."""
    path = Path(path)
    if (path / "checkpoints" / "latest").is_file():  # a training run: its latest checkpoint
        path = model_folder.resolve_model_dir(path)
    if path.is_dir() and model_folder.is_model_dir(path):
        return apply_state_dict(model, model_folder.read_weights(path / model_folder.WEIGHTS_NAME), source=str(path))
    state = read_checkpoint(path)
    converted, ignored, notes, layout, family, fresh = convert_checkpoint(model, state, path)
    if parts is not None:
        outside = {k: v for k, v in converted.items() if not k.startswith(parts)}
        ignored.update(_sources(outside, state, f"not asked for (only {', '.join(parts)} was loaded)",
                                family, layout))
        converted = {k: v for k, v in converted.items() if k not in outside}
    optional = tuple(g for g in HEAD_GROUPS if not any(k.startswith(g) for k in converted)) + fresh
    try:
        report = apply_state_dict(model, converted, str(path), layout, optional)
    except CheckpointError as e:
        hint = _architecture_hint(path, family, converted, model)
        raise CheckpointError(f"{hint}\n{e}" if hint else str(e)) from None
    report.ignored = dict(sorted(ignored.items()))
    report.notes = list(notes)
    return report


def convert_checkpoint(model, state: dict[str, torch.Tensor], path: str | os.PathLike = "checkpoint"):
    """A published state dict in `model`'s key names, composed of the head converter of the
    model's head class (weights/all_mlp.py, segvit.py, segdeformer.py, san.py) and the backbone
    converter of its backbone class (mit.py, convnext.py, vit.py, clip.py).

    Returns (converted state, {file key: why not used}, notes, layout, backbone converter, model
    keys that may stay fresh)."""
    path = Path(path)
    head = model.decode_head
    head_converter = next((c for c in HEAD_CONVERTERS if c.handles(head)), None)
    head_state, used, head_dropped = head_converter.convert(state) if head_converter else ({}, [], [])
    taken = set(used) | set(head_dropped)
    rest = {k: v for k, v in state.items() if k not in taken}
    family = _converter_for(model)
    layout = family.detect_layout(rest)
    if layout is None:
        raise _no_layout_error(path, rest, family, model)
    ignored = with_reasons(head_dropped)
    # decode heads no head converter of this model reads (in our own layout: only auxiliary heads,
    # which no model here has)
    heads = FOREIGN_HEADS if layout != "segadapter" else ("auxiliary_head.",)
    if heads:
        foreign = [k for k in rest if k.startswith(heads)]
        ignored.update(with_reasons(foreign))
        rest = {k: v for k, v in rest.items() if k not in foreign}
    converted, dropped = family.convert(rest, layout)
    ignored.update(with_reasons(dropped))
    head_type = type(head).__name__
    notes: list[str] = []
    if head_state and model.adapters is not None:
        # published heads were trained without adapters (and with ReLU where ours use GELU): such a
        # model keeps only the encoder
        ignored.update(dict.fromkeys(used, f"a published head, which this model's {head_type} "
                                           "(trained with adapters) does not take"))
        head_state = {}
    elif head_state:
        notes += head_converter.fit(head_state, head)
        converted.update(head_state)
    before = dict(converted)
    removed, fit_notes = family.fit(converted, model)
    notes += fit_notes
    ignored.update(_sources({k: before[k] for k in removed}, state, "not used after fitting the model "
                            "(see the notes)", family, layout))
    if not _head_fits(model, converted):
        skip = {k: v for k, v in converted.items() if k.startswith("decode_head.")}
        ignored.update(_sources(skip, state, f"a decode head of another kind than this model's {head_type}",
                                family, layout))
        converted = {k: v for k, v in converted.items() if k not in skip}
    _check_num_classes(model, converted, path)
    fresh = family.optional_prefixes(layout) + (head_converter.fresh if head_converter else ())
    if head_state and head_converter.layout:
        layout = head_converter.layout  # the file is that head's release (e.g. "segvit")
    return converted, ignored, notes, layout, family, fresh


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


def _converter_for(model):
    backbone = model.backbone
    for family in CONVERTERS:
        if family.handles(backbone):
            return family
    raise CheckpointError(f"no published-weight converter for a {type(backbone).__name__} backbone; "
                          "load a segadapter model folder instead")


def _check_num_classes(model, state: dict, path: Path) -> None:
    """One clear error when the file's head predicts another number of classes (the head says
    which of its tensors tell)."""
    own = {k[len("decode_head."):]: v for k, v in state.items() if k.startswith("decode_head.")}
    got, k = model.decode_head.classes_in(own), model.num_classes
    if got is not None and got != k:
        raise CheckpointError(
            f"{path}: the checkpoint's decode head predicts {got} classes but the model was "
            f"built with num_classes={k}; build it with num_classes={got}, or start from "
            "encoder-only weights to train a new head"
        )


def _architecture_hint(path: Path, family, state: dict, model) -> str:
    """"holds a <family> encoder with widths ..., but <model> has ...": the file's backbone and the
    model's, each described by the backbone converter from tensor shapes."""
    got = family.describe(state)
    want = family.describe({f"backbone.{k}": v for k, v in model.backbone.state_dict().items()})
    if got is None or want is None or got == want:
        return ""
    name = model.name

    def words(widths, depths):
        variant = family.variant_name(widths, depths)
        return f"widths {widths}, depths {depths}" + (f" ({variant})" if variant else "")

    return (f"{path}: holds a {family.family} encoder with {words(*got)}, "
            f"but {name} has {words(*want)}: build the model that matches the checkpoint")


def _no_layout_error(path: Path, state: dict, family, model) -> CheckpointError:
    name = model.name
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
