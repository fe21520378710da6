"""COCO-Stuff 164k: images/{train2017,val2017}/*.jpg + annotations/{...}/*_labelTrainIds.png;
COCO-Stuff-10K: images/{train2014,test2014}/*.jpg + annotations/{...}/*_labelTrainIds.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import FilePairDataset, Transform
from ..layout import check_split, enter, pair_by_name, require_dir
from ..metainfo import COCO_STUFF_CLASSES, COCO_STUFF_PALETTE
from .ade20k import reduce_zero_label

_SPLIT_DIRS = {"train": "train2017", "val": "val2017", "test": "test2017"}
LABEL_SUFFIX = "_labelTrainIds.png"


class COCOStuff164kDataset(FilePairDataset):
    """171 classes, train ids 0-170 already in the label files (255 = ignore)."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "COCO-Stuff root folder")
        pairs = _image_label_pairs(root, _SPLIT_DIRS[check_split(split)], f"COCO-Stuff {split}")
        super().__init__(pairs, COCO_STUFF_CLASSES, COCO_STUFF_PALETTE, transform, seed)


def _image_label_pairs(root: Path, sub: str, what: str):
    """images/SUB/*.jpg beside annotations/SUB/*_labelTrainIds.png, the layout both COCO-Stuff
    sets share."""
    img_dir = require_dir(root / "images" / sub, f"{what} image folder")
    ann_dir = require_dir(root / "annotations" / sub, f"{what} annotation folder")
    return pair_by_name(img_dir, ann_dir, (".jpg",), LABEL_SUFFIX, "label PNGs")


_SPLIT_DIRS_10K = {"train": "train2014", "val": "test2014", "test": "test2014"}


class COCOStuff10kDataset(FilePairDataset):
    """COCO-Stuff-10K as mmseg's converter writes it (`segadapter prepare coco-stuff10k`):
    images/{train2014,test2014}/*.jpg + annotations/{...}/*_labelTrainIds.png holding 0 = unlabeled,
    1-171; read with reduce_zero_label (0-170, 255), the ids and names of COCO-Stuff-171. The
    evaluation split is test2014 (1,000 images): `val` and `test` both name it."""

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = enter(require_dir(Path(root), "COCO-Stuff-10K root folder"), "coco_stuff10k")
        pairs = _image_label_pairs(root, _SPLIT_DIRS_10K[check_split(split)], f"COCO-Stuff-10K {split}")
        super().__init__(pairs, COCO_STUFF_CLASSES, COCO_STUFF_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        return reduce_zero_label(label)
