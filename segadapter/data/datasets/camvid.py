"""CamVid in the SegNet layout: ROOT/{split}/*.png with labels in ROOT/{split}annot/ (same names)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import IGNORE_INDEX, FilePairDataset, Transform
from ..layout import IMAGE_EXTS, check_split, pair_by_name, require_dir
from ..metainfo import CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID_ID


class CamVidDataset(FilePairDataset):
    """11 classes; the void id 11 becomes the ignore index 255."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "CamVid root folder")
        split = check_split(split)
        img_dir = require_dir(root / split, f"CamVid {split} image folder")
        ann_dir = require_dir(root / f"{split}annot", f"CamVid {split} label folder")
        pairs = pair_by_name(img_dir, ann_dir, IMAGE_EXTS, ".png", "label PNGs")
        super().__init__(pairs, CAMVID_CLASSES, CAMVID_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        label = label.copy()
        label[label == CAMVID_VOID_ID] = IGNORE_INDEX
        return label
