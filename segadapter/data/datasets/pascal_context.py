"""PASCAL Context (VOC 2010 images): `pcontext59` and `pcontext459` in the layouts SAN's preparation
writes, `pcontext60` in mmseg's.

    pcontext/{train,val}/image/*.jpg  + label/*.png   PC-59: ids 0-58, 255 = no annotation
    pcontext_full/{train,val}/image/*.jpg + label/*.tif   PC-459: uint16 ids 0-458, 65535 = ignore
    VOC2010/JPEGImages/*.jpg + SegmentationClassContext/*.png + ImageSets/SegmentationContext/{split}.txt
                                          PC-60 (mmseg): 0 = background, 1-59; as PC-59 with reduce_zero_label

`segadapter prepare pcontext59 | pcontext459 | pcontext60` writes them from the raw download.
`root` may be the dataset's folder or the folder holding it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..base import WIDE_IGNORE_INDEX, FilePairDataset, Transform
from ..layout import check_split, enter, pair_by_name, pairs_from_ids, read_id_list, require_dir
from ..metainfo import (PCONTEXT59_CLASSES, PCONTEXT59_PALETTE, PCONTEXT60_CLASSES, PCONTEXT60_PALETTE,
                        PCONTEXT459_CLASSES, PCONTEXT459_PALETTE)
from .ade20k import reduce_zero_label


def image_label_pairs(root: Path, split: str, label_ext: str, what: str) -> list[tuple[Path, Path]]:
    """SAN's layout: {split}/image/NAME.jpg with {split}/label/NAME{label_ext}."""
    images_at = require_dir(root / split / "image", f"{what} {split} image folder")
    labels_at = require_dir(root / split / "label", f"{what} {split} label folder")
    return pair_by_name(images_at, labels_at, (".jpg",), label_ext, f"{label_ext} labels")


def mmseg_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """mmseg's layout in VOC2010/: the ids of ImageSets/SegmentationContext/{split}.txt."""
    listing = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    ids = read_id_list(listing, f"PASCAL Context {split} split list")
    return pairs_from_ids(ids, lambda i: root / "JPEGImages" / f"{i}.jpg",
                          lambda i: root / "SegmentationClassContext" / f"{i}.png", listing)


def voc2010_root(root: Path) -> Path:
    return enter(root, "VOC2010", "VOCdevkit/VOC2010")


class PascalContext59Dataset(FilePairDataset):
    """SAN's PC-59 (labels 0-58, 255 = no annotation). Reads pcontext/{split}/; without it, mmseg's
    VOC2010 layout with reduce_zero_label, which is the same array (mmseg `PascalContextDataset59`)."""

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "PASCAL Context root folder")
        split = check_split(split)
        san = enter(root, "pcontext")
        self.raw = not (san / split).is_dir() and (voc2010_root(root) / "SegmentationClassContext").is_dir()
        if self.raw:
            pairs = mmseg_pairs(voc2010_root(root), split)
        else:
            pairs = image_label_pairs(san, split, ".png", "PC-59")
        super().__init__(pairs, PCONTEXT59_CLASSES, PCONTEXT59_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        return reduce_zero_label(label) if self.raw else label


class PascalContext60Dataset(FilePairDataset):
    """mmseg `PascalContextDataset` (SegViT): 60 classes, 0 = background (every pixel not in the 59)."""

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = voc2010_root(require_dir(Path(root), "PASCAL Context root folder"))
        if not (root / "SegmentationClassContext").is_dir():
            raise DataError(f"PC-60 labels not found: {root / 'SegmentationClassContext'} (mmseg's layout, written "
                            "by `segadapter prepare pcontext60`)")
        pairs = mmseg_pairs(root, check_split(split))
        super().__init__(pairs, PCONTEXT60_CLASSES, PCONTEXT60_PALETTE, transform, seed)


class PascalContext459Dataset(FilePairDataset):
    """SAN's PC-459: 16-bit TIFF labels 0-458, 65535 = ignore."""

    ignore_index = WIDE_IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = enter(require_dir(Path(root), "PASCAL Context root folder"), "pcontext_full")
        pairs = image_label_pairs(root, check_split(split), ".tif", "PC-459")
        super().__init__(pairs, PCONTEXT459_CLASSES, PCONTEXT459_PALETTE, transform, seed)
