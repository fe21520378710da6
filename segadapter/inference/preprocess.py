"""A model's own test-time preprocessing: how images must be resized and normalised, how inference
runs (whole / sliding window), and what the classes are called and coloured.

The record travels in the model folder's `config.json` under "preprocessing" (the role of Hugging
Face's preprocessor config and MMSegmentation's test pipeline). A training run writes it from its
config, so `predict`, `eval`, `export` and `Inferencer` feed a model the way it was validated.
Folders written before the record existed load with the old behaviour, said once per folder.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..data.transforms import (IMAGENET_MEAN, IMAGENET_STD, Compose, Normalize, ToTensor, rescale_size,
                               resize_image)
from ..errors import ConfigError
from ..runtime.wrappers import bare_model
from .segment import MODES

KEY = "preprocessing"  # the config.json key
VERSION = 1


class LegacyPreprocessingWarning(UserWarning):
    """A model folder without a preprocessing record (written before segadapter kept one)."""


@dataclass(frozen=True)
class Preprocessing:
    """Test-time pipeline of a model.

    Resize rule (at most one): `scale` (W, H) - with `keep_ratio` the image is scaled to fit inside
    W x H as MMSegmentation's `Resize(scale, keep_ratio=True)` does (long side <= max(W, H), short
    side <= min(W, H)), without it resized to exactly W x H; or `short_side` - the short side
    becomes `short_side`, the long side capped at `max_size` if given. Neither: the image's own
    size. Then `(pixel - mean) / std` on the 0-255 scale, RGB order.

    Inference: `mode` "whole" or "slide" (windows of `crop_size` (h, w) every `stride` (h, w)),
    `flip` averages with the mirrored image. `classes` / `palette` name and colour class ids.
    """

    scale: tuple[int, int] | None = None
    keep_ratio: bool = True
    short_side: int | None = None
    max_size: int | None = None
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    flip: bool = False
    classes: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    # False for the stand-in of a folder without a record (never written out)
    recorded: bool = field(default=True, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("scale", _ints(self.scale, 2, "scale (W H)"))
        set_("crop_size", _ints(self.crop_size, 2, "crop_size (H W)"))
        set_("stride", _ints(self.stride, 2, "stride (H W)"))
        set_("short_side", _ints(self.short_side, None, "short_side"))
        set_("max_size", _ints(self.max_size, None, "max_size"))
        set_("mean", _floats(self.mean, "mean"))
        set_("std", _floats(self.std, "std"))
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"preprocessing std must be positive, got {list(self.std)}")
        if self.scale is not None and self.short_side is not None:
            raise ConfigError("preprocessing: give either scale or short_side, not both")
        if self.max_size is not None and self.short_side is None:
            raise ConfigError("preprocessing: max_size only applies with short_side")
        if self.mode not in MODES:
            raise ConfigError(f"preprocessing mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "slide" and self.crop_size is None:
            raise ConfigError("preprocessing mode 'slide' needs crop_size (H W)")
        if self.mode == "whole" and (self.crop_size is not None or self.stride is not None):
            raise ConfigError("preprocessing crop_size/stride only apply to mode 'slide'")
        if self.classes is not None:
            set_("classes", tuple(str(c) for c in self.classes))
        if self.palette is not None:
            palette = tuple(tuple(int(v) for v in c) for c in self.palette)
            if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
                raise ConfigError("preprocessing palette must be a list of [R, G, B] triples in 0-255")
            set_("palette", palette)

    # ------------------------------------------------------------------ applying it

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) an image of `height` x `width` is resized to before the network."""
        if self.scale is not None:
            if self.keep_ratio:
                return rescale_size(height, width, self.scale)
            return self.scale[1], self.scale[0]
        if self.short_side is not None:
            factor = self.short_side / min(height, width)
            if self.max_size is not None:
                factor = min(factor, self.max_size / max(height, width))
            return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))
        return height, width

    def transforms(self) -> Compose:
        """The dataset pipeline: `(image uint8 HWC, label) -> (float32 (3, h, w), label untouched)`;
        labels stay at full resolution, so metrics are computed there (as `eval` always did)."""
        return Compose([_ResizeStep(self), Normalize(self.mean, self.std), ToTensor()])

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB (H, W, 3) -> normalised float32 tensor (3, h, w) at the resized size."""
        return self.transforms()(image)[0]

    def inference_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `segadapter.evaluation.inference` this record fixes."""
        return {"mode": self.mode, "crop_size": self.crop_size, "stride": self.stride, "flip": self.flip}

    def replace(self, **changes: Any) -> "Preprocessing":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ reading and writing

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in config.json."""
        if self.scale is not None:
            resize = {"scale": list(self.scale), "keep_ratio": self.keep_ratio}
        elif self.short_side is not None:
            resize = {"short_side": self.short_side, "max_size": self.max_size}
        else:
            resize = None
        return {
            "version": VERSION,
            "resize": resize,
            "normalize": {"mean": list(self.mean), "std": list(self.std)},
            "inference": {"mode": self.mode, "crop_size": _list(self.crop_size), "stride": _list(self.stride),
                          "flip": self.flip},
            "classes": None if self.classes is None else list(self.classes),
            "palette": None if self.palette is None else [list(c) for c in self.palette],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "preprocessing") -> "Preprocessing":
        """Inverse of `to_dict`; ConfigError naming `source` and the key on anything unexpected."""
        where = f"{source}: preprocessing"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
        version = raw.get("version", VERSION)
        if not isinstance(version, int) or version > VERSION:
            raise ConfigError(f"{where} has version {version!r}; this segadapter reads up to {VERSION} "
                              "(upgrade segadapter)")
        _known(raw, {"version", "resize", "normalize", "inference", "classes", "palette"}, where)
        kwargs: dict[str, Any] = {}
        resize = raw.get("resize")
        if resize is not None:
            _known(resize, {"scale", "keep_ratio", "short_side", "max_size"}, f"{where}.resize")
            kwargs.update({k: resize[k] for k in ("scale", "keep_ratio", "short_side", "max_size") if k in resize})
        norm = raw.get("normalize") or {}
        _known(norm, {"mean", "std"}, f"{where}.normalize")
        kwargs.update({k: norm[k] for k in ("mean", "std") if k in norm})
        inf = raw.get("inference") or {}
        _known(inf, {"mode", "crop_size", "stride", "flip"}, f"{where}.inference")
        kwargs.update({k: inf[k] for k in ("mode", "crop_size", "stride", "flip") if k in inf})
        kwargs.update({k: raw[k] for k in ("classes", "palette") if raw.get(k) is not None})
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def from_train_config(cls, cfg, classes: Sequence[str] | None = None,
                          palette: Sequence[Sequence[int]] | None = None) -> "Preprocessing":
        """The test pipeline of a training `Config`: the validation pipeline's resize (data.scale,
        keep ratio) and normalisation (data.transform_options mean/std), the `eval` section's mode."""
        norm = {k: cfg.data.transform_options[k] for k in ("mean", "std") if k in cfg.data.transform_options}
        return cls(scale=cfg.data.scale, keep_ratio=True, **norm, mode=cfg.eval.mode,
                   crop_size=cfg.eval.crop_size if cfg.eval.mode == "slide" else None,
                   stride=cfg.eval.stride if cfg.eval.mode == "slide" else None, flip=cfg.eval.flip,
                   classes=classes, palette=palette)


