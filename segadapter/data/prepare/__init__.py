"""`segadapter prepare DATASET --from RAW --to OUT`: the official preparation scripts of the
benchmark datasets, one file each, reproducing their label arrays (../shared/spec/datasets.md).

Every converter is resumable (an image whose outputs all exist is skipped) and writes each file
atomically, so an interrupted run is rerun as it is.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from ...errors import ConfigError
from .work import Report

# dataset -> (module, function, the splits the official script writes, what RAW is)
CONVERTERS = {
    "voc": ("voc", "prepare_voc", ("train", "val"),
            "VOC2012 with JPEGImages/ and SegmentationClass[Aug]/ + split lists"),
    "pcontext59": ("pascal_context", "prepare_pcontext59", ("train", "val"),
                   "folder with VOC 2010 JPEGImages/ and trainval_merged.json"),
    "pcontext60": ("pascal_context", "prepare_pcontext60", ("train", "val"),
                   "folder with VOC 2010 JPEGImages/ and trainval_merged.json"),
    "pcontext459": ("pascal_context", "prepare_pcontext459", ("train", "val"),
                    "folder with VOC 2010 JPEGImages/, trainval_merged.json and trainval/*.mat"),
    "ade20k-full": ("ade20k_full", "prepare_ade20k_full", ("train", "val"),
                    "ADE20K_2021_17_01 with index_ade20k.pkl and images/"),
    "coco-stuff10k": ("coco_stuff10k", "prepare_coco_stuff10k", ("train", "test"),
                      "cocostuff-10k-v1.1 with images/, annotations/*.mat and imageLists/"),
}


def prepare(dataset: str, raw: str | Path, out: str | Path, splits: Sequence[str] | None = None,
            progress: bool = True) -> Report:
    """Convert `raw` into the layout `build_dataset(dataset, out, ...)` reads."""
    key = dataset.strip().lower().replace("_", "-")
    if key not in CONVERTERS:
        raise ConfigError(f"no converter for {dataset!r}; converters: {', '.join(CONVERTERS)} "
                          "(ade20k, coco-stuff164k, voc21 and cityscapes are read as downloaded)")
    module, function, default_splits, _ = CONVERTERS[key]
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise ConfigError(f"--from {raw}: no such folder")
    chosen = tuple(splits) if splits else default_splits
    unknown = [s for s in chosen if s not in default_splits]
    if unknown:
        raise ConfigError(f"{key} has no split {unknown[0]!r}; its splits: {', '.join(default_splits)}")
    convert = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return convert(raw, out, chosen, progress)
