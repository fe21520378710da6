"""Saving and loading models in segadapter's own format: `config.json` + `model.safetensors` (+ a
model card, `README.md`, for the Hub)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..utils.io import as_os_error, atomic_path, write_json_atomic
from .model_card import model_card

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT = "segadapter"
FORMAT_VERSION = 1


def save_pretrained(model, directory: str | os.PathLike, **extra: Any) -> None:
    """Write weights first, config last: a folder with a config.json is always complete."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        try:
            save_file(state, str(tmp), metadata={"format": "pt"})
        except SafetensorError as e:  # e.g. a full disk: its OSError, for atomic_path to name
            raise as_os_error(e) from None
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.config, **extra}
    with atomic_path(directory / CARD_NAME) as tmp:  # the Hub's model card: the folder uploads as it is
        tmp.write_text(model_card(config), encoding="utf-8")
    write_json_atomic(directory / CONFIG_NAME, config)


def is_model_dir(path: Path) -> bool:
    cfg = path / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == FORMAT
    except (ValueError, OSError):
        return False


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A model folder, a training run folder (-> its latest complete checkpoint), or a hub id
    (`hf-hub:ORG/NAME[@REV]`, or `ORG/NAME` that is not a local path) of an uploaded model
    folder (-> its cached snapshot)."""
    from . import hf_hub

    path = hf_hub.local_path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.is_file():
        target = path / "checkpoints" / latest.read_text().strip()
        if (target / CONFIG_NAME).is_file():
            return target
        raise CheckpointError(f"{latest}: names {target.name!r}, which is not a complete checkpoint folder")
    raise CheckpointError(
        f"{path}: not a segadapter model folder (no {CONFIG_NAME}) nor a training run (no checkpoints/latest)"
    )


def read_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_NAME
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a segadapter config (format={config.get('format')!r})")
    for key in ("name", "num_classes"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: missing key {key!r}")
    return config


def read_weights(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: cannot read safetensors weights ({e})") from None


def run_data_config(model_dir: Path) -> dict:
    """The `data` section of the training run a checkpoint folder belongs to (RUN/checkpoints/X),
    which `eval` and `export --int8` read their data from; {} for any other folder or file."""
    config = model_dir.parent.parent / "config.yaml"
    if model_dir.parent.name != "checkpoints" or not config.is_file():
        return {}
    try:
        return (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    except yaml.YAMLError:
        return {}
