"""`segadapter prepare voc`: VOC 2012 masks to SAN's VOC-20 labels (SAN's `prepare_voc_sem_seg.py`).

RAW is VOC2012 (or a folder holding VOC2012/ or VOCdevkit/VOC2012/) with JPEGImages/ and either
SegmentationClassAug/ + train.txt / val.txt (SimSeg's layout, which SAN's README asks for) or
SegmentationClass/ + ImageSets/Segmentation/{train,val}.txt (the VOC tar as it comes). Masks may be
index PNGs (VOC's palette PNGs, the grey SegmentationClassAug ones) or class-colour RGB PNGs.

Writes OUT/annotations_detectron2/{train,val}/<id>.png: raw 0 (background) -> 255, raw k -> k - 1,
255 (border) -> 255; a mask with no class pixel is not written, as the official script. The listed
images go to OUT/JPEGImages/ (hard links, or copies; nothing when OUT is RAW itself).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ...errors import DataError
from ..io import read_label
from ..layout import enter
from ..metainfo import generated_palette
from .files import link_or_copy, save_png
from .raw import read_names
from .work import Item, Report, run_items

SPLITS = ("train", "val")
BORDER_COLOUR = (224, 224, 192)  # VOC draws the void border in this colour (index 255)
# raw VOC ids -> VOC-20: 0 and 255 -> 255, k -> k - 1
_TO_VOC20 = np.full(256, 255, np.uint8)
_TO_VOC20[1:21] = np.arange(20, dtype=np.uint8)
_VALID = np.zeros(256, bool)
_VALID[[*range(21), 255]] = True


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_COLOUR_IDS = {int(_packed(np.array(c))): i for i, c in enumerate(generated_palette(21))}
_COLOUR_IDS[int(_packed(np.array(BORDER_COLOUR)))] = 255


def read_voc_mask(path: Path) -> np.ndarray:
    """A VOC mask as raw ids (0 background, 1-20, 255 border), from an index or a class-colour PNG."""
    try:
        with Image.open(path) as img:
            colour = img.mode in ("RGB", "RGBA")
            rgb = np.asarray(img.convert("RGB")) if colour else None
    except OSError as e:
        raise DataError(f"{path}: cannot read the mask ({e})") from None
    if not colour:
        ids = read_label(path)
    else:
        packed = _packed(rgb)
        colours, inverse = np.unique(packed, return_inverse=True)
        unknown = [c for c in colours.tolist() if c not in _COLOUR_IDS]
        if unknown:
            shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:5])
            raise DataError(f"{path}: colours {shown} are not VOC class colours")
        ids = np.array([_COLOUR_IDS[c] for c in colours.tolist()], np.uint8)[inverse].reshape(packed.shape)
    if not _VALID[ids].all():
        raise DataError(f"{path}: values {np.unique(ids[~_VALID[ids]]).tolist()[:10]} are not VOC ids "
                        "(0 = background, 1-20, 255 = border)")
    return ids


def _sources(raw: Path, split: str) -> tuple[Path, list[str], Path]:
    """(mask folder, ids of `split`, the list they came from)."""
    aug, own = raw / "SegmentationClassAug", raw / "SegmentationClass"
    if aug.is_dir() and (raw / f"{split}.txt").is_file():
        return aug, read_names(raw / f"{split}.txt", f"VOC {split} list"), raw / f"{split}.txt"
    listing = raw / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not own.is_dir() and not aug.is_dir():
        raise DataError(f"VOC masks not found in {raw}: expected SegmentationClassAug/ or SegmentationClass/")
    if not listing.is_file():
        raise DataError(f"VOC {split} list not found: {listing} (or {raw / f'{split}.txt'} with "
                        "SegmentationClassAug/)")
    return (own if own.is_dir() else aug), read_names(listing, f"VOC {split} list"), listing


def prepare_voc(raw: Path, out: Path, splits: Sequence[str] = SPLITS, progress: bool = True) -> Report:
    raw = enter(raw, "VOC2012", "VOCdevkit/VOC2012")
    images = raw / "JPEGImages"
    if not images.is_dir():
        raise DataError(f"VOC images not found: {images}")
    copy_images = out.resolve() != raw.resolve()
    report = Report()
    for split in splits:
        masks, ids, listing = _sources(raw, split)
        items = []
        for i in ids:
            mask, jpg = masks / f"{i}.png", images / f"{i}.jpg"
            png, linked = out / "annotations_detectron2" / split / f"{i}.png", out / "JPEGImages" / f"{i}.jpg"

            def make(mask=mask, jpg=jpg, png=png, linked=linked):
                if not mask.is_file() or not jpg.is_file():
                    raise DataError(f"{listing} lists {mask.stem!r} but {mask if not mask.is_file() else jpg} is missing")
                label = _TO_VOC20[read_voc_mask(mask)]
                if (label == 255).all():
                    return False
                if copy_images:
                    link_or_copy(jpg, linked)
                save_png(label, png)
                return True

            items.append(Item(i, (png, linked) if copy_images else (png,), make))
        run_items(items, split, report, progress, f"voc {split}")
    return report
