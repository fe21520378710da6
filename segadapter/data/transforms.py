"""MMSegmentation-style augmentation on numpy arrays (image uint8 HWC RGB, label uint8 HW; uint16
for datasets of more than 255 classes, whose ignore index 65535 the pipeline is then given).

Every random step draws from an explicit `np.random.Generator` passed in by the caller, never from
global state. The datasets pass a generator derived from (seed, epoch, index) (see `seeding.py`),
which is what makes a DataLoader with any number of workers produce identical batches per seed.

A pipeline is called as `transform(image, label, rng=None)` and returns
`(image float32 tensor (3, H, W), label int64 tensor (H, W) or None)`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IGNORE_INDEX = 255

Label = Optional[np.ndarray]  # None when transforming an image alone (prediction)
Rng = np.random.Generator
Pair = tuple[np.ndarray, Label]
Step = Callable[[np.ndarray, Label, Rng], Pair]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio size (h, w) that fits `scale` (long edge <= max(scale), short <= min(scale))."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (h, w)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize to (h, w): class ids must never be blended."""
    if label.shape == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


class RandomResize:
    """Resize by a random ratio of `scale` (W, H), keeping the aspect ratio.

    With `scale=None` the ratio is applied to the image's own size.
    """

    def __init__(self, scale: tuple[int, int] | None, ratio_range: tuple[float, float] = (0.5, 2.0)):
        self.scale, self.ratio_range = scale, ratio_range

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        ratio = rng.uniform(*self.ratio_range)
        h, w = image.shape[:2]
        if self.scale is None:
            size = (max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5)))
        else:
            size = rescale_size(h, w, (int(self.scale[0] * ratio), int(self.scale[1] * ratio)))
        return resize_image(image, size), (None if label is None else resize_label(label, size))


class Resize:
    """Deterministic keep-ratio resize to fit `scale` (W, H); the label only if `resize_label`."""

    def __init__(self, scale: tuple[int, int], resize_label: bool = True):
        self.scale, self.resize_label = scale, resize_label

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        size = rescale_size(*image.shape[:2], self.scale)
        if label is not None and self.resize_label:
            label = resize_label(label, size)
        return resize_image(image, size), label


class RandomCrop:
    """Random crop of `crop_size` (h, w); retry until no class covers >= cat_max_ratio of it.

    Ignored pixels do not count, and a crop with a single class always retries. After
    `max_retries` retries the last crop is kept (so it never loops forever).
    """

    def __init__(self, crop_size: tuple[int, int], cat_max_ratio: float = 0.75,
                 ignore_index: int = IGNORE_INDEX, max_retries: int = 10):
        self.crop_size, self.cat_max_ratio = _pair(crop_size), cat_max_ratio
        self.ignore_index, self.max_retries = ignore_index, max_retries

    def _box(self, h: int, w: int, rng: np.random.Generator) -> tuple[slice, slice]:
        ch, cw = self.crop_size
        y = int(rng.integers(0, max(h - ch, 0) + 1))
        x = int(rng.integers(0, max(w - cw, 0) + 1))
        return slice(y, y + ch), slice(x, x + cw)

    def _balanced(self, crop: np.ndarray) -> bool:
        counts = np.bincount(crop.ravel(), minlength=256)
        if self.ignore_index < len(counts):  # uint16 labels: 65535 is only counted where present
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        h, w = image.shape[:2]
        box = self._box(h, w, rng)
        if label is not None and self.cat_max_ratio < 1.0:
            for _ in range(self.max_retries):
                if self._balanced(label[box]):
                    break
                box = self._box(h, w, rng)
        return image[box], (None if label is None else label[box])


