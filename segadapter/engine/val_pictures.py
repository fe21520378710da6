"""The picture TensorBoard shows at each evaluation: one row per validation image,
image | label overlay | prediction overlay, small enough to browse (PANEL_HEIGHT pixels high)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

PANEL_HEIGHT = 128
GAP = 2  # white pixels between panels and rows


def prediction_grid(net: nn.Module, dataset: Any, count: int, eval_cfg: Any,
                    amp_dtype: torch.dtype | None = None) -> np.ndarray | None:
    """(H, W, 3) uint8 grid for the first `count` items of `dataset` (None when there are none).

    The prediction is made as the evaluation makes it (`eval.mode`, crop and stride, no flip) at
    the label's size; the network's train/eval modes are left as they were.
    """
    from ..inference.segment import eval_mode, inference  # deferred: engine loads inference lazily
    from ..inference.visualize import overlay

    rows = []
    with eval_mode(net):
        for i in range(min(count, len(dataset))):
            image, label, _ = dataset.load(i)
            scores = inference(net, dataset[i]["image"], mode=eval_cfg.mode, crop_size=eval_cfg.crop_size,
                               stride=eval_cfg.stride, out_size=label.shape, amp_dtype=amp_dtype)
            pred = scores.argmax(0).to("cpu", torch.uint8).numpy()
            image, label, pred = (_shrink(image, Image.Resampling.BILINEAR), _shrink(label, Image.Resampling.NEAREST),
                                 _shrink(pred, Image.Resampling.NEAREST))
            rows.append([image, overlay(image, label, dataset.palette), overlay(image, pred, dataset.palette)])
    return _grid(rows) if rows else None


def _shrink(picture: np.ndarray, resample: int) -> np.ndarray:
    h, w = picture.shape[:2]
    size = (max(1, round(w * PANEL_HEIGHT / h)), PANEL_HEIGHT)
    return np.asarray(Image.fromarray(picture).resize(size, resample))


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    widths = [sum(p.shape[1] for p in row) + GAP * (len(row) - 1) for row in rows]
    height = len(rows) * PANEL_HEIGHT + GAP * (len(rows) - 1)
    grid = np.full((height, max(widths), 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        y, x = r * (PANEL_HEIGHT + GAP), 0
        for panel in row:
            grid[y:y + PANEL_HEIGHT, x:x + panel.shape[1]] = panel
            x += panel.shape[1] + GAP
    return grid
