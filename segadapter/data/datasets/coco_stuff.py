"""COCO-Stuff 164k: images/{train2017,val2017}/*.jpg + annotations/{...}/*_labelTrainIds.png."""
from __future__ import annotations

from pathlib import Path

from ..base import FilePairDataset, Transform
from ..layout import check_split, find_files, pair_files, require_dir
from ..metainfo import COCO_STUFF_CLASSES, COCO_STUFF_PALETTE

_SPLIT_DIRS = {"train": "train2017", "val": "val2017", "test": "test2017"}
LABEL_SUFFIX = "_labelTrainIds.png"


class COCOStuff164kDataset(FilePairDataset):
    """171 classes, train ids 0-170 already in the label files (255 = ignore)."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "COCO-Stuff root folder")
        sub = _SPLIT_DIRS[check_split(split)]
        img_dir = require_dir(root / "images" / sub, f"COCO-Stuff {split} image folder")
        ann_dir = require_dir(root / "annotations" / sub, f"COCO-Stuff {split} annotation folder")
        images = find_files(img_dir, (".jpg",), "images")
        labels = find_files(ann_dir, (LABEL_SUFFIX,), "label PNGs")
        pairs = pair_files(images, labels, lambda p: p.stem,
                           lambda p: p.name[: -len(LABEL_SUFFIX)],
                           lambda p: ann_dir / (p.stem + LABEL_SUFFIX))
        super().__init__(pairs, COCO_STUFF_CLASSES, COCO_STUFF_PALETTE, transform, seed)
