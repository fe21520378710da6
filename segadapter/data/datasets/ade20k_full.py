"""ADE20K-Full (A-847) as MaskFormer's / SAN's preparation writes it (`segadapter prepare ade20k-full`):

    ADE20K_2021_17_01/images_detectron2/{training,validation}/*.jpg    short side at most 512
    ADE20K_2021_17_01/annotations_detectron2/{training,validation}/*.tif   uint16 trainIds 0-846, 65535 = ignore
"""
from __future__ import annotations

from pathlib import Path

from ..base import WIDE_IGNORE_INDEX, FilePairDataset, Transform
from ..layout import check_split, enter, pair_by_name, require_dir
from ..metainfo import ADE20K_FULL_CLASSES, ADE20K_FULL_PALETTE

SPLIT_DIRS = {"train": "training", "val": "validation"}


class ADE20KFullDataset(FilePairDataset):
    """847 classes, 16-bit labels. `root` may be ADE20K_2021_17_01 or its parent."""

    ignore_index = WIDE_IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = enter(require_dir(Path(root), "ADE20K-Full root folder"), "ADE20K_2021_17_01")
        split = check_split(split)
        sub = SPLIT_DIRS.get(split, split)
        img_dir = require_dir(root / "images_detectron2" / sub, f"ADE20K-Full {split} image folder")
        ann_dir = require_dir(root / "annotations_detectron2" / sub, f"ADE20K-Full {split} label folder")
        pairs = pair_by_name(img_dir, ann_dir, (".jpg",), ".tif", "16-bit TIFF labels")
        super().__init__(pairs, ADE20K_FULL_CLASSES, ADE20K_FULL_PALETTE, transform, seed)
