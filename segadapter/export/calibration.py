"""What static int8 calibrates on: the very tensors the network sees at run time.

Images of the run's own dataset (or of a folder) go through the model's preprocessing record and
the same inference path `predict` / `eval` take (whole image, or sliding-window crops, flips),
with the fp32 graph as the network; a recorder keeps each input the network is called with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..inference.preprocess import Preprocessing
from ..inference.segment import inference


def calibration_tensors(root: str | Path, pre: Preprocessing, count: int, dataset: str | None = None,
                        split: str = "train", data_options: dict | None = None) -> Iterator[torch.Tensor]:
    """`count` images spread evenly over `dataset`'s `split` under `root` (or over the image files
    of the folder `root` when no dataset is named), each preprocessed by `pre`: (3, h, w) tensors."""
    if count < 1:
        raise DataError(f"--calib-images must be at least 1, got {count}")
    if dataset is not None:
        from ..data import build_dataset

        items = build_dataset(dataset, root, split, pre.transforms(), **(data_options or {}))
        for i in _spread(len(items), count, f"{root} ({dataset}, {split})"):
            yield items[i]["image"]
        return
    from ..data import read_image
    from ..data.layout import IMAGE_EXTS, list_files

    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"--calibrate {folder}: no such folder")
    files = list_files(folder, IMAGE_EXTS, recursive=True)
    for i in _spread(len(files), count, str(folder)):
        yield pre(read_image(files[i]))


def network_inputs(network: nn.Module, tensors: Iterator[torch.Tensor], pre: Preprocessing) -> list[np.ndarray]:
    """Every batch `network` is called with while the inference path segments `tensors` as `pre`
    says (whole / slide, flip): what calibration must see."""
    recorder = _Recorder(network)
    for x in tensors:
        inference(recorder, x, **pre.inference_kwargs())
    return recorder.seen


class _Recorder(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.seen: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().cpu().numpy().copy())
        return self.network(x)


def _spread(n: int, count: int, where: str) -> list[int]:
    """`count` indices spread evenly over range(n) (all of them when there are fewer)."""
    if n == 0:
        raise DataError(f"{where}: no images to calibrate on")
    return sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))


def describe(inputs: Sequence[np.ndarray]) -> str:
    shapes = sorted({tuple(a.shape[2:]) for a in inputs})
    sizes = ", ".join(f"{h}x{w}" for h, w in shapes[:3]) + (", ..." if len(shapes) > 3 else "")
    return f"{sum(a.shape[0] for a in inputs)} network inputs ({sizes})"