class RandomFlip:
    """Horizontal flip with probability `prob`."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        if rng.random() < self.prob:
            image = image[:, ::-1]
            label = None if label is None else label[:, ::-1]
        return image, label


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


class PhotoMetricDistortion:
    """Brightness, contrast, saturation and hue jitter, each applied with probability 0.5.

    Same recipe as MMSegmentation: contrast goes either before or after the HSV steps (coin
    flip); hue moves by up to `hue_delta` in OpenCV's 0-180 hue units (2 degrees each). Each step
    rounds back to uint8, as there.
    """

    def __init__(self, brightness_delta: int = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18):
        self.brightness_delta = brightness_delta
        self.contrast_range, self.saturation_range = contrast_range, saturation_range
        self.hue_delta = hue_delta

    def _contrast(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            img = _to_uint8(img.astype(np.float32) * rng.uniform(*self.contrast_range))
        return img

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        img = image
        if rng.integers(2):
            img = _to_uint8(img.astype(np.float32) + rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = bool(rng.integers(2))
        if contrast_first:
            img = self._contrast(img, rng)
        if rng.integers(2):
            hsv = np.array(Image.fromarray(img).convert("HSV"))
            hsv[..., 1] = _to_uint8(hsv[..., 1].astype(np.float32) * rng.uniform(*self.saturation_range))
            img = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
        if rng.integers(2):
            # PIL hue spans 0-255 for 360 degrees; OpenCV's unit is 2 degrees.
            shift = int(round(int(rng.integers(-self.hue_delta, self.hue_delta)) * 256 / 180))
            hsv = np.array(Image.fromarray(img).convert("HSV"))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
            img = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
        if not contrast_first:
            img = self._contrast(img, rng)
        return img, label


class Normalize:
    """(x - mean) / std per RGB channel on the 0-255 scale; returns float32."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        out = image.astype(np.float32)  # a copy: in place from here, half the time of temporaries
        out -= self.mean
        out /= self.std
        return out, label


class Pad:
    """Pad bottom/right up to `size` (h, w): image with `pad_val`, label with `seg_pad_val`.

    Runs after Normalize (as in MMSegmentation), so image padding 0 is the mean colour.
    """

    def __init__(self, size: tuple[int, int], pad_val: float = 0, seg_pad_val: int = IGNORE_INDEX):
        self.size, self.pad_val, self.seg_pad_val = _pair(size), pad_val, seg_pad_val

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        h, w = image.shape[:2]
        ph, pw = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=self.pad_val)
            if label is not None:
                label = np.pad(label, ((0, ph), (0, pw)), constant_values=self.seg_pad_val)
        return image, label


class ToTensor:
    """HWC image -> float32 (3, H, W) tensor; label -> int64 (H, W) tensor."""

    def __call__(self, image: np.ndarray, label: Label, rng: Rng) -> Pair:
        img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        lbl = None if label is None else torch.from_numpy(label.astype(np.int64))
        return img, lbl


class Compose:
    """Run steps in order. `rng=None` means a fresh unseeded generator (not reproducible)."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)

    def __call__(self, image: np.ndarray, label: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        rng = np.random.default_rng() if rng is None else rng
        for step in self.steps:
            image, label = step(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(s).__name__ for s in self.steps) + ")"


def build_transforms(
    train: bool,
    crop_size: int | tuple[int, int] | None = (512, 512),
    scale: tuple[int, int] | None = None,
    ratio_range: tuple[float, float] | None = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip: bool = True,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
) -> Compose:
    """The standard pipelines. `crop_size` is (h, w); `scale` is (W, H) as in MMSegmentation.

    train: RandomResize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> Normalize -> Pad
           -> ToTensor (with `crop_size=None`, no crop and no pad).
    eval:  [Resize image to fit `scale`, keep ratio] -> Normalize -> ToTensor; the label is left at
           its original resolution so metrics are computed there.
    """
    steps: list[Step] = []
    if train:
        if ratio_range is not None:
            steps.append(RandomResize(scale, ratio_range))
        elif scale is not None:
            steps.append(Resize(scale))
        if crop_size is not None:
            steps.append(RandomCrop(_pair(crop_size), cat_max_ratio, ignore_index))
        if flip:
            steps.append(RandomFlip(0.5))
        if photometric:
            steps.append(PhotoMetricDistortion())
        steps.append(Normalize(mean, std))
        if crop_size is not None:
            steps.append(Pad(_pair(crop_size), 0, ignore_index))
    else:
        if scale is not None:
            steps.append(Resize(scale, resize_label=False))
        steps.append(Normalize(mean, std))
    steps.append(ToTensor())
    return Compose(steps)
