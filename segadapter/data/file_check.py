"""A dataset's files checked before training starts, where that is cheap: every image and label
header (both readable, the same size), and a spread sample decoded in full (truncation, label
ids past the class count). A run of hours should not end at iteration 3,000 on what a second's
look would have found; what only a full read shows is met, and handled, during the run.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

HEADERS = 50_000  # pairs whose headers are read (all of them up to this many, else a spread sample)
DECODED = 32  # pairs decoded in full


def find_bad_files(dataset, headers: int = HEADERS, decoded: int = DECODED) -> dict[int, str]:
    """{pair index: what is wrong, naming the file} for a dataset of file pairs (`.pairs`);
    empty for generated data."""
    pairs = getattr(dataset, "pairs", None)
    if not pairs:
        return {}
    bad: dict[int, str] = {}
    for i in spread(len(pairs), headers):
        problem = header_problem(*pairs[i])
        if problem:
            bad[i] = problem
    for i in spread(len(pairs), decoded):
        if i not in bad:
            try:
                dataset.load(i)  # the reading the training does: decode, sizes, label mapping and ids
            except DataError as e:
                bad[i] = str(e)
    return bad


def header_problem(image: Path, label: Path) -> str | None:
    sizes = []
    for path in (image, label):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the full read decides
                with Image.open(path) as picture:
                    sizes.append(picture.size)
        except FileNotFoundError:
            return f"{path}: file not found"
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            return f"{path}: not a readable image ({e})"
    (iw, ih), (lw, lh) = sizes
    if (iw, ih) != (lw, lh):
        return f"image {image} is {iw}x{ih} (WxH) but its label {label} is {lw}x{lh}; they must be the same size"
    return None


def spread(n: int, k: int) -> list[int]:
    """`k` indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
