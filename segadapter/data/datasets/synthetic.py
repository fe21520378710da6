"""A built-in dataset drawn on the fly: textured shapes on a textured background.

No files, fully determined by (seed, split, index), so every user and every test gets the same
data. Classes are told apart mostly by colour family and texture, but some shapes get a random
colour (only their outline identifies them), shapes occlude each other, and pixel noise is added,
so a model has to learn shape as well as colour. A small segmentation model learns it in minutes
on a CPU.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from ..base import SegDataset, Transform
from ..layout import check_split

SYNTHETIC_CLASSES = ["background", "disc", "square", "triangle", "stripe"]
SYNTHETIC_PALETTE = [(40, 40, 40), (230, 60, 60), (60, 190, 80), (60, 110, 230), (240, 210, 40)]

# Typical hue (0-1) per shape class; jittered per shape.
_HUES = {1: 0.0, 2: 0.33, 3: 0.62, 4: 0.14}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_DEFAULT_COUNTS = {"train": 500, "val": 100, "test": 100}
_OFF_COLOUR_PROB = 0.15  # shapes with a random colour: only their shape tells the class


def _colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    hue = rng.random() if rng.random() < _OFF_COLOUR_PROB else (_HUES[cls] + rng.normal(0, 0.04)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.95), rng.uniform(0.5, 0.95))
    return np.array(rgb, dtype=np.float32) * 255


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Blotchy texture in [-1, 1]: a coarse random grid upsampled bilinearly."""
    coarse = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    up = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.float32)
    return up / 127.5 - 1.0


def _rotated(yy, xx, cy, cx, angle):
    """Coordinates in a frame centred at (cy, cx) and rotated by `angle`."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def render(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HWC) and its label (uint8 HW, ids into SYNTHETIC_CLASSES)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = min(h, w)
    # Background: desaturated colour with a blotchy texture.
    base = rng.uniform(70, 180, 3).astype(np.float32)
    base = base.mean() + 0.35 * (base - base.mean())
    img = base + 30 * _smooth_noise(rng, h, w, int(rng.integers(3, 8)))[..., None]
    label = np.zeros((h, w), np.uint8)

    # Stripe: a band across the whole image, striped across its length.
    if rng.random() < 0.6:
        u, v = _rotated(yy, xx, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi))
        mask = np.abs(v) < rng.uniform(0.05, 0.09) * side
        period = rng.uniform(5, 9)
        pattern = 0.75 + 0.25 * np.sign(np.sin(2 * np.pi * u / period))
        img[mask] = (_colour(rng, 4) * pattern[..., None])[mask]
        label[mask] = 4

    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, 4))
        r = rng.uniform(0.09, 0.2) * side
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        col = _colour(rng, cls)
        u, v = _rotated(yy, xx, cy, cx, rng.uniform(0, 2 * np.pi))
        if cls == 1:  # disc, shaded towards its rim
            d2 = (u ** 2 + v ** 2) / r ** 2
            mask, shade = d2 < 1, 1.0 - 0.35 * d2
        elif cls == 2:  # square, checkered
            mask = (np.abs(u) < r) & (np.abs(v) < r)
            cell = r / 2
            shade = 0.8 + 0.2 * ((np.floor(u / cell) + np.floor(v / cell)) % 2)
        else:  # triangle (equilateral), with a linear gradient
            R = 1.3 * r
            mask = np.ones((h, w), bool)
            for k in range(3):  # inside all three edges
                a = 2 * np.pi * k / 3
                mask &= (u * np.cos(a) + v * np.sin(a)) < R / 2
            shade = 0.85 + 0.15 * np.clip(u / R, -1, 1)
        img[mask] = (col * shade[..., None])[mask]
        label[mask] = cls

    img += rng.normal(0, rng.uniform(4, 12), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), label


class SyntheticDataset(SegDataset):
    """`num_samples` generated images of `size` (h, w); `root` is ignored (no files)."""

    def __init__(self, root: str | Path | None = None, split: str = "train",
                 transform: Transform | None = None, seed: int = 0,
                 size: int | tuple[int, int] = 128, num_samples: int | None = None) -> None:
        super().__init__(SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, transform, seed)
        self.split = check_split(split)
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.num_samples = _DEFAULT_COUNTS[self.split] if num_samples is None else int(num_samples)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        # Content depends on (seed, split, index) only, never on the augmentation stream.
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x5EED, _SPLIT_CODES[self.split], index])
        image, label = render(rng, *self.size)
        return image, label, f"synthetic/{self.split}/{index:06d}"