_warned: set[str] = set()


def preprocessing_of(model_or_config: Any, source: str | None = None) -> Preprocessing:
    """The record of a model (or of its `config` dict).

    A config without one gives today's defaults (own size, ImageNet mean/std, whole image) with
    `recorded=False`, filled with the top-level classes/palette if present and overridden by the
    model's `default_preprocessing` attribute (Preprocessing keyword arguments) if it has one. When `source` (the
    folder) is given, that is said once per folder with a `LegacyPreprocessingWarning`.
    """
    model = None if isinstance(model_or_config, Mapping) else bare_model(model_or_config)
    config = model_or_config if model is None else model.config
    raw = config.get(KEY)
    if raw is not None:
        pre = Preprocessing.from_dict(raw, source or "model config")
        fill = {k: config[k] for k in ("classes", "palette") if getattr(pre, k) is None and config.get(k) is not None}
        return pre.replace(**fill) if fill else pre
    if source is not None and str(source) not in _warned:
        _warned.add(str(source))
        where = ("its metadata has no preprocessing record (exported from a model without one)"
                 if str(source).lower().endswith(".onnx") else
                 "config.json has no preprocessing record (a folder from before segadapter kept one, or saved "
                 "without preprocessing=...)")
        warnings.warn(LegacyPreprocessingWarning(
            f"{source}: {where}, so it runs as before: images at their own size (eval: "
            "the training run's data.scale), ImageNet mean/std, whole image; --scale W H resizes"), stacklevel=2)
    # a model class may name its own defaults (e.g. CLIP's mean/std) for instances without a record
    own = None if model is None else model.default_preprocessing
    defaults = dict(own or {})
    try:
        return Preprocessing(**{"classes": config.get("classes"), "palette": config.get("palette"), **defaults},
                             recorded=False)
    except ConfigError as e:
        raise ConfigError(f"{source or 'model config'}: {e}") from None


class _ResizeStep:
    """A `Compose` step resizing the image by the record's rule; the label is left alone."""

    def __init__(self, pre: Preprocessing):
        self.pre = pre

    def __call__(self, image: np.ndarray, label, rng):
        return resize_image(image, self.pre.resized_size(*image.shape[:2])), label


def _ints(value: Any, n: int | None, what: str):
    if value is None:
        return None
    items = [value] if n is None else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or (n is not None and len(items) != n):
        raise ConfigError(f"preprocessing {what} must be {n or 1} positive integer(s), got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or int(v) != v or v < 1:
            raise ConfigError(f"preprocessing {what} must be {n or 1} positive integer(s), got {value!r}")
        out.append(int(v))
    return out[0] if n is None else tuple(out)


def _floats(value: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise ConfigError(f"preprocessing {what} must be 3 numbers (R G B), got {value!r}")
    return out


def _list(pair):
    return None if pair is None else list(pair)


def _known(raw: Any, keys: set[str], where: str) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
