"""Training checkpoints: `RUN/checkpoints/iter_XXXXXX/` + `RUN/checkpoints/latest`.

A checkpoint folder is a `save_pretrained` folder plus `train_state.pt` (optimizer, scheduler,
grad scaler, iteration, RNG). It is written under a temporary name and renamed when complete;
only then is `latest` replaced (atomically), so a crash at any point leaves the previous
checkpoint, and `latest` naming it, intact.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..utils.io import atomic_path, staging_dir, write_text_atomic

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_NAME = "train_state.pt"
_NAME_RE = re.compile(r"^iter_(\d+)$")
_TMP_PREFIX = ".tmp-"


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def save_checkpoint(run_dir: str | os.PathLike, iteration: int, model: nn.Module, train_state: dict[str, Any],
                    keep: int | None = None) -> Path:
    """Write the checkpoint of `iteration`, point `latest` at it, prune to the newest `keep`."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(iteration)
    tmp = staging_dir(root, prefix=f"{_TMP_PREFIX}{name}.")
    try:
        model.save_pretrained(tmp)
        # atomic_path fsyncs before the rename below; torch.save writes through Python's file so
        # that a full disk surfaces as the OSError it is (given a path, torch words it as its own)
        with atomic_path(tmp / STATE_NAME) as p, open(p, "wb") as f:
            torch.save(train_state, f)
        final = root / name
        if final.exists():  # left by a run that crashed after this point and was resumed earlier
            stale = root / f"{_TMP_PREFIX}{name}.replaced"
            os.replace(final, stale)
            shutil.rmtree(stale)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_text_atomic(root / LATEST, name + "\n")
    _prune(root, iteration, keep)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The folder named by `RUN/checkpoints/latest`, or None when the run has no checkpoint yet."""
    root = Path(run_dir) / CHECKPOINT_DIR
    latest = root / LATEST
    if not latest.is_file():
        return None
    folder = root / latest.read_text(encoding="utf-8").strip()
    if not (folder / STATE_NAME).is_file():
        raise CheckpointError(f"{latest}: names {folder.name!r}, which is not a complete training checkpoint")
    return folder


def load_train_state(folder: str | os.PathLike) -> dict[str, Any]:
    """`train_state.pt` of a checkpoint folder, read with weights_only=True (no code execution)."""
    path = Path(folder) / STATE_NAME
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as e:  # corrupt or foreign file: torch raises several types
        raise CheckpointError(f"{path}: cannot read training state ({type(e).__name__}: {e})") from None


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete half-written checkpoint folders a killed run left behind."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for p in root.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(p, ignore_errors=True)


def _prune(root: Path, current: int, keep: int | None) -> None:
    """Keep the newest `keep` checkpoints up to `current`; later ones are from an abandoned run."""
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _NAME_RE.match(p.name)) and p.is_dir())
    older = [p for it, p in found if it <= current]
    doomed = [p for it, p in found if it > current]
    if keep is not None:
        doomed += older[:-keep]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not supported on every platform/filesystem.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
