"""Reading an uploaded image safely: size and pixel limits are checked before decoding, and every
failure is a `DataError` with a message meant for the page (the server keeps serving)."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.io import pil_to_rgb
from ..errors import DataError


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20  # per file
    max_pixels: int = 40_000_000  # width x height, checked from the header before decoding
    max_files: int = 16  # per request

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def read_upload(path: str | os.PathLike, limits: Limits, name: str | None = None) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an uploaded file, or DataError naming it (`name`: the user's file name)."""
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise DataError(f"{name}: upload not found on the server; upload it again") from None
    if size > limits.max_bytes:
        raise DataError(f"{name}: file is {_mb(size)}, over the upload limit of {_mb(limits.max_bytes)}")
    if size == 0:
        raise DataError(f"{name}: empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # never decode a bomb
        try:
            with Image.open(path) as img:
                w, h = img.size  # from the header: nothing decoded yet
                if w * h > limits.max_pixels:
                    raise DataError(f"{name}: image is {w} x {h} = {w * h / 1e6:.1f} M pixels, over the limit "
                                    f"of {limits.max_pixels / 1e6:.1f} M pixels")
                img.load()
                return pil_to_rgb(img, name)
        except DataError:
            raise
        except Image.UnidentifiedImageError:
            raise DataError(f"{name}: not an image (or a format this server cannot read)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            # PIL's own guard fires in open(), before our check, for the most extreme headers
            raise DataError(f"{name}: image is too large to decode safely ({e})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise DataError(f"{name}: cannot decode the image, the file is truncated or corrupt ({e})") from None


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"
