"""`segadapter prepare coco-stuff10k`: cocostuff-10k-v1.1 to mmseg's layout (mmseg's and SegViT's
`coco_stuff10k.py`).

RAW holds images/<name>.jpg, annotations/<name>.mat (variable S: 0 = unlabeled, 1-182 = COCO
category ids) and imageLists/{train,test}.txt. Each S becomes uint8 with the 171 used ids mapped
to 1-171 in order and 0 kept (the reader's reduce_zero_label then gives 0-170 and 255); an id
outside the table is an error naming the file (mmseg would leave it unchanged). Writes
OUT/images/{train2014,test2014}/<name>.jpg and OUT/annotations/{...}/<name>_labelTrainIds.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError
from ..layout import enter
from .files import link_or_copy, save_png
from .raw import load_mat_array, read_names
from .tables import COCO_STUFF171_IDS
from .work import Item, Report, run_items

SPLITS = ("train", "test")
_OUT_DIRS = {"train": "train2014", "test": "test2014"}
MAX_RAW = 182
# .mat ids are COCO category ids (the 164k table's values + 1); 0 (unlabeled) stays 0
_TABLE = np.zeros(MAX_RAW + 1, np.uint8)
_TABLE[[raw + 1 for raw in COCO_STUFF171_IDS]] = np.arange(1, 172, dtype=np.uint8)
_KNOWN = np.zeros(MAX_RAW + 1, bool)
_KNOWN[[0, *(raw + 1 for raw in COCO_STUFF171_IDS)]] = True


def train_ids(s: np.ndarray, where: Path) -> np.ndarray:
    values = np.unique(s)
    bad = values[(values < 0) | (values > MAX_RAW) | (values != np.round(values))]
    if bad.size == 0:
        ints = values.astype(np.int64)
        bad = values[~_KNOWN[ints]]
    if bad.size:
        raise DataError(f"{where}: label ids {bad.tolist()[:10]} are not COCO-Stuff classes (0 = unlabeled, "
                        "or one of the 171 category ids)")
    return _TABLE[s.astype(np.int64)]


def prepare_coco_stuff10k(raw: Path, out: Path, splits: Sequence[str] = SPLITS, progress: bool = True) -> Report:
    raw = enter(raw, "cocostuff-10k-v1.1")
    report = Report()
    for split in splits:
        names = read_names(raw / "imageLists" / f"{split}.txt", f"COCO-Stuff-10K {split} list")
        sub = _OUT_DIRS[split]
        items = []
        for name in names:
            jpg, png = out / "images" / sub / f"{name}.jpg", out / "annotations" / sub / f"{name}_labelTrainIds.png"

            def make(name=name, jpg=jpg, png=png):
                mat, photo = raw / "annotations" / f"{name}.mat", raw / "images" / f"{name}.jpg"
                if not photo.is_file():
                    raise DataError(f"image {photo} is missing (listed in {raw / 'imageLists' / f'{split}.txt'})")
                label = train_ids(load_mat_array(mat, "S"), mat)
                link_or_copy(photo, jpg)
                save_png(label, png)

            items.append(Item(name, (jpg, png), make))
        run_items(items, sub, report, progress, f"coco-stuff10k {sub}")
    return report
