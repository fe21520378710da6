"""`segadapter prepare ade20k-full`: ADE20K_2021_17_01 to A-847 (MaskFormer's
`prepare_ade20k_full_sem_seg.py`, whose 847-class table SAN registers unchanged).

RAW is ADE20K_2021_17_01 (or the folder holding it) with `index_ade20k.pkl` and images/ADE/...;
every (folder, filename) of the index is converted: the split is `validation` when the second
`_`-separated field of the name is `val`, else `training`; the class of a pixel of `<name>_seg.png`
is R // 10 * 256 + G; an image whose short side exceeds 512 is resized to short side 512 (long side
rounded; image bilinear, class map nearest, both as OpenCV's resize in the script); class values
of the 847-entry table become their trainIds, all others 65535.

Writes OUT/images_detectron2/<split>/<filename> (re-encoded JPEG, PIL's default quality, as the
script) and OUT/annotations_detectron2/<split>/<name>.tif (uint16).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import DataError
from ..io import read_image
from ..layout import enter
from .files import save_jpeg, save_tiff
from .raw import load_index_pickle
from .tables import ADE20K_FULL_IDS
from .work import Item, Report, lookup_table, run_items

SPLITS = ("training", "validation")
MAX_SHORT_SIDE = 512
IGNORE = 65535
_TRAIN_IDS = lookup_table(ADE20K_FULL_IDS, 26 * 256, IGNORE, np.uint16)  # every R // 10 * 256 + G


def split_of(filename: str) -> str:
    fields = filename.split("_")
    return "validation" if len(fields) > 1 and fields[1] == "val" else "training"


def class_map(seg_png: Path) -> np.ndarray:
    """ADE20K's encoding of the object class in `_seg.png`: R // 10 * 256 + G (int32)."""
    rgb = read_image(seg_png)
    return (rgb[..., 0].astype(np.int32) // 10) * 256 + rgb[..., 1].astype(np.int32)


def target_size(h: int, w: int) -> tuple[int, int] | None:
    """(h, w) after the script's resize, or None when the short side is at most 512."""
    if w >= h > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(w / float(h) * MAX_SHORT_SIDE)
    if h >= w > MAX_SHORT_SIDE:
        return round(h / float(w) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's INTER_NEAREST: destination pixel x takes source floor(x / (dst / src))."""
    (h, w), (sh, sw) = size, label.shape
    ys = np.minimum(np.floor(np.arange(h) * (1.0 / (h / sh))).astype(np.int64), sh - 1)
    xs = np.minimum(np.floor(np.arange(w) * (1.0 / (w / sw))).astype(np.int64), sw - 1)
    return label[ys[:, None], xs[None, :]]


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear on pixel centres without antialiasing (OpenCV's INTER_LINEAR, to +-1 grey level)."""
    x = torch.from_numpy(np.array(image, dtype=np.float32))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0]
    y = y[0] if image.ndim == 2 else y.permute(1, 2, 0)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def _read_photo(path: Path) -> np.ndarray:
    """The JPEG as stored (grey stays grey, as the script's np.asarray(Image.open(...)))."""
    with Image.open(path) as img:
        if img.mode == "L":
            return np.asarray(img).copy()
    return read_image(path)


def _index_entries(raw: Path) -> list[tuple[str, str]]:
    path = raw / "index_ade20k.pkl"
    index = load_index_pickle(path)
    try:
        folders, names = list(index["folder"]), list(index["filename"])
    except (KeyError, TypeError):
        raise DataError(f"{path}: expected a dict with 'folder' and 'filename' lists") from None
    if len(folders) != len(names):
        raise DataError(f"{path}: {len(folders)} folders for {len(names)} file names")
    return [(str(f), str(n)) for f, n in zip(folders, names)]


def _locate(raw: Path, folder: str, filename: str) -> Path:
    """The index's folders start with ADE20K_2021_17_01/ (relative to the folder holding it)."""
    parts = Path(folder).parts
    for candidate in (raw.parent / folder, raw / folder, raw.joinpath(*parts[1:]) if parts else raw):
        if (candidate / filename).is_file():
            return candidate / filename
    raise DataError(f"{raw / 'index_ade20k.pkl'} lists {folder}/{filename}, which is not under {raw.parent}")


def convert_one(photo: Path, jpg: Path, tif: Path) -> None:
    seg = photo.with_name(photo.name[: -len(photo.suffix)] + "_seg.png")
    image, classes = _read_photo(photo), class_map(seg)
    if image.shape[:2] != classes.shape:
        raise DataError(f"{seg} is {classes.shape[1]}x{classes.shape[0]}, its image {photo} "
                        f"{image.shape[1]}x{image.shape[0]}")
    size = target_size(*classes.shape)
    if size is not None:
        image, classes = resize_bilinear(image, size), resize_nearest(classes, size)
    save_jpeg(image, jpg)
    save_tiff(_TRAIN_IDS[classes], tif)


def prepare_ade20k_full(raw: Path, out: Path, splits: Sequence[str] = SPLITS, progress: bool = True) -> Report:
    raw = enter(raw, "ADE20K_2021_17_01")
    wanted = {"train": "training", "val": "validation"}
    splits = [wanted.get(s, s) for s in splits]
    entries = _index_entries(raw)
    report = Report()
    for split in splits:
        items = []
        for folder, filename in entries:
            if split_of(filename) != split:
                continue
            jpg = out / "images_detectron2" / split / filename
            tif = out / "annotations_detectron2" / split / (Path(filename).stem + ".tif")
            items.append(Item(filename, (jpg, tif),
                              lambda f=folder, n=filename, j=jpg, t=tif: convert_one(_locate(raw, f, n), j, t)))
        run_items(items, split, report, progress, f"ade20k-full {split}")
    return report
