"""PASCAL VOC 2012: `voc` (SAN's VOC-20: the 20 classes, background ignored) and `voc21` (with
background, as mmseg and the VOC benchmark count it).

    VOC2012/JPEGImages/*.jpg
    VOC2012/annotations_detectron2/{train,val}/*.png    VOC-20 as SAN's preparation writes it
                                                         (`segadapter prepare voc`): ids 0-19, 255
    VOC2012/SegmentationClass/*.png                      VOC's own index PNGs: 0 = background, 1-20, 255
    VOC2012/ImageSets/Segmentation/{train,val}.txt       the split lists of those

`root` may be VOC2012 itself, or a folder holding VOC2012/ or VOCdevkit/VOC2012/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..base import FilePairDataset, Transform
from ..layout import check_split, enter, find_files, pairs_from_ids, read_id_list, require_dir
from ..metainfo import VOC21_CLASSES, VOC21_PALETTE, VOC_CLASSES, VOC_PALETTE
from .ade20k import reduce_zero_label

PREPARED = "annotations_detectron2"


def voc_root(root: str | Path) -> Path:
    return enter(require_dir(Path(root), "VOC root folder"), "VOC2012", "VOCdevkit/VOC2012")


def listed_pairs(root: Path, split: str, labels: str = "SegmentationClass") -> list[tuple[Path, Path]]:
    """VOC's own layout: the ids of ImageSets/Segmentation/{split}.txt, their JPEG and label PNG."""
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    ids = read_id_list(listing, f"VOC {split} split list")
    return pairs_from_ids(ids, lambda i: root / "JPEGImages" / f"{i}.jpg",
                          lambda i: root / labels / f"{i}.png", listing)


class VOCDataset(FilePairDataset):
    """VOC-20 as SAN evaluates it (labels 0-19, background and border 255). Reads SAN's prepared
    labels when they are there, else VOC's own PNGs with reduce_zero_label, which gives the same
    arrays (spec: "Relation to mmseg")."""

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = voc_root(root)
        split = check_split(split)
        prepared = root / PREPARED / split
        self.raw = not prepared.is_dir()
        if self.raw and not (root / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
            raise DataError(f"VOC {split} split not found in {root}: neither {prepared} (SAN's layout, written by "
                            f"`segadapter prepare voc`) nor ImageSets/Segmentation/{split}.txt (VOC's own)")
        pairs = listed_pairs(root, split) if self.raw else self._prepared_pairs(root, prepared)
        super().__init__(pairs, VOC_CLASSES, VOC_PALETTE, transform, seed)

    @staticmethod
    def _prepared_pairs(root: Path, labels_at: Path) -> list[tuple[Path, Path]]:
        # as detectron2: the labels decide which of JPEGImages' 17k images are in the split
        images = require_dir(root / "JPEGImages", "VOC image folder")
        pairs = []
        for label in find_files(labels_at, (".png",), "label PNGs"):
            image = images / f"{label.stem}.jpg"
            if not image.is_file():
                raise DataError(f"label {label} has no image (expected {image})")
            pairs.append((image, label))
        return pairs

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        return reduce_zero_label(label) if self.raw else label


class VOC21Dataset(FilePairDataset):
    """VOC 2012 with background: 21 classes, labels 0-20 and 255 as VOC's SegmentationClass PNGs
    hold them (mmseg `PascalVOCDataset`)."""

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = voc_root(root)
        pairs = listed_pairs(root, check_split(split))
        super().__init__(pairs, VOC21_CLASSES, VOC21_PALETTE, transform, seed)
