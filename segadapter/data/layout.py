"""Finding and pairing files on disk, failing early with a message that names the folder or file."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from ..errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path}")
    return path


def list_files(folder: Path, suffixes: Iterable[str], recursive: bool = False) -> list[Path]:
    """Files in `folder` whose name ends with one of `suffixes` (case-insensitive), sorted."""
    suffixes = tuple(s.lower() for s in suffixes)
    walk = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in walk if p.is_file() and p.name.lower().endswith(suffixes))


def find_files(folder: Path, suffixes: Iterable[str], what: str, recursive: bool = False) -> list[Path]:
    """Like `list_files`, but an empty result is an error naming the folder."""
    suffixes = tuple(suffixes)
    files = list_files(folder, suffixes, recursive)
    if not files:
        raise DataError(f"no {what} found in {folder} (looked for *{', *'.join(suffixes)})")
    return files


def pair_by_name(img_dir: Path, ann_dir: Path, image_exts: Iterable[str], label_suffix: str,
                 label_what: str) -> list[tuple[Path, Path]]:
    """Images in `img_dir` with labels in `ann_dir` named after them (`NAME.jpg` -> `NAME` +
    `label_suffix`), the layout most datasets share; errors as `find_files` / `pair_files`."""
    images = find_files(img_dir, image_exts, "images")
    labels = find_files(ann_dir, (label_suffix,), label_what)
    return pair_files(images, labels, lambda p: p.stem, lambda p: p.name[: -len(label_suffix)],
                      lambda p: ann_dir / (p.stem + label_suffix))


def pair_files(
    images: list[Path],
    labels: list[Path],
    image_key: Callable[[Path], str],
    label_key: Callable[[Path], str],
    expected_label: Callable[[Path], Path],
) -> list[tuple[Path, Path]]:
    """Match images to labels by key; any image without a label, or label without an image, is an error."""
    by_key: dict[str, Path] = {}
    for lbl in labels:
        k = label_key(lbl)
        if k in by_key:
            raise DataError(f"two labels for the same image: {by_key[k]} and {lbl}")
        by_key[k] = lbl
    pairs, seen = [], set()
    for img in images:
        k = image_key(img)
        if k in seen:
            raise DataError(f"two images with the same name {k!r} (e.g. {img}); names must be unique")
        seen.add(k)
        lbl = by_key.get(k)
        if lbl is None:
            missing = sum(1 for i in images if image_key(i) not in by_key)
            raise DataError(
                f"image {img} has no label (expected {expected_label(img)})"
                + (f"; {missing - 1} more images lack labels" if missing > 1 else "")
            )
        pairs.append((img, lbl))
    orphans = [lbl for k, lbl in by_key.items() if k not in seen]
    if orphans:
        raise DataError(
            f"label {orphans[0]} has no matching image"
            + (f"; {len(orphans) - 1} more labels lack images" if len(orphans) > 1 else "")
        )
    return pairs


def enter(root: Path, *inner: str) -> Path:
    """`root` itself, or the first of its sub-folders `inner` that exists: users point at either the
    dataset's own folder or the folder holding it (e.g. `datasets/` or `datasets/VOC2012`)."""
    for name in inner:
        if (root / name).is_dir():
            return root / name
    return root


def read_id_list(path: Path, what: str) -> list[str]:
    """The image ids of a split file (one a line, blank lines skipped); a missing or empty file is
    an error naming it."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{what} {path} lists no images")
    return ids


def pairs_from_ids(ids: Iterable[str], image_of: Callable[[str], Path], label_of: Callable[[str], Path],
                   listed_in: Path) -> list[tuple[Path, Path]]:
    """(image, label) per listed id; the first missing file is an error naming it and the list."""
    pairs = []
    for i in ids:
        for path, what in ((image_of(i), "image"), (label_of(i), "label")):
            if not path.is_file():
                raise DataError(f"{listed_in} lists {i!r} but its {what} {path} is missing")
        pairs.append((image_of(i), label_of(i)))
    return pairs
