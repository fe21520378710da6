"""ADE20K SceneParsing: ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/*.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import IGNORE_INDEX, FilePairDataset, Transform
from ..layout import check_split, pair_by_name, require_dir
from ..metainfo import ADE20K_CLASSES, ADE20K_PALETTE

_SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K's 0 means "other" (not a class): 0 -> ignore, every other id shifts down by one."""
    out = label.astype(np.int16) - 1
    out[label == 0] = IGNORE_INDEX
    out[label == IGNORE_INDEX] = IGNORE_INDEX  # keep an existing ignore as ignore
    return out.astype(np.uint8)


class ADE20KDataset(FilePairDataset):
    """150 classes with reduce_zero_label. `root` may be ADEChallengeData2016 or its parent."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "ADE20K root folder")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        sub = _SPLIT_DIRS[check_split(split)]
        img_dir = require_dir(root / "images" / sub, f"ADE20K {split} image folder")
        ann_dir = require_dir(root / "annotations" / sub, f"ADE20K {split} annotation folder")
        pairs = pair_by_name(img_dir, ann_dir, (".jpg",), ".png", "annotation PNGs")
        super().__init__(pairs, ADE20K_CLASSES, ADE20K_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        return reduce_zero_label(label)
