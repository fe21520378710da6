"""Tiny raw downloads in the official formats, written by the tests themselves (no network): VOC
2012, PASCAL Context (Detail json + 459-class .mat files), ADE20K_2021_17_01 (index pickle +
`_seg.png`) and COCO-Stuff-10K v1.1 (.mat). Each builder returns the raw label arrays it wrote, so
a test can derive the expected labels from the spec's mapping on its own."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "data" / "fixtures"
ADE_VAL = FIXTURES / "ade20k" / "ADEChallengeData2016" / "images" / "validation"
VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
               (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128),
               (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0),
               (128, 192, 0), (0, 64, 128)]  # VOC's colour map, ids 0-20 (VOCdevkit's labelcolormap)
VOC_BORDER = (224, 224, 192)


def photo(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def blocks(h: int, w: int, values, seed: int) -> np.ndarray:
    """A label map of 4x4-pixel blocks drawing from `values` (every value used at least once)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    grid = rng.choice(values, ((h + 3) // 4, (w + 3) // 4))
    grid.flat[: len(values)] = values
    return np.kron(grid, np.ones((4, 4), grid.dtype))[:h, :w]


# -- VOC 2012 ----------------------------------------------------------------------------------

def voc_palette_png(ids: np.ndarray, path: Path) -> None:
    img = Image.fromarray(ids.astype(np.uint8), "P")
    flat = [c for rgb in VOC_COLOURS for c in rgb] + [0] * (3 * (256 - 21))
    flat[3 * 255: 3 * 256] = VOC_BORDER
    img.putpalette(flat)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def voc_colour_png(ids: np.ndarray, path: Path) -> None:
    lut = np.zeros((256, 3), np.uint8)
    lut[:21] = VOC_COLOURS
    lut[255] = VOC_BORDER
    Image.fromarray(lut[ids]).save(path)


def make_voc(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """VOC2012 as the tar holds it: JPEGImages, SegmentationClass (palette PNGs; one train mask a
    class-colour RGB PNG), ImageSets/Segmentation/{train,val}.txt. One val mask has no class pixel."""
    voc = root / "VOC2012"
    masks: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}}
    specs = {"train": [("2007_000032", 24, 32), ("2007_000039", 20, 28)],
             "val": [("2007_000033", 24, 36), ("2007_000042", 16, 20), ("2007_000061", 28, 24)]}
    for split, entries in specs.items():
        for n, (name, h, w) in enumerate(entries):
            photo(voc / "JPEGImages" / f"{name}.jpg", h, w, seed=n)
            ids = blocks(h, w, [0, 255] if name == "2007_000042" else [0, 1, 7, 15, 20, 255], seed=n + 10)
            masks[split][name] = ids
            if name == "2007_000039":
                voc_colour_png(ids, voc / "SegmentationClass" / f"{name}.png")
            else:
                voc_palette_png(ids, voc / "SegmentationClass" / f"{name}.png")
        lists = voc / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("".join(f"{name}\n" for name, _, _ in entries))
    photo(voc / "JPEGImages" / "2008_000001.jpg", 8, 8, seed=99)  # an image of no split (detection only)
    return masks


# -- PASCAL Context ------------------------------------------------------------------------------

def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def make_pcontext(root: Path, category_ids=(2, 397, 458, 19)) -> dict:
    """VOC2010 JPEGImages + trainval_merged.json (Detail format: images with a phase, RLE
    segmentation annotations) + trainval/<name>.mat (459-class LabelMap, uint16)."""
    from scipy.io import savemat

    phases = [("2008_000002", "val"), ("2008_000003", "val"), ("2008_000007", "train"),
              ("2008_000008", "val"), ("2008_000009", "val"), ("2008_000010", "train")]
    images, annotations, label_maps = [], [], {}
    rng = np.random.default_rng(3)
    for n, (name, phase) in enumerate(phases):
        h, w = 20 + 4 * n, 24 + 2 * n
        photo(root / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{name}.jpg", h, w, seed=n)
        images.append({"file_name": f"{name}.jpg", "image_id": 100 + n, "phase": phase, "height": h, "width": w})
        for k in range(3):  # overlapping rectangles: later ones paint over earlier ones
            m = np.zeros((h, w), np.uint8)
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[y: y + h // 2, x: x + w // 2] = 1
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + n, "segmentation": rle(m),
                                "category_id": int(category_ids[(n + k) % len(category_ids)]), "iscrowd": 0})
        lm = blocks(h, w, [0, 1, 2, 397, 431, 459] if n == 0 else [1, 2, 397, 431, 459], seed=n).astype(np.uint16)
        (root / "trainval").mkdir(exist_ok=True)
        savemat(root / "trainval" / f"{name}.mat", {"LabelMap": lm})
        label_maps[name] = lm
    # interleaved as a real json may be, so the API's skipping also hits annotations it would keep
    annotations = [annotations[i] for i in np.random.default_rng(7).permutation(len(annotations))]
    data = {"images": images, "annos_segmentation": annotations, "annos_occlusion": [], "parts": [],
            "categories": [{"category_id": c, "name": str(c)} for c in sorted(set(category_ids))]}
    import json

    (root / "trainval_merged.json").write_text(json.dumps(data))
    return {"images": images, "annotations": annotations, "label_maps": label_maps}  # in the json's order


# -- ADE20K-Full ---------------------------------------------------------------------------------

def seg_png(classes: np.ndarray, path: Path, seed: int) -> None:
    """ADE20K's encoding: class = R / 10 * 256 + G (R carries the class's high part times 10, plus
    0-9 that the decoding drops); B is the instance."""
    rng = np.random.default_rng(seed)
    r = (classes // 256) * 10 + rng.integers(0, 10, classes.shape)
    rgb = np.stack([r, classes % 256, rng.integers(0, 256, classes.shape)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


ADE_FULL_ENTRIES = [("validation/street", "ADE_val_00000001.jpg", (512, 683)),
                    ("validation/kitchen", "ADE_val_00000002.jpg", (364, 500)),
                    ("validation/street", "ADE_val_00000099.jpg", (600, 800)),
                    ("training/bedroom", "ADE_train_00000001.jpg", (40, 60)),
                    ("training/bedroom", "ADE_frame_00000007.jpg", (30, 50))]
SMALL_ADE_FULL_ENTRIES = [("validation/street", "ADE_val_00000501.jpg", (48, 64)),
                          ("validation/kitchen", "ADE_val_00000502.jpg", (40, 56)),
                          ("training/bedroom", "ADE_train_00000001.jpg", (40, 60))]


def make_ade_full(root: Path, raw_values, entries=ADE_FULL_ENTRIES) -> dict[str, np.ndarray]:
    """ADE20K_2021_17_01 with index_ade20k.pkl (folder/filename lists and a numpy array, as the
    release) and images/ADE/{training,validation}/<scene>/ADE_*.jpg + _seg.png. The validation
    images are the real ADE20K fixtures where ../shared has them (of the default entries, one is
    larger than 512 on its short side)."""
    ade = root / "ADE20K_2021_17_01"
    classes = {}
    for n, (folder, name, (h, w)) in enumerate(entries):
        target = ade / "images" / "ADE" / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        real = ADE_VAL / name
        if real.is_file():
            target.write_bytes(real.read_bytes())
            w, h = Image.open(real).size
        else:
            photo(target, h, w, seed=n)
        cls = blocks(h, w, raw_values, seed=n).astype(np.int64)
        seg_png(cls, target.with_name(name.replace(".jpg", "_seg.png")), seed=n)
        classes[name] = cls
    index = {"folder": [f"ADE20K_2021_17_01/images/ADE/{f}" for f, _, _ in entries],
             "filename": [name for _, name, _ in entries],
             "objectPresence": np.zeros((3, len(entries)), np.int32), "scene": ["street"] * len(entries)}
    (ade / "index_ade20k.pkl").write_bytes(pickle.dumps(index))
    return classes


# -- COCO-Stuff-10K ------------------------------------------------------------------------------

def make_coco10k(root: Path, values) -> dict[str, dict[str, np.ndarray]]:
    """cocostuff-10k-v1.1: images/*.jpg, annotations/*.mat (S, uint16 as MATLAB saves it), imageLists."""
    from scipy.io import savemat

    base = root / "cocostuff-10k-v1.1"
    out: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    names = {"train": ["COCO_train2014_000000000077", "COCO_train2014_000000000078"],
             "test": ["COCO_train2014_000000000241"]}
    for split, listed in names.items():
        for n, name in enumerate(listed):
            h, w = 20 + 4 * n, 28
            photo(base / "images" / f"{name}.jpg", h, w, seed=n)
            s = blocks(h, w, values, seed=n + 5).astype(np.uint16)
            (base / "annotations").mkdir(parents=True, exist_ok=True)
            savemat(base / "annotations" / f"{name}.mat", {"S": s, "names": np.array(["x"], dtype=object)})
            out[split][name] = s
        (base / "imageLists").mkdir(exist_ok=True)
        (base / "imageLists" / f"{split}.txt").write_text("".join(f"{x}\n" for x in listed))
    return out
