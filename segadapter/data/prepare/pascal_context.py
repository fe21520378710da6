"""`segadapter prepare pcontext59 | pcontext60 | pcontext459`: PASCAL Context from the raw download.

RAW holds (or RAW/VOCdevkit/VOC2010 holds) `JPEGImages/` of VOC 2010, and RAW holds
`trainval_merged.json` (PASCAL-in-Detail); pcontext459 also needs `RAW/trainval/<name>.mat`
(the 459-class `trainval.tar.gz`). Images and their order come from the Detail index of each split.

- pcontext59 (SAN's `prepare_pcontext_sem_seg_59cls.py`): OUT/{train,val}/image/<name>.jpg and
  label/<name>.png; the category ids ranked in {0} + the 59 ids, minus 1 in uint8 (0 -> 255).
- pcontext60 (mmseg's `pascal_context.py`): the same ranks without the subtraction (0 = background),
  OUT/SegmentationClassContext/<name>.png, OUT/ImageSets/SegmentationContext/{train,val}.txt and
  OUT/JPEGImages/ (OUT plays VOC2010's part).
- pcontext459 (SAN's `prepare_pcontext_sem_seg_459cls.py`): LabelMap - 1 in uint16 (a 0 becomes
  65535), OUT/{train,val}/label/<name>.tif, images as pcontext59.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError
from ..layout import enter
from .detail import PHASES, DetailAnnotations
from .files import link_or_copy, save_png, save_tiff, write_lines
from .raw import load_mat_array
from .tables import PCONTEXT59_IDS
from .work import Item, Report, lookup_table, run_items

JSON_NAME = "trainval_merged.json"
NUM_FULL = 459


def _sources(raw: Path) -> tuple[Path, DetailAnnotations]:
    json_path = raw / JSON_NAME
    if not json_path.is_file():
        raise DataError(f"PASCAL-in-Detail annotations not found: {json_path} (download trainval_merged.json)")
    images = enter(raw, "VOCdevkit/VOC2010", "VOC2010") / "JPEGImages"
    if not images.is_dir():
        raise DataError(f"VOC 2010 images not found: {images} (or {raw}/VOCdevkit/VOC2010/JPEGImages)")
    return images, DetailAnnotations(json_path)


# the 60-value table: 0 and the 59 ids, ranked (0 -> 0, id k-th -> k)
_RANK = lookup_table((0, *PCONTEXT59_IDS), NUM_FULL + 1, 255, np.uint8)
_KNOWN = np.zeros(NUM_FULL + 1, bool)
_KNOWN[[0, *PCONTEXT59_IDS]] = True


def ranked_mask(mask: np.ndarray, where: str) -> np.ndarray:
    """Category ids -> 0 (none) and 1-59, as both scripts do; any other id is an error, as their assert."""
    inside = (mask >= 0) & (mask <= NUM_FULL)
    if not inside.all() or not _KNOWN[mask[inside]].all():
        bad = np.unique(mask[~inside | ~_KNOWN[np.clip(mask, 0, NUM_FULL)]])
        raise DataError(f"{where}: category ids {bad.tolist()[:10]} are not among the 59 PASCAL Context classes")
    return _RANK[mask]


def _stem(image: dict) -> str:
    return Path(image["file_name"]).stem


def prepare_pcontext59(raw: Path, out: Path, splits: Sequence[str] = PHASES, progress: bool = True) -> Report:
    images, detail = _sources(raw)
    report = Report()
    for split in splits:
        items = []
        for image, anns in detail.split(split):
            name = _stem(image)
            jpg, png = out / split / "image" / f"{name}.jpg", out / split / "label" / f"{name}.png"

            def make(image=image, anns=anns, jpg=jpg, png=png):
                ranked = ranked_mask(detail.class_mask(image, anns), f"{detail.path} (image {image['file_name']})")
                label = ranked - np.uint8(1)  # uint8: background 0 wraps to 255
                link_or_copy(_image(images, image), jpg)
                save_png(label, png)

            items.append(Item(name, (jpg, png), make))
        run_items(items, split, report, progress, f"pcontext59 {split}")
    return report


def prepare_pcontext60(raw: Path, out: Path, splits: Sequence[str] = PHASES, progress: bool = True) -> Report:
    images, detail = _sources(raw)
    report = Report()
    same_images = out.resolve() == images.parent.resolve()
    for split in splits:
        items, names = [], []
        for image, anns in detail.split(split):
            name = _stem(image)
            names.append(name)
            png, jpg = out / "SegmentationClassContext" / f"{name}.png", out / "JPEGImages" / f"{name}.jpg"

            def make(image=image, anns=anns, png=png, jpg=jpg):
                label = ranked_mask(detail.class_mask(image, anns), f"{detail.path} (image {image['file_name']})")
                if not same_images:
                    link_or_copy(_image(images, image), jpg)
                save_png(label, png)

            items.append(Item(name, (png,) if same_images else (png, jpg), make))
        run_items(items, split, report, progress, f"pcontext60 {split}")
        write_lines(sorted(set(names)), out / "ImageSets" / "SegmentationContext" / f"{split}.txt")
    return report


def prepare_pcontext459(raw: Path, out: Path, splits: Sequence[str] = PHASES, progress: bool = True) -> Report:
    images, detail = _sources(raw)
    mats = raw / "trainval"
    if not mats.is_dir():
        raise DataError(f"PASCAL Context 459-class annotations not found: {mats} (extract trainval.tar.gz there)")
    report = Report()
    for split in splits:
        items = []
        for image, _ in detail.split(split):
            name = _stem(image)
            jpg, tif = out / split / "image" / f"{name}.jpg", out / split / "label" / f"{name}.tif"

            def make(name=name, image=image, jpg=jpg, tif=tif):
                label = full_label(load_mat_array(mats / f"{name}.mat", "LabelMap"), mats / f"{name}.mat")
                link_or_copy(_image(images, image), jpg)
                save_tiff(label, tif)

            items.append(Item(name, (jpg, tif), make))
        run_items(items, split, report, progress, f"pcontext459 {split}")
    return report


def full_label(label_map: np.ndarray, where: Path) -> np.ndarray:
    """LabelMap value v (1-459, 1-based in the alphabetical list) -> v - 1; 0 wraps to 65535."""
    values = np.unique(label_map)
    if values.size and (values.min() < 0 or values.max() > NUM_FULL or not np.array_equal(values, np.round(values))):
        bad = values[(values < 0) | (values > NUM_FULL) | (values != np.round(values))]
        raise DataError(f"{where}: LabelMap values {bad.tolist()[:10]} are not PASCAL Context ids (1-{NUM_FULL})")
    return label_map.astype(np.uint16) - np.uint16(1)


def _image(images: Path, image: dict) -> Path:
    path = images / image["file_name"]
    if not path.is_file():
        raise DataError(f"image {path} is missing (listed in the annotation file)")
    return path
