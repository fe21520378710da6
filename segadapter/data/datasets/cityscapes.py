"""Cityscapes: leftImg8bit/{split}/{city}/*_leftImg8bit.png + gtFine/{split}/{city}/*_gtFine_*.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..base import IGNORE_INDEX, FilePairDataset, Transform
from ..layout import check_split, find_files, list_files, pair_files, require_dir
from ..metainfo import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE

IMG_SUFFIX = "_leftImg8bit.png"
TRAINID_SUFFIX = "_gtFine_labelTrainIds.png"
LABELID_SUFFIX = "_gtFine_labelIds.png"


def _lookup_table() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        lut[label_id] = train_id
    return lut


_ID_TO_TRAINID = _lookup_table()


def label_ids_to_train_ids(label: np.ndarray) -> np.ndarray:
    """Official mapping of raw Cityscapes labelIds to the 19 train ids (others -> 255)."""
    return _ID_TO_TRAINID[label]


def _key(path: Path, folder: Path, suffix: str) -> str:
    """'city/frame' so the same frame name in two cities cannot collide."""
    rel = path.relative_to(folder).as_posix()
    return rel[: -len(suffix)]


class CityscapesDataset(FilePairDataset):
    """19 classes. Uses *_labelTrainIds.png; falls back to converting *_labelIds.png per frame."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 seed: int = 0) -> None:
        root = require_dir(Path(root), "Cityscapes root folder")
        split = check_split(split)
        img_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes {split} image folder")
        ann_dir = require_dir(root / "gtFine" / split, f"Cityscapes {split} gtFine folder")
        images = find_files(img_dir, (IMG_SUFFIX,), "images", recursive=True)
        labels = {_key(p, ann_dir, LABELID_SUFFIX): p
                  for p in list_files(ann_dir, (LABELID_SUFFIX,), recursive=True)}
        # trainIds win where both exist: they are what the benchmark is defined on.
        labels.update({_key(p, ann_dir, TRAINID_SUFFIX): p
                       for p in list_files(ann_dir, (TRAINID_SUFFIX,), recursive=True)})
        if not labels:
            raise DataError(f"no gtFine labels found in {ann_dir} (looked for *{TRAINID_SUFFIX} "
                            f"or *{LABELID_SUFFIX})")
        pairs = pair_files(
            images, list(labels.values()),
            lambda p: _key(p, img_dir, IMG_SUFFIX),
            lambda p: _key(p, ann_dir, TRAINID_SUFFIX if p.name.endswith(TRAINID_SUFFIX) else LABELID_SUFFIX),
            lambda p: ann_dir / (_key(p, img_dir, IMG_SUFFIX) + TRAINID_SUFFIX),
        )
        super().__init__(pairs, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        if label_path.name.endswith(LABELID_SUFFIX):
            return label_ids_to_train_ids(label)
        return label
