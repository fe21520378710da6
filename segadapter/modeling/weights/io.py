"""Reading weight files and folders into a flat tensor dict: `.pth` / `.bin` (torch, never
unpickling arbitrary objects), `.safetensors`, `.npz` (JAX/big_vision archives), and Hugging Face
model folders (single or sharded weights)."""
from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from ...errors import CheckpointError
from .report import shorten

# Weight files of a Hugging Face model folder, in order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin", "pytorch_model.bin.index.json")


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
    if path.suffix == ".npz":
        return read_npz(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"{path}: cannot read safetensors weights ({e})") from None
    if _is_torchscript(path):  # OpenAI's CLIP releases: a TorchScript archive, read by torch.jit only
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated but the only reader of these
                warnings.simplefilter("ignore", DeprecationWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as e:  # a damaged archive
            raise CheckpointError(f"{path}: cannot read TorchScript archive ({type(e).__name__}: {e})") from None
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


def _is_torchscript(path: Path) -> bool:
    """A zip archive with TorchScript code (`*/code/` or `*/constants.pkl`) rather than a plain
    torch.save pickle."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


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
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {shorten(sorted(map(str, obj)), 8)})")
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_npz(path: str | Path) -> dict[str, torch.Tensor]:
    """The arrays of a numpy `.npz` archive (e.g. Google's AugReg ViT weights), as tensors."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            state = {}
            for k in archive.files:
                a = archive[k]
                if a.dtype.kind not in "fiu":
                    raise CheckpointError(f"{path}: array {k!r} has unsupported dtype {a.dtype}")
                state[k] = torch.from_numpy(np.ascontiguousarray(a))
    except CheckpointError:
        raise
    except Exception as e:  # not a zip, pickled objects, truncated file
        raise CheckpointError(f"{path}: cannot read numpy archive ({type(e).__name__}: {e})") from None
    if not state:
        raise CheckpointError(f"{path}: numpy archive holds no arrays")
    return state
