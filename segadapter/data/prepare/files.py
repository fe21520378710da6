"""Writing a converter's outputs: each file appears complete or not at all (written under a
temporary name in its folder, then renamed), so a killed run leaves only whole files, and a rerun
can trust every file it finds."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ...utils.io import atomic_path


def save_png(label: np.ndarray, path: Path) -> None:
    """Class ids as a grey PNG: 8-bit for uint8, 16-bit for uint16."""
    _save(Image.fromarray(_checked(label)), path, "PNG")


def save_tiff(label: np.ndarray, path: Path) -> None:
    """uint16 class ids as a 16-bit TIFF (what SAN's and MaskFormer's scripts write for > 255 classes)."""
    if label.dtype != np.uint16:
        raise TypeError(f"16-bit TIFF labels are uint16, got {label.dtype}")
    _save(Image.fromarray(label), path, "TIFF")


def save_jpeg(image: np.ndarray, path: Path) -> None:
    """An RGB image re-encoded as PIL does with no quality argument (quality 75), as MaskFormer's script."""
    _save(Image.fromarray(image), path, "JPEG")


def link_or_copy(src: Path, dst: Path) -> None:
    """Put `src` at `dst` as a hard link (no extra space) or, across file systems, a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def write_lines(lines: list[str], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _checked(label: np.ndarray) -> np.ndarray:
    if label.ndim != 2 or label.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"a label PNG is a 2-D uint8 or uint16 array, got {label.dtype} {label.shape}")
    return label


def _save(picture: Image.Image, path: Path, fmt: str) -> None:
    with atomic_path(path) as tmp:
        picture.save(tmp, format=fmt)  # the temporary name ends in .tmp: say the format
