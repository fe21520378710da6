"""Reading images and label maps from disk into plain numpy arrays, with clear errors.

Every failure (missing, unreadable, truncated, wrong kind of file) becomes a `DataError` that names
the file, so a bad sample in a 20k-image dataset is found from the message alone.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

# Modes a class-index label may come in; anything with colour channels is rejected.
_LABEL_MODES = {"L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"}
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _open(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode: `load()` is what surfaces truncation (open() only reads the header)."""
    path = Path(path)
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        # PIL reports truncated / corrupt data as OSError or SyntaxError.
        raise DataError(f"{path}: cannot decode image, the file is truncated or corrupt ({e})") from None
    return img


def _sixteen_to_eight(a: np.ndarray) -> np.ndarray:
    """Map the 0-65535 range onto 0-255 (65535 / 257 = 255 exactly)."""
    a = np.clip(a.astype(np.float64), 0, 65535)
    return np.rint(a / 257.0).astype(np.uint8)


def read_image(path: str | os.PathLike, exif_transpose: bool = False) -> np.ndarray:
    """Read any common image as uint8 RGB, shape (H, W, 3).

    Grayscale is replicated to 3 channels, alpha is dropped, palette images are expanded to their
    colours and 16-bit images are scaled to 8 bits. `exif_transpose` is off by default because
    dataset labels are drawn on the stored pixel grid, not the EXIF-rotated one.
    """
    img = _open(path)
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    return pil_to_rgb(img, path)


def pil_to_rgb(img: Image.Image, name: object = "image") -> np.ndarray:
    """A decoded PIL image as uint8 RGB (H, W, 3), converted as `read_image` describes;
    `name` is what an error message calls the image."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        gray = _sixteen_to_eight(np.asarray(img))
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise DataError(f"{name}: floating-point images (mode F) are not supported; save as 8-bit RGB")
    if mode != "RGB":
        # Covers L, LA, 1, P, PA, RGBA, CMYK, YCbCr, ...: PIL drops alpha and expands palettes.
        img = img.convert("RGBA" if mode in {"P", "PA", "LA"} else "RGB").convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def read_label(path: str | os.PathLike, sixteen_bit: bool = False) -> np.ndarray:
    """Read a class-index label map as uint8, shape (H, W); with `sixteen_bit`, as uint16 (the
    16-bit TIFF / PNG labels of datasets with more than 255 classes, 65535 = ignore).

    Palette ('P') PNGs are read as their indices, not their colours. A colour (RGB) label is an
    error: a per-pixel class-index PNG is expected.
    """
    img = _open(path)
    if sixteen_bit:
        return _wide_label(img, path)
    mode = img.mode
    if mode not in _LABEL_MODES:
        raise DataError(
            f"{path}: label image has mode {mode} ({len(img.getbands())} channels); expected a "
            "single-channel class-index PNG (one class id per pixel, 255 = ignore), not a colour "
            "visualisation. Convert colour labels to class indices first."
        )
    a = np.asarray(img)
    if mode in _SIXTEEN_BIT:
        if a.size and (a.max() > 255 or a.min() < 0):
            bad = np.unique(a[(a > 255) | (a < 0)])[:10].tolist()
            raise DataError(
                f"{path}: 16-bit label has values outside 0-255 (e.g. {bad}); "
                "class ids must fit in 8 bits (255 = ignore)"
            )
    return np.ascontiguousarray(a.astype(np.uint8))


def _wide_label(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """A label of up to 65536 ids as uint16; 8-bit files are widened (their 255 stays 255)."""
    if img.mode not in _LABEL_MODES:
        raise DataError(f"{path}: label image has mode {img.mode} ({len(img.getbands())} channels); expected a "
                        "single-channel 8- or 16-bit class-index image (TIFF or PNG)")
    a = np.asarray(img)
    if a.dtype.kind in "iu" and a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
        raise DataError(f"{path}: label values {int(a.min())}..{int(a.max())} do not fit 16 bits (0-65535)")
    return np.ascontiguousarray(a.astype(np.uint16))
