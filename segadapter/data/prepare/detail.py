"""PASCAL-in-Detail's class masks, read from `trainval_merged.json` without the `detail` package:
what `Detail(json, JPEGImages, phase).getImgs()` lists and what `getMask(img)` returns for each
(the category id of the annotation covering a pixel, 0 where none).

Two behaviours of the official API are kept because they decide which images and annotations the
official converters see: its index drops entries from the lists it is iterating (so the entry right
after each dropped one is never looked at, neither kept nor indexed), and later annotations paint
over earlier ones. We infer, without the data to check it, that the first is why SAN's logs count
5,104 val images where PASCAL Context has 5,105.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ...errors import DataError
from .raw import load_json

PHASES = ("train", "val")


def visited(entries: Iterable[Any], keep: Callable[[Any], bool]) -> list[Any]:
    """The entries the official index keeps: a `for` loop that removes the unwanted entry from the
    list it walks, so the walk jumps over the entry that moves into the freed place."""
    entries, kept, i = list(entries), [], 0
    while i < len(entries):
        if keep(entries[i]):
            kept.append(entries[i])
        else:
            del entries[i]
        i += 1
    return kept


def decode_rle(segmentation: dict, where: str) -> np.ndarray:
    """A COCO run-length-encoded mask (as the json stores it) -> (H, W) uint8 0/1."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise DataError("reading PASCAL-in-Detail masks needs pycocotools: pip install 'segadapter[prepare]'") from None
    try:
        rle = dict(segmentation)
        h, w = rle["size"]
        if isinstance(rle.get("counts"), list):  # uncompressed counts
            rle = coco_mask.frPyObjects(rle, h, w)
        elif isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        with warnings.catch_warnings():  # pycocotools' own numpy-2 deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            return coco_mask.decode(rle)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: not a run-length-encoded mask ({e!r})") from None


class DetailAnnotations:
    """The json's images and segmentation annotations, indexed per phase as the official API does."""

    def __init__(self, json_path: Path):
        self.path = json_path
        data = load_json(json_path)
        if not isinstance(data, dict) or "images" not in data or "annos_segmentation" not in data:
            raise DataError(f"{json_path}: not a PASCAL-in-Detail annotation file (no 'images' / "
                            "'annos_segmentation')")
        self.data = data

    def split(self, phase: str) -> list[tuple[dict, list[dict]]]:
        """[(image record, its annotations in painting order)] of `phase`, in the API's order."""
        images = visited(self.data["images"], lambda im: im.get("phase") == phase)
        ids = {im["image_id"] for im in images}
        annotations: dict[Any, list[dict]] = defaultdict(list)
        for ann in visited(self.data["annos_segmentation"], lambda a: a.get("image_id") in ids):
            annotations[ann["image_id"]].append(ann)
        return [(im, annotations[im["image_id"]]) for im in images]

    def class_mask(self, image: dict, annotations: list[dict]) -> np.ndarray:
        """`getMask(img)`: int32 (H, W), each pixel the category id of the last annotation covering it."""
        where = f"{self.path} (image {image.get('file_name')})"
        mask = np.zeros((int(image["height"]), int(image["width"])), dtype=np.int32)
        for ann in annotations:
            m = decode_rle(ann["segmentation"], where)
            if m.shape != mask.shape:
                raise DataError(f"{where}: annotation {ann.get('id')} is {m.shape[1]}x{m.shape[0]}, the image "
                                f"{mask.shape[1]}x{mask.shape[0]}")
            mask[m != 0] = int(ann["category_id"])
        return mask
