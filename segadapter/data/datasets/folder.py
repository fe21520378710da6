"""A generic dataset: a folder of images, a folder of class-index masks, and a class-names file.

Default layout (any of the listed folder names works; pass `img_dir` / `ann_dir` to override):

    ROOT/classes.txt            one class name per line, in id order (blank / '#' lines skipped)
    ROOT/palette.txt            optional: one colour per line, "R G B" or "R,G,B" or "#rrggbb"
    ROOT/images/{split}/a.jpg   ROOT/masks/{split}/a.png   (matched by file stem)
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError
from ..base import FilePairDataset, Transform
from ..layout import IMAGE_EXTS, check_split, find_files, pair_files, require_dir
from ..metainfo import Palette, generated_palette
from .ade20k import reduce_zero_label

_IMAGE_DIRS = ("images/{split}", "{split}/images", "img_dir/{split}")
_MASK_DIRS = ("masks/{split}", "labels/{split}", "annotations/{split}", "ann_dir/{split}",
              "{split}/masks", "{split}/labels")


def read_class_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"class-names file not found: {path} (one class name per line)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataError(f"class-names file {path} lists no classes")
    if len(names) > 255:
        raise DataError(f"{path} lists {len(names)} classes; at most 255 fit (255 = ignore)")
    return names


_HEX = re.compile(r"#([0-9a-fA-F]{6})")


def read_palette(path: Path, num_classes: int) -> Palette:
    colours: Palette = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        hex_code = _HEX.fullmatch(line)
        if hex_code:
            colours.append(tuple(int(hex_code[1][i:i + 2], 16) for i in (0, 2, 4)))  # type: ignore[arg-type]
            continue
        if not line or line.startswith("#"):  # blank or comment
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise DataError(f"{path}:{n}: expected a colour 'R G B' (0-255 each), got {line!r}")
        colours.append(tuple(int(p) for p in parts))  # type: ignore[arg-type]
    if len(colours) < num_classes:
        raise DataError(f"{path} has {len(colours)} colours for {num_classes} classes")
    return colours


def _pick_dir(root: Path, given: str | Path | None, candidates: Sequence[str], split: str,
              what: str) -> Path:
    if given is not None:
        return require_dir(root / str(given).format(split=split), what)
    tried = [root / c.format(split=split) for c in candidates]
    for d in tried:
        if d.is_dir():
            return d
    raise DataError(f"{what} not found; looked for {', '.join(str(d) for d in tried)}")


class FolderDataset(FilePairDataset):
    """Images + masks matched by stem, classes from a text file (or the `classes` argument)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
        img_dir: str | Path | None = None,
        ann_dir: str | Path | None = None,
        classes: Sequence[str] | str | Path | None = None,
        palette: Palette | str | Path | None = None,
        reduce_zero_label: bool = False,
    ) -> None:
        root = require_dir(Path(root), "dataset root folder")
        split = check_split(split)
        if classes is None or isinstance(classes, (str, Path)):
            names = read_class_names(root / (classes or "classes.txt"))
        else:
            names = [str(c) for c in classes]
        if palette is None and (root / "palette.txt").is_file():
            palette = "palette.txt"  # relative to root, as a given name is
        if isinstance(palette, (str, Path)):
            colours = read_palette(root / palette, len(names))
        else:
            colours = list(palette) if palette is not None else generated_palette(len(names))
        images_at = _pick_dir(root, img_dir, _IMAGE_DIRS, split, f"{split} image folder")
        masks_at = _pick_dir(root, ann_dir, _MASK_DIRS, split, f"{split} mask folder")
        images = find_files(images_at, IMAGE_EXTS, "images")
        masks = find_files(masks_at, IMAGE_EXTS, "masks")
        pairs = pair_files(images, masks, lambda p: p.stem, lambda p: p.stem,
                           lambda p: masks_at / (p.stem + ".png"))
        self.reduce_zero_label = reduce_zero_label
        super().__init__(pairs, names, colours, transform, seed)

    def map_label(self, label: np.ndarray, label_path: Path) -> np.ndarray:
        return reduce_zero_label(label) if self.reduce_zero_label else label
