"""Turn label maps into pictures: colourised maps, overlays, and the PNG files `predict` writes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.metainfo import generated_palette
from ..errors import ConfigError
from ..utils.io import atomic_path

Palette = Sequence[Sequence[int]]


def check_opacity(opacity: float, what: str = "opacity") -> float:
    """The overlay colour weight, refused in one ConfigError outside [0, 1]."""
    if not 0.0 <= float(opacity) <= 1.0:
        raise ConfigError(f"{what} must be between 0 and 1, got {opacity}")
    return float(opacity)


def check_png_classes(num_classes: int, who: str) -> None:
    """Class-id PNGs hold ids 0-65534 (8-bit up to 255 classes, 255 = ignore; else 16-bit, 65535 =
    ignore): one ConfigError beyond. `who`: what gives the classes, for the message."""
    if num_classes > WIDE_IGNORE:
        raise ConfigError(f"{who}: {num_classes} class names, but 16-bit class-id PNGs hold ids "
                          f"0-{WIDE_IGNORE - 1} ({WIDE_IGNORE} = ignore); name at most {WIDE_IGNORE}")


def check_palette(palette: Palette, num_classes: int, what: str, who: str = "the model predicts") -> list:
    """`palette`'s first `num_classes` colours as RGB tuples; one ConfigError naming `what` when it
    has fewer colours than classes (`who`: what gives the classes)."""
    if len(palette) < num_classes:
        raise ConfigError(f"{what} has {len(palette)} colours but {who} {num_classes} classes")
    return [tuple(int(v) for v in c) for c in palette[:num_classes]]


def colorize(
    label: np.ndarray, palette: Palette, ignore_index: int = 255, ignore_color: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB; `ignore_index` pixels get `ignore_color`. Beyond
    255 classes (16-bit ids) the ignore index is 65535, not 255."""
    label = np.asarray(label)
    lut = np.zeros((max(256, len(palette), ignore_index + 1 if 0 <= ignore_index < 1 << 16 else 0), 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if 0 <= ignore_index < len(lut):
        lut[ignore_index] = ignore_color
    _check_ids(label, len(palette), ignore_index)
    return np.take(lut, label, axis=0) if label.dtype == np.uint8 else lut[label.astype(np.intp)]


def overlay(
    image: np.ndarray, label: np.ndarray, palette: Palette, opacity: float = 0.5, ignore_index: int = 255
) -> np.ndarray:
    """Blend the colourised label over an RGB uint8 image; ignored pixels show the image alone."""
    check_opacity(opacity)
    image, label = np.asarray(image), np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image size {image.shape[:2]} != label size {label.shape}")
    # in place: each full-size float temporary costs as much as the arithmetic on it
    blend = image.astype(np.float32)
    blend *= 1.0 - opacity
    tint = colorize(label, palette, ignore_index).astype(np.float32)
    tint *= opacity
    blend += tint
    ignored = label == ignore_index
    if ignored.any():
        np.copyto(blend, image, where=ignored[..., None])
    np.rint(blend, out=blend)
    np.clip(blend, 0, 255, out=blend)
    return blend.astype(np.uint8)


def save_prediction(
    out_dir: str | os.PathLike,
    name: str,
    label: np.ndarray,
    image: np.ndarray | None = None,
    palette: Palette | None = None,
    opacity: float = 0.5,
    ignore_index: int = 255,
) -> list[Path]:
    """Write `NAME.png` (class ids, 8-bit grey, ignore stays 255) and, given the image,
    `NAME_overlay.png`. Each file appears complete or not at all. (`segadapter predict` writes
    16-bit PNGs for models of more than 255 classes: `sixteen_bit_picture`.)"""
    label = np.asarray(label)
    _check_ids(label, 255, ignore_index)  # ids must fit one byte besides the ignore value
    # build every picture before writing any, so a bad input never leaves a mismatched pair
    # uint8 2-D -> 8-bit grey "L", uint8 HxWx3 -> "RGB"
    pictures = [Image.fromarray(label.astype(np.uint8))]
    if image is not None:
        if palette is None:
            palette = generated_palette(int(label[label != ignore_index].max(initial=0)) + 1)
        pictures.append(Image.fromarray(overlay(image, label, palette, opacity, ignore_index)))
    written = [Path(out_dir) / n for n in output_names(name)[: len(pictures)]]
    for picture, path in zip(pictures, written):
        _save_png(picture, path)
    return written


WIDE_IGNORE = 65535  # the ignore id of 16-bit class-id maps


def ignore_index_for(num_classes: int) -> int:
    """The ignore id of a class-id map of `num_classes` classes: 255, or 65535 beyond 255 classes."""
    return 255 if num_classes <= 255 else WIDE_IGNORE


def sixteen_bit_picture(label: np.ndarray) -> Image.Image:
    """Class ids 0-65534 (65535 = ignore) as a 16-bit grey PNG picture, as the labels of the
    > 255-class datasets; a model of more than 255 classes writes every file so."""
    _check_ids(label, WIDE_IGNORE, WIDE_IGNORE)
    return Image.fromarray(label.astype(np.uint16))


OVERLAY_FORMATS = {"png": ".png", "jpg": ".jpg"}


def output_names(name: str, overlay_format: str = "png") -> tuple[str, str]:
    """The two file names `save_prediction` (or `predict --overlay-format`) writes for `name`
    (lets callers spot clashes first)."""
    return f"{name}.png", f"{name}_overlay{OVERLAY_FORMATS[overlay_format]}"


def _save_png(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        # the temp name ends in .tmp, so say the format; zlib level 1: a 480x360 overlay encodes
        # ~3x faster than at the default 6 (12 vs 38 ms) for ~6% more bytes
        img.save(tmp, format="PNG", compress_level=1)


def _check_ids(label: np.ndarray, num_colors: int, ignore_index: int) -> None:
    if label.dtype == np.uint8:  # a histogram: much cheaper than masking out the ignored pixels
        counts = np.bincount(label.ravel(), minlength=256)
        if 0 <= ignore_index < 256:
            counts[ignore_index] = 0
        present = np.flatnonzero(counts)
        low, high = (int(present[0]), int(present[-1])) if present.size else (0, -1)
    else:
        ids = label[label != ignore_index]
        low, high = (int(ids.min()), int(ids.max())) if ids.size else (0, -1)
    if low < 0 or high >= num_colors:
        raise ValueError(f"label ids {low}..{high} need {high + 1} colours, have {num_colors}")
