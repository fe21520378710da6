"""Dataset names -> classes, plus name-based access to class names and palettes."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from .base import SegDataset, Transform
from .datasets.ade20k import ADE20KDataset
from .datasets.ade20k_full import ADE20KFullDataset
from .datasets.camvid import CamVidDataset
from .datasets.cityscapes import CityscapesDataset
from .datasets.coco_stuff import COCOStuff10kDataset, COCOStuff164kDataset
from .datasets.folder import FolderDataset
from .datasets.pascal_context import PascalContext59Dataset, PascalContext60Dataset, PascalContext459Dataset
from .datasets.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SyntheticDataset
from .datasets.voc import VOC21Dataset, VOCDataset
from .metainfo import (ADE20K_CLASSES, ADE20K_FULL_CLASSES, ADE20K_FULL_PALETTE, ADE20K_PALETTE,
                       CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                       COCO_STUFF_CLASSES, COCO_STUFF_PALETTE, PCONTEXT59_CLASSES, PCONTEXT59_PALETTE,
                       PCONTEXT60_CLASSES, PCONTEXT60_PALETTE, PCONTEXT459_CLASSES, PCONTEXT459_PALETTE,
                       VOC21_CLASSES, VOC21_PALETTE, VOC_CLASSES, VOC_PALETTE, Palette)

_DATASETS: dict[str, Callable[..., SegDataset]] = {
    "camvid": CamVidDataset,
    "ade20k": ADE20KDataset,
    "cityscapes": CityscapesDataset,
    "coco-stuff164k": COCOStuff164kDataset,
    "voc": VOCDataset,
    "voc21": VOC21Dataset,
    "pcontext59": PascalContext59Dataset,
    "pcontext60": PascalContext60Dataset,
    "pcontext459": PascalContext459Dataset,
    "ade20k-full": ADE20KFullDataset,
    "coco-stuff10k": COCOStuff10kDataset,
    "folder": FolderDataset,
    "synthetic": SyntheticDataset,
}
DATASET_NAMES: tuple[str, ...] = tuple(_DATASETS)

# Fixed metadata; "folder" has none (it comes from the user's classes file).
_METAINFO: dict[str, tuple[list[str], Palette]] = {
    "camvid": (CAMVID_CLASSES, CAMVID_PALETTE),
    "ade20k": (ADE20K_CLASSES, ADE20K_PALETTE),
    "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
    "coco-stuff164k": (COCO_STUFF_CLASSES, COCO_STUFF_PALETTE),
    "voc": (VOC_CLASSES, VOC_PALETTE),
    "voc21": (VOC21_CLASSES, VOC21_PALETTE),
    "pcontext59": (PCONTEXT59_CLASSES, PCONTEXT59_PALETTE),
    "pcontext60": (PCONTEXT60_CLASSES, PCONTEXT60_PALETTE),
    "pcontext459": (PCONTEXT459_CLASSES, PCONTEXT459_PALETTE),
    "ade20k-full": (ADE20K_FULL_CLASSES, ADE20K_FULL_PALETTE),
    "coco-stuff10k": (COCO_STUFF_CLASSES, COCO_STUFF_PALETTE),
    "synthetic": (SYNTHETIC_CLASSES, SYNTHETIC_PALETTE),
}


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return key


def build_dataset(name: str, root: str | Path | None, split: str, transform: Transform | None = None,
                  **kwargs: Any) -> SegDataset:
    """Build dataset `name` from `root` for split train/val/test (folder names mapped per layout).

    `transform` defaults to the eval pipeline (normalise + to tensor). Extra keyword arguments go
    to the dataset class (e.g. `seed`; `size`/`num_samples` for synthetic; `classes`/`palette`/
    `img_dir`/`ann_dir`/`reduce_zero_label` for folder).
    """
    key = _canonical(name)
    if root is None and key != "synthetic":
        raise DataError(f"dataset {key!r} needs a root folder")
    cls = _DATASETS[key]
    accepted = set(inspect.signature(cls).parameters) - {"root", "split", "transform"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise DataError(f"dataset {key!r} does not take option(s) {', '.join(unknown)}; "
                        f"it accepts: {', '.join(sorted(accepted))}")
    return cls(root, split, transform, **kwargs)


def get_classes(name: str) -> list[str]:
    """Class names of a dataset with fixed metadata (not 'folder': that comes from its files)."""
    key = _canonical(name)
    if key not in _METAINFO:
        raise DataError(f"dataset {key!r} has no fixed classes; they are read from its classes file")
    return list(_METAINFO[key][0])


def get_palette(name: str) -> Palette:
    """RGB palette (one triple per class) of a dataset with fixed metadata."""
    key = _canonical(name)
    if key not in _METAINFO:
        raise DataError(f"dataset {key!r} has no fixed palette; build the dataset and use .palette")
    return list(_METAINFO[key][1])
