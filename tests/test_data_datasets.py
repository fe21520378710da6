"""Datasets on the real ADE20K / Cityscapes fixtures, generated layouts, and bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segadapter.data.registry import DATASET_NAMES, build_dataset, get_classes, get_palette
from segadapter.data.transforms import build_transforms
from segadapter.errors import DataError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "data" / "fixtures"
ADE = FIXTURES / "ade20k"
CITY = FIXTURES / "cityscapes"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"fixtures not found at {FIXTURES}")


def _raw(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _check_item(item, num_classes):
    img, lbl = item["image"], item["label"]
    assert img.dtype == torch.float32 and img.ndim == 3 and img.shape[0] == 3
    assert lbl.dtype == torch.int64 and lbl.shape == img.shape[1:]
    assert isinstance(item["path"], str)
    values = set(lbl.unique().tolist())
    assert values <= set(range(num_classes)) | {255}
    return values


# --- ADE20K -------------------------------------------------------------------------------------
@needs_fixtures
def test_ade20k_reduce_zero_label_matches_raw_png():
    ds = build_dataset("ade20k", ADE, "val")
    assert len(ds) == 3 and len(ds.classes) == 150 and len(ds.palette) == 150
    assert ds.ignore_index == 255 and ds.classes[0] == "wall" and ds.palette[0] == (120, 120, 120)
    for i in range(len(ds)):
        item = ds[i]
        _check_item(item, 150)
        raw = _raw(ADE / "ADEChallengeData2016/annotations/validation" / (Path(item["path"]).stem + ".png"))
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        np.testing.assert_array_equal(item["label"].numpy(), expected)
        assert (raw == 0).any()  # the fixture really exercises the 0 -> 255 case


@needs_fixtures
def test_ade20k_root_may_be_inner_folder_and_train_missing():
    assert len(build_dataset("ade20k", ADE / "ADEChallengeData2016", "val")) == 3
    with pytest.raises(DataError, match="training"):
        build_dataset("ade20k", ADE, "train")  # the fixture has no training folder


# --- Cityscapes ---------------------------------------------------------------------------------
@needs_fixtures
def test_cityscapes_train_ids():
    ds = build_dataset("cityscapes", CITY, "val")
    assert len(ds) == 1 and len(ds.classes) == 19 and ds.classes[0] == "road"
    item = ds[0]
    values = _check_item(item, 19)
    raw = _raw(next(CITY.glob("gtFine/val/*/*_labelTrainIds.png")))
    np.testing.assert_array_equal(item["label"].numpy(), raw)
    assert 255 in values and item["image"].shape == (3, 128, 256)


@needs_fixtures
def test_cityscapes_converts_label_ids_when_train_ids_missing(tmp_path):
    shutil.copytree(CITY / "leftImg8bit", tmp_path / "leftImg8bit")
    gt = tmp_path / "gtFine/val/frankfurt"
    gt.mkdir(parents=True)
    src = next(CITY.glob("gtFine/val/*/*_labelIds.png"))
    shutil.copy(src, gt / src.name)
    ds = build_dataset("cityscapes", tmp_path, "val")
    assert ds.pairs[0][1].name.endswith("_labelIds.png")
    converted = ds[0]["label"].numpy()
    raw_ids = _raw(src)
    # The fixture's two label files were downscaled separately, so they differ on a few boundary
    # pixels: every raw id must map to the train id it carries most often in the official file,
    # and the maps must agree almost everywhere.
    reference = _raw(next(CITY.glob("gtFine/val/*/*_labelTrainIds.png")))
    for label_id in np.unique(raw_ids):
        at = raw_ids == label_id
        majority = np.bincount(reference[at]).argmax()
        assert (converted[at] == majority).all(), f"labelId {label_id}"
    assert (converted == reference).mean() > 0.99
    assert set(np.unique(converted[raw_ids <= 6])) == {255}  # void/ego-vehicle ids are ignored


# --- generated layouts --------------------------------------------------------------------------
def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _img(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _lbl(values, h=12, w=16):
    return np.resize(np.asarray(values, np.uint8), (h, w))


def _coco(root: Path, label_values=(0, 170, 255)):
    _save(root / "images/val2017/000000000139.jpg", _img())
    _save(root / "annotations/val2017/000000000139_labelTrainIds.png", _lbl(label_values))
    _save(root / "annotations/val2017/000000000139.png", _lbl([7]))  # raw map: must be ignored
    return root


def test_coco_stuff(tmp_path):
    ds = build_dataset("coco-stuff164k", _coco(tmp_path), "val")
    assert len(ds) == 1 and len(ds.classes) == 171 and len(set(ds.palette)) == 171
    assert set(ds[0]["label"].unique().tolist()) == {0, 170, 255}


def test_coco_stuff_out_of_range_label(tmp_path):
    ds = build_dataset("coco-stuff164k", _coco(tmp_path, (3, 171, 200)), "val")
    with pytest.raises(DataError, match="000000000139_labelTrainIds.png") as e:
        ds[0]
    assert "171" in str(e.value) and "200" in str(e.value) and "3]" not in str(e.value)


def _folder(root: Path, names=("a", "b"), classes="bg\nroad\ncar\n"):
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    for i, n in enumerate(names):
        _save(root / f"images/train/{n}.jpg", _img(seed=i))
        _save(root / f"masks/train/{n}.png", _lbl([0, 1, 2, 255]))
    return root


def test_folder_dataset_and_generated_palette(tmp_path):
    ds = build_dataset("folder", _folder(tmp_path), "train")
    assert ds.classes == ["bg", "road", "car"] and len(ds) == 2
    assert len(set(ds.palette)) == 3
    assert build_dataset("folder", tmp_path, "train").palette == ds.palette  # deterministic
    assert set(ds[1]["label"].unique().tolist()) == {0, 1, 2, 255}
    assert Path(ds[1]["path"]).name == "b.jpg"


def test_folder_palette_file_and_class_list(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    (root / "palette.txt").write_text("0 0 0\n#ff0000\n1,2,3\n")
    ds = build_dataset("folder", root, "train", classes=["x", "y", "z"])
    assert ds.classes == ["x", "y", "z"] and ds.palette == [(0, 0, 0), (255, 0, 0), (1, 2, 3)]
    monkeypatch.chdir(root.parent)  # a relative root finds its palette.txt too (was read from root/root/)
    assert build_dataset("folder", Path(root.name), "train", classes=["x", "y", "z"]).palette == ds.palette


def test_folder_missing_mask_names_image(tmp_path):
    root = _folder(tmp_path)
    (root / "masks/train/b.png").unlink()
    with pytest.raises(DataError, match=r"b\.jpg has no label"):
        build_dataset("folder", root, "train")


def test_folder_orphan_mask(tmp_path):
    root = _folder(tmp_path)
    _save(root / "masks/train/c.png", _lbl([0]))
    with pytest.raises(DataError, match=r"c\.png has no matching image"):
        build_dataset("folder", root, "train")


def test_folder_missing_classes_file(tmp_path):
    root = _folder(tmp_path)
    (root / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt"):
        build_dataset("folder", root, "train")


def _camvid_like(root: Path):
    for split in ("train", "val"):
        _save(root / split / "f1.png", _img())
        _save(root / f"{split}annot" / "f1.png", _lbl([0, 10, 11]))
    return root


def test_camvid_layout_void_to_ignore(tmp_path):
    ds = build_dataset("camvid", _camvid_like(tmp_path), "val")
    assert ds.classes[10] == "bicyclist" and ds.palette[4] == (60, 40, 222)
    assert set(ds[0]["label"].unique().tolist()) == {0, 10, 255}


def test_size_mismatch_names_both_files(tmp_path):
    root = _camvid_like(tmp_path)
    _save(root / "valannot/f1.png", _lbl([0], h=10, w=16))
    ds = build_dataset("camvid", root, "val")
    with pytest.raises(DataError) as e:
        ds[0]
    msg = str(e.value)
    assert "val/f1.png" in msg and "valannot/f1.png" in msg and "16x12" in msg and "16x10" in msg


def test_camvid_out_of_range_label(tmp_path):
    root = _camvid_like(tmp_path)
    _save(root / "valannot/f1.png", _lbl([0, 12, 40]))
    with pytest.raises(DataError, match=r"valannot/f1\.png.*\[12, 40\]"):
        build_dataset("camvid", root, "val")[0]


def test_truncated_file_in_dataset(tmp_path):
    root = _camvid_like(tmp_path)
    f = root / "val/f1.png"
    _save(f, np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8))
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"val/f1\.png"):
        build_dataset("camvid", root, "val")[0]


@pytest.mark.parametrize("name", ["camvid", "ade20k", "cityscapes", "coco-stuff164k", "folder"])
def test_missing_root_and_split(tmp_path, name):
    with pytest.raises(DataError, match="nowhere"):
        build_dataset(name, tmp_path / "nowhere", "train")
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(DataError, match=str(tmp_path)):
        build_dataset(name, tmp_path, "train")


def test_empty_folder_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(DataError, match=r"no images found in .*train"):
        build_dataset("camvid", tmp_path, "train")


def test_bad_name_split_and_option(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        build_dataset("pascal", tmp_path, "train")
    with pytest.raises(DataError, match="split"):
        build_dataset("synthetic", None, "training")
    with pytest.raises(DataError, match="bogus"):
        build_dataset("synthetic", None, "train", bogus=1)


# --- synthetic ----------------------------------------------------------------------------------
def test_synthetic_deterministic_and_valid():
    a = build_dataset("synthetic", None, "train", size=(48, 64), num_samples=6)
    b = build_dataset("synthetic", None, "train", size=(48, 64), num_samples=6)
    other_seed = build_dataset("synthetic", None, "train", size=(48, 64), num_samples=6, seed=1)
    val = build_dataset("synthetic", None, "val", size=(48, 64), num_samples=6)
    assert len(a) == 6 and a.classes == get_classes("synthetic")
    seen = set()
    for i in range(6):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        seen |= _check_item(x, 5)
        assert x["image"].shape == (3, 48, 64)
    assert len(seen) >= 4
    assert not torch.equal(a[0]["image"], other_seed[0]["image"])
    assert not torch.equal(a[0]["image"], val[0]["image"])


def test_synthetic_with_train_transform_varies_by_epoch():
    ds = build_dataset("synthetic", None, "train", build_transforms(True, crop_size=(32, 32)),
                       size=64, num_samples=2)
    first = ds[0]["image"]
    assert torch.equal(first, ds[0]["image"])
    ds.set_epoch(1)
    assert first.shape == (3, 32, 32) and not torch.equal(first, ds[0]["image"])


def test_metadata_lookup():
    assert set(DATASET_NAMES) == {"camvid", "ade20k", "cityscapes", "coco-stuff164k", "folder", "synthetic",
                                  "voc", "voc21", "pcontext59", "pcontext60", "pcontext459", "ade20k-full",
                                  "coco-stuff10k"}
    assert len(get_classes("ade20k")) == 150 and len(get_palette("ade20k")) == 150
    assert get_palette("cityscapes")[0] == (128, 64, 128) and len(get_classes("coco-stuff164k")) == 171
    assert get_classes("camvid")[3] == "road" and get_palette("camvid")[3] == (128, 64, 128)
    with pytest.raises(DataError, match="classes file"):
        get_classes("folder")
