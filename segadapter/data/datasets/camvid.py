"""CamVid in the SegNet layout: ROOT/{split}/*.png with labels in ROOT/{split}annot/ (same names)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import IGNORE_INDEX, FilePairDataset, Transform
from ..layout import IMAGE_EXTS, check_split, find_files, pair_files, require_dir
from ..metainfo import CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID_ID


class CamVidDataset(FilePairDataset):
    """11 classes; the void id 11 becomes the ignore index 255."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "CamVid root folder")
        split = check_split(split)
        img_dir = require_dir(root / split, f"CamVid {split} image folder")
        ann_dir = require_dir(root / f"{split}annot", f"CamVid {split} label folder")
        images = find_files(img_dir, IMAGE_EXTS, "images")
        labels = find_files(ann_dir, (".png",), "label PNGs")
        pairs = pair_files(images, labels, lambda p: p.stem, lambda p: p.stem,
                           lambda p: ann_dir / (p.stem + ".png"))
        super().__init__(pairs, CAMVID_CLASSES, CAMVID_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        label = label.copy()
        label[label == CAMVID_VOID_ID] = IGNORE_INDEX
        return label
