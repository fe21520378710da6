"""What `Inferencer` accepts, turned into a flat list of named image sources.

A source is decoded lazily (in a background thread) into uint8 RGB (H, W, 3). Every bad input
raises `DataError` naming it: the path, or "input #i (what it is)" for in-memory images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..data.io import pil_to_rgb, read_image
from ..data.layout import IMAGE_EXTS, list_files
from ..errors import DataError


@dataclass(frozen=True)
class Source:
    name: str  # output stem: the file's stem, or image_0003 for in-memory images
    label: str  # how messages name it
    load: Callable[[], np.ndarray]
    path: Path | None = None


def collect(inputs: Any) -> tuple[list[Source], bool]:
    """(sources, single): `single` when `inputs` is one image (a file path or one in-memory image),
    so the caller returns one result instead of a list."""
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise DataError("no inputs given (an empty list)")
        sources = []
        for item in inputs:
            sources += _expand(item, len(sources))
        return sources, False
    sources = _expand(inputs, 0)
    single = len(sources) == 1 and not (_is_path(inputs) and Path(inputs).is_dir()) and not _is_batch(inputs)
    return sources, single


def _expand(item: Any, index: int) -> list[Source]:
    if _is_path(item):
        path = Path(item)
        if path.is_dir():
            found = list_files(path, IMAGE_EXTS)
            if not found:
                raise DataError(f"{path}: no images found (looked for *{', *'.join(IMAGE_EXTS)})")
            return [_file(p) for p in found]
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        return [_file(path)]
    if isinstance(item, Image.Image):
        label = f"input #{index} (PIL image {item.mode} {item.width}x{item.height})"
        return [Source(f"image_{index:04d}", label, lambda: _pil(item, label))]
    if isinstance(item, np.ndarray):
        return _arrays(item, index, "numpy array", _numpy_hwc)
    if isinstance(item, torch.Tensor):
        return _arrays(item, index, "tensor", _tensor_hwc)
    raise DataError(f"input #{index}: unsupported type {type(item).__name__}; give an image path, a folder, "
                    "a PIL image, a numpy array (H, W[, C]) or a tensor ([B,] C, H, W)")


def _file(path: Path) -> Source:
    return Source(path.stem, str(path), lambda: read_image(path), path)


def _pil(img: Image.Image, label: str) -> np.ndarray:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{label}: cannot decode image ({e})") from None
    return pil_to_rgb(img, label)


def _arrays(x, index: int, kind: str, to_hwc) -> list[Source]:
    """One source per image: 4-D inputs are batches."""
    batch = x.ndim == 4
    items = list(x) if batch else [x]
    out = []
    for j, a in enumerate(items):
        i = index + j
        dtype = str(a.dtype).removeprefix("torch.")
        label = f"input #{index}" + (f"[{j}]" if batch else "") + f" ({kind} {tuple(a.shape)} {dtype})"
        image = to_hwc(a, label)  # validate now, so a bad array fails before any work starts
        out.append(Source(f"image_{i:04d}", label, (lambda im=image: im)))
    return out


def _numpy_hwc(a: np.ndarray, label: str) -> np.ndarray:
    """uint8 (H, W), (H, W, 1|3|4) -> (H, W, 3) RGB (alpha dropped, gray replicated)."""
    if a.dtype != np.uint8:
        raise DataError(f"{label}: expected uint8 RGB values 0-255; convert with "
                        "(x * 255).round().astype(np.uint8) for 0-1 floats")
    return _channels_last_rgb(a, label, "(H, W) or (H, W, 3)")


def _tensor_hwc(t: torch.Tensor, label: str) -> np.ndarray:
    """uint8 0-255 or float 0-1, (H, W) or (C, H, W) with C 1|3|4 -> uint8 (H, W, 3)."""
    t = t.detach().cpu()
    if t.ndim == 3:
        t = t.permute(1, 2, 0)
    if t.dtype == torch.uint8:
        a = t.numpy()
    elif t.is_floating_point():
        if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
            raise DataError(f"{label}: float tensors must hold values in 0-1 "
                            f"(got {float(t.min()):.3g}..{float(t.max()):.3g})")
        a = (t.float() * 255).round().to(torch.uint8).numpy()
    else:
        raise DataError(f"{label}: expected a uint8 (0-255) or float (0-1) tensor")
    return _channels_last_rgb(a, label, "(H, W) or (3, H, W)")


def _channels_last_rgb(a: np.ndarray, label: str, shapes: str) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DataError(f"{label}: expected an image of shape {shapes} (or a batch of them)")
    if min(a.shape[:2]) < 1:
        raise DataError(f"{label}: empty image")
    return np.ascontiguousarray(a[:, :, :3])


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _is_batch(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 4
