"""The dataset base class: file pairs in, validated and transformed samples out."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .io import read_image, read_label
from .metainfo import Palette
from .seeding import SampleKey, sample_rng
from .transforms import build_transforms

IGNORE_INDEX = 255
WIDE_IGNORE_INDEX = 65535  # PC-459, ADE20K-Full: uint16 labels, as their official preparation writes them

Transform = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


BAD_FILE = "bad_file"  # the key of a sample that could not be read (with skip_bad): its error message


class SegDataset(Dataset):
    """Base of all datasets: class metadata, label validation, seeded transform, item dict.

    Subclasses implement `__len__` and `load(index)`. Items are dicts
    `{"image": float32 (3, H, W), "label": int64 (H, W), "path": str}`.

    Indexing with an int uses the generator of (self.seed, self.epoch, index), so `ds[i]` is
    reproducible; call `set_epoch` to get fresh augmentation each epoch (the loader from
    `build_dataloader` does this itself by passing `SampleKey`s that carry the epoch).
    """

    ignore_index: int = IGNORE_INDEX  # datasets of more than 255 classes: 65535 (WIDE_IGNORE_INDEX)
    skip_bad: bool = False  # an unreadable sample: True gives {BAD_FILE: message}, False raises DataError

    def __init__(self, classes: Sequence[str], palette: Palette, transform: Transform | None = None,
                 seed: int = 0) -> None:
        if len(palette) < len(classes):
            raise DataError(f"palette has {len(palette)} colours for {len(classes)} classes")
        self.classes = list(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette[: len(classes)]]
        self.transform = transform if transform is not None else build_transforms(train=False)
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Raw sample: (uint8 HWC RGB image, HW train-id label, path or name); the label is uint8,
        or uint16 for a dataset whose ignore index is above 255."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def check_label_values(self, label: np.ndarray, lbl_path: Path | str) -> None:
        """Every value must be a class id or the ignore index (after the dataset's mapping)."""
        values = np.unique(label)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise DataError(
                f"label {lbl_path} has values {bad.tolist()[:20]} outside the {self.num_classes} "
                f"classes (valid: 0-{self.num_classes - 1}, or {self.ignore_index} = ignore)"
            )

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        if isinstance(key, SampleKey):
            index, rng = key.index, sample_rng(key.seed, key.epoch, key.index)
        else:
            index = int(key)
            if index < 0:
                index += len(self)
            if not 0 <= index < len(self):
                raise IndexError(f"index {key} out of range for a dataset of {len(self)}")
            rng = sample_rng(self.seed, self.epoch, index)
        try:
            image, label, path = self.load(index)
        except DataError as e:
            if not self.skip_bad:
                raise
            return {BAD_FILE: str(e)}  # dropped from its batch by collate_samples, counted by the trainer
        image_t, label_t = self.transform(image, label, rng=rng)
        return {"image": image_t, "label": label_t, "path": path}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={self.num_classes})"


class FilePairDataset(SegDataset):
    """A dataset over (image file, label file) pairs, found and validated by the subclass.

    Subclasses may override `map_label` (CamVid void -> 255, ADE20K reduce_zero_label, ...).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], classes: Sequence[str], palette: Palette,
                 transform: Transform | None = None, seed: int = 0) -> None:
        super().__init__(classes, palette, transform, seed)
        self.pairs = [(Path(i), Path(l)) for i, l in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        """Dataset-specific raw-id -> train-id mapping; identity by default."""
        return label

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        img_path, lbl_path = self.pairs[index]
        image = read_image(img_path)
        label = read_label(lbl_path, sixteen_bit=self.ignore_index > 255)
        if image.shape[:2] != label.shape:
            raise DataError(
                f"image {img_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its label "
                f"{lbl_path} is {label.shape[1]}x{label.shape[0]}; they must be the same size"
            )
        label = self.map_label(label, lbl_path)
        self.check_label_values(label, lbl_path)
        return image, label, str(img_path)
