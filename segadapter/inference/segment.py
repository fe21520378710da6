"""Test-time inference: whole-image or sliding-window, with optional flip / multi-scale averaging.

Works on any device (the model's); an optional autocast dtype runs the network in bf16/fp16 while
every sum, average and resize stays in fp32.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..modeling.meta_arch.base import output_space, takes_output_size

MODES = ("whole", "slide")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch to eval for the block, then give every sub-module back its own previous mode
    (a trainer may keep some layers, e.g. frozen norms, in eval on purpose)."""
    states = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in states:
            m.training = training


def check_inference_args(
    mode: str, crop_size: Sequence[int] | None, stride: Sequence[int] | None, scales: Sequence[float]
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """Validate the user-facing options; returns (crop, stride) as pairs (stride defaults to 2/3 crop)."""
    if mode not in MODES:
        raise ConfigError(f"unknown inference mode {mode!r}; choose one of {', '.join(MODES)}")
    if not scales or any(not s > 0 for s in scales):
        raise ConfigError(f"scales must be positive numbers, got {list(scales)}")
    if mode == "whole":
        return None, None
    if crop_size is None:
        raise ConfigError("slide inference needs a crop size (H W)")
    crop = _pair(crop_size, "crop size")
    # 2/3 of the crop: MMSeg's usual overlap (512 crop, 341 stride)
    step = _pair(stride, "stride") if stride is not None else tuple(max(1, c * 2 // 3) for c in crop)
    if step[0] > crop[0] or step[1] > crop[1]:
        raise ConfigError(f"stride {step} is larger than the crop {crop}: some pixels would get no prediction")
    return crop, step


@torch.inference_mode()
def inference(
    model: nn.Module,
    image: torch.Tensor,
    mode: str = "whole",
    crop_size: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    out_size: Sequence[int] | None = None,
    amp_dtype: torch.dtype | None = None,
    crop_batch_size: int = 4,
    min_size: int = 32,
) -> torch.Tensor:
    """Segment a normalised image `(3, H, W)` or batch `(B, 3, H, W)`.

    Returns fp32 scores `(B, K, h, w)` (no batch dim for a 3-D input) at `out_size`, default the
    input's size. One pass (no flip, scales == (1.0,)) gives the head's output (logits, or a mask
    head's probabilities: its `output_space`); sliding windows average that output, and flip /
    multi-scale passes are averaged the way the family's official code does (`OutputSpace.for_tta`:
    mmseg the softmax of each pass, detectron2 the outputs themselves). Either way `argmax(1)` is
    the prediction; `output_space(model).probabilities(out, tta)` gives probabilities.

    In whole mode an input side shorter than `min_size` is zero-padded (the mean colour) up to it:
    every backbone here downsamples 32x and fails on smaller images.
    """
    crop, step = check_inference_args(mode, crop_size, stride, scales)
    single = image.dim() == 3
    x = (image[None] if single else image).to(device_of(model, image.device), torch.float32)
    h, w = x.shape[-2:]
    size = (int(out_size[0]), int(out_size[1])) if out_size is not None else (h, w)
    tta = is_tta(flip, scales)
    space = output_space(model)
    at_output = size if takes_output_size(model) else None

    total = None
    passes = 0
    with eval_mode(model):
        for scale in scales:
            # keep the aspect ratio, like MMSeg's keep_ratio resize
            xs = x if scale == 1.0 else _resize(x, (max(1, round(h * scale)), max(1, round(w * scale))))
            for flipped in (False, True) if flip else (False,):
                inp = xs.flip(-1) if flipped else xs
                if mode == "whole":
                    logits = _whole(model, inp, amp_dtype, min_size, at_output)
                else:
                    logits = _slide(model, inp, crop, step, amp_dtype, crop_batch_size)
                if flipped:
                    logits = logits.flip(-1)
                scores = _resize(logits, size)
                if tta:
                    scores = space.for_tta(scores)
                total = scores if total is None else total + scores
                passes += 1
    out = total / passes if passes > 1 else total
    return out[0] if single else out


def is_tta(flip: bool, scales: Sequence[float]) -> bool:
    """Whether the options ask for more than one test-time pass (or a rescaled one)."""
    return flip or len(scales) > 1 or float(scales[0]) != 1.0


def _whole(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None, min_size: int,
           out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Raw model scores (any resolution; at `out_size` for a head that predicts there itself); a
    too-small input is padded and the padding cut off."""
    h, w = x.shape[-2:]
    ph, pw = max(min_size - h, 0), max(min_size - w, 0)
    if not (ph or pw):
        return _forward(model, x, amp_dtype, out_size)
    logits = _forward(model, F.pad(x, (0, pw, 0, ph)), amp_dtype)
    return _resize(logits, (h + ph, w + pw))[:, :, :h, :w]


def _slide(
    model: nn.Module,
    x: torch.Tensor,
    crop: tuple[int, int],
    step: tuple[int, int],
    amp_dtype: torch.dtype | None,
    crop_batch_size: int,
) -> torch.Tensor:
    """Average the logits of overlapping crops; returns logits at x's size."""
    b, _, h, w = x.shape
    ch, cw = crop
    # pad bottom/right so every window is a full crop (equal shapes can be batched); zero is the
    # mean colour after normalisation
    x = F.pad(x, (0, max(cw - w, 0), 0, max(ch - h, 0)))
    hp, wp = x.shape[-2:]
    windows = [(y, z) for y in _starts(hp, ch, step[0]) for z in _starts(wp, cw, step[1])]
    summed = None
    count = x.new_zeros(1, 1, hp, wp)
    for i in range(0, len(windows), max(1, crop_batch_size)):
        chunk = windows[i : i + crop_batch_size]
        crops = torch.cat([x[:, :, y : y + ch, z : z + cw] for y, z in chunk])
        out = _resize(_forward(model, crops, amp_dtype), (ch, cw))
        if summed is None:
            summed = x.new_zeros(b, out.shape[1], hp, wp)
        for j, (y, z) in enumerate(chunk):
            summed[:, :, y : y + ch, z : z + cw] += out[j * b : (j + 1) * b]
            count[:, :, y : y + ch, z : z + cw] += 1
    return (summed / count)[:, :, :h, :w]


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering [0, size): regular steps, the last one flush with the edge."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [min(i * stride, size - crop) for i in range(n)]


def _forward(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None,
             out_size: tuple[int, int] | None = None) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        out = model(x) if out_size is None else model(x, out_size=out_size)
    if isinstance(out, dict):  # a model left in training mode, or a wrapper returning the dict
        out = out["logits"]
    return out.float()


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def device_of(model: nn.Module, default: torch.device) -> torch.device:
    """Where the model's tensors are (`default` for one without any)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return default


def _pair(v: Sequence[int] | int, what: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or any(int(p) < 1 for p in pair):
        raise ConfigError(f"{what} must be two positive integers (H W), got {v}")
    return int(pair[0]), int(pair[1])
