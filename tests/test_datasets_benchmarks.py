"""The benchmark readers: class names as the official code spells them (checked against the spec's
SHA-256 prefixes, and against the spec's own lists when ../shared is there), palettes, the layouts,
16-bit labels with ignore 65535, and one clear error for a missing split or an unknown id."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raw_datasets import blocks, photo
from segadapter.data import build_dataset, get_classes, get_palette
from segadapter.data.metainfo import ADE20K_DETECTRON2_CLASSES
from segadapter.data.transforms import build_transforms
from segadapter.errors import DataError

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "datasets.md"
# (registry name or list, count, sha256 prefix of the names joined by "\n") - the spec's Appendix A
LISTS = {"voc": (20, "0575f1e3360927e6"), "pcontext59": (59, "1c0546d54360b603"),
         "pcontext459": (459, "c9fe8ff7083d2572"), "ade20k-full": (847, "ee311c5f3b780a16"),
         "coco-stuff10k": (171, "8ea44449837dceb3")}
SPEC_TITLES = {"voc": "VOC-20", "pcontext59": "PC-59", "pcontext459": "PC-459", "ade20k-full": "A-847",
               "coco-stuff10k": "COCO-Stuff-171"}


def _sha(names) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", list(LISTS))
def test_class_names_are_the_official_lists(name):
    count, sha = LISTS[name]
    names = get_classes(name)
    assert len(names) == count and _sha(names) == sha
    palette = get_palette(name)
    assert len(palette) == count and len(set(palette)) == count  # every class its own colour


def test_the_other_name_lists():
    assert _sha(ADE20K_DETECTRON2_CLASSES) == "aaab84ac88c425d4" and len(ADE20K_DETECTRON2_CLASSES) == 150
    voc21, pc60 = get_classes("voc21"), get_classes("pcontext60")
    assert voc21[0] == "background" and voc21[1:] == [("tvmonitor" if n == "tv" else n) for n in get_classes("voc")]
    assert pc60[0] == "background" and pc60[50] == "table" and pc60[1:50] == get_classes("pcontext59")[:49]
    assert get_palette("voc21")[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # VOC's colour map
    assert get_palette("voc")[0] == (128, 0, 0)  # aeroplane keeps its VOC colour without background
    pc459 = get_classes("pcontext459")
    assert pc459[396] == "table" and pc459[430] == "unknown"  # the spec's PC-459 facts


@pytest.mark.skipif(not SPEC.is_file(), reason="../shared/spec absent")
@pytest.mark.parametrize("name", list(SPEC_TITLES))
def test_class_names_equal_the_spec_appendix(name):
    text = SPEC.read_text()
    block = re.search(rf"### {re.escape(SPEC_TITLES[name])}: \d+ names.*?```\n(.*?)```", text, re.S)
    assert get_classes(name) == block.group(1).splitlines()


# -- layouts -------------------------------------------------------------------------------------

def _tif(label: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint16)).save(path)


def _png(label: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def test_pcontext459_reads_16_bit_tiffs_with_ignore_65535(tmp_path):
    root = tmp_path / "pcontext_full"
    label = blocks(12, 16, [0, 255, 256, 396, 458, 65535], seed=1)
    photo(root / "val/image/2008_000002.jpg", 12, 16, seed=0)
    _tif(label, root / "val/label/2008_000002.tif")
    ds = build_dataset("pcontext459", tmp_path, "val")
    assert ds.ignore_index == 65535 and len(ds.classes) == 459
    np.testing.assert_array_equal(ds[0]["label"].numpy(), label)  # 255 and 256 are classes here
    label[0, 0] = 459
    _tif(label, root / "val/label/2008_000002.tif")
    with pytest.raises(DataError, match=r"2008_000002.tif has values \[459\]"):
        ds[0]
    with pytest.raises(DataError, match="PC-459 train image folder not found: .*pcontext_full/train/image"):
        build_dataset("pcontext459", tmp_path, "train")


def test_ade20k_full_layout_and_a_train_crop_of_wide_labels(tmp_path):
    root = tmp_path / "ADE20K_2021_17_01"
    label = blocks(64, 80, [0, 300, 846, 65535], seed=2)
    photo(root / "images_detectron2/validation/ADE_val_00000001.jpg", 64, 80, seed=1)
    _tif(label, root / "annotations_detectron2/validation/ADE_val_00000001.tif")
    ds = build_dataset("ade20k-full", tmp_path, "val")
    assert len(ds) == 1 and ds.ignore_index == 65535 and ds.classes[0] == "wall"
    np.testing.assert_array_equal(ds[0]["label"].numpy(), label)
    crop = build_transforms(True, crop_size=(32, 32), scale=(80, 64), ignore_index=65535)
    train = build_dataset("ade20k-full", root, "val", crop)
    out = train[0]["label"]
    assert out.shape == (32, 32) and set(out.unique().tolist()) <= {0, 300, 846, 65535}
    with pytest.raises(DataError, match="ADE20K-Full train image folder not found"):
        build_dataset("ade20k-full", tmp_path, "train")


def test_pcontext59_san_layout_and_mmseg_layout_agree(tmp_path):
    ids = blocks(12, 16, [0, 1, 50, 59], seed=3)  # mmseg PC-60 ids: 0 = background
    photo(tmp_path / "VOC2010/JPEGImages/2008_000002.jpg", 12, 16, seed=0)
    _png(ids, tmp_path / "VOC2010/SegmentationClassContext/2008_000002.png")
    (tmp_path / "VOC2010/ImageSets/SegmentationContext").mkdir(parents=True)
    (tmp_path / "VOC2010/ImageSets/SegmentationContext/val.txt").write_text("2008_000002\n")
    pc60 = build_dataset("pcontext60", tmp_path, "val")
    np.testing.assert_array_equal(pc60[0]["label"].numpy(), ids)
    mmseg59 = build_dataset("pcontext59", tmp_path, "val")[0]["label"].numpy()
    np.testing.assert_array_equal(mmseg59, np.where(ids == 0, 255, ids.astype(np.int64) - 1))
    san = tmp_path / "san/pcontext"
    photo(san / "val/image/2008_000002.jpg", 12, 16, seed=0)
    _png(np.where(ids == 0, 255, ids - 1), san / "val/label/2008_000002.png")
    np.testing.assert_array_equal(build_dataset("pcontext59", tmp_path / "san", "val")[0]["label"].numpy(), mmseg59)
    (tmp_path / "VOC2010/ImageSets/SegmentationContext/val.txt").write_text("2008_000002\n2008_000003\n")
    with pytest.raises(DataError, match="val.txt lists '2008_000003' but its image .*2008_000003.jpg is missing"):
        build_dataset("pcontext60", tmp_path, "val")
    with pytest.raises(DataError, match="PASCAL Context train split list not found: .*SegmentationContext/train.txt"):
        build_dataset("pcontext60", tmp_path, "train")


def test_coco_stuff10k_val_is_the_test_split_with_reduce_zero_label(tmp_path):
    root = tmp_path / "coco_stuff10k"
    raw = blocks(12, 16, [0, 1, 12, 171], seed=4)
    photo(root / "images/test2014/COCO_train2014_000000000241.jpg", 12, 16, seed=0)
    _png(raw, root / "annotations/test2014/COCO_train2014_000000000241_labelTrainIds.png")
    for split in ("val", "test"):
        item = build_dataset("coco-stuff10k", tmp_path, split)[0]
        np.testing.assert_array_equal(item["label"].numpy(), np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    _png(np.full((12, 16), 172), root / "annotations/test2014/COCO_train2014_000000000241_labelTrainIds.png")
    with pytest.raises(DataError, match=r"_labelTrainIds.png has values \[171\] outside the 171 classes"):
        build_dataset("coco-stuff10k", tmp_path, "val")[0]
    with pytest.raises(DataError, match="COCO-Stuff-10K train image folder not found: .*images/train2014"):
        build_dataset("coco-stuff10k", tmp_path, "train")


def test_items_of_wide_datasets_keep_int64_labels(tmp_path):
    root = tmp_path / "pcontext_full"
    photo(root / "val/image/a.jpg", 8, 8, seed=0)
    _tif(np.full((8, 8), 458), root / "val/label/a.tif")
    item = build_dataset("pcontext459", root, "val")[0]
    assert item["label"].dtype == torch.int64 and int(item["label"][0, 0]) == 458
