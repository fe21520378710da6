"""`segadapter prepare voc` on a tiny VOC 2012 made here (palette PNGs, one class-colour PNG), read
back by the `voc` reader and checked pixel by pixel against the spec's VOC-20 mapping (raw 0 ->
255, k -> k - 1, 255 -> 255); resuming, atomic outputs and one-line errors naming the file."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from raw_datasets import make_voc, voc_palette_png
from segadapter.cli.main import main
from segadapter.data import build_dataset
from segadapter.data.prepare import prepare
from segadapter.errors import DataError


def voc20(raw: np.ndarray) -> np.ndarray:
    """The spec's Appendix B.4, written here independently of the converter."""
    raw = raw.astype(np.int64)
    return np.where((raw >= 1) & (raw <= 20), raw - 1, 255)


@pytest.fixture()
def voc(tmp_path):
    masks = make_voc(tmp_path / "raw")
    return tmp_path / "raw", masks


def _labels(dataset) -> dict[str, np.ndarray]:
    return {os.path.basename(dataset[i]["path"])[:-4]: dataset[i]["label"].numpy() for i in range(len(dataset))}


def test_prepared_voc_labels_follow_the_spec_mapping(voc, tmp_path, capsys):
    raw, masks = voc
    out = tmp_path / "voc20"
    assert main(["prepare", "voc", "--from", str(raw), "--to", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "val: 2 written, 0 already there, 1 without any labelled pixel" in printed
    for split in ("train", "val"):
        ds = build_dataset("voc", out, split)
        got = _labels(ds)
        expected = {name: voc20(ids) for name, ids in masks[split].items() if (voc20(ids) != 255).any()}
        assert got.keys() == expected.keys()  # the all-background mask is not written, as SAN's script
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])
    assert not (out / "annotations_detectron2/val/2007_000042.png").exists()
    assert ds.classes[-1] == "tv" and len(ds.classes) == 20 and ds.ignore_index == 255
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == sorted(
        f"{n}.jpg" for s in masks for n in masks[s] if n != "2007_000042")
    assert not list(out.rglob("*.tmp"))


def test_the_voc_readers_read_the_raw_layout_the_same(voc, tmp_path):
    raw, masks = voc
    prepare("voc", raw, tmp_path / "voc20", progress=False)
    from_raw = _labels(build_dataset("voc", raw, "val"))  # VOC's own PNGs with reduce_zero_label
    prepared = _labels(build_dataset("voc", tmp_path / "voc20", "val"))
    for name in prepared:
        np.testing.assert_array_equal(from_raw[name], prepared[name])
    with_background = _labels(build_dataset("voc21", raw, "val"))
    for name, ids in masks["val"].items():
        np.testing.assert_array_equal(with_background[name], ids)  # voc21: the PNG's own ids


def test_a_rerun_resumes_and_rewrites_only_what_is_missing(voc, tmp_path):
    raw, _ = voc
    out = tmp_path / "voc20"
    prepare("voc", raw, out, progress=False)
    kept = out / "annotations_detectron2/train/2007_000032.png"
    before = kept.stat().st_mtime_ns
    (out / "annotations_detectron2/val/2007_000033.png").unlink()
    report = prepare("voc", raw, out, progress=False)
    assert report.written == {"train": 0, "val": 1} and report.skipped == {"train": 2, "val": 1}
    assert kept.stat().st_mtime_ns == before


def test_voc_in_place_writes_no_image_copies(voc):
    raw, _ = voc
    report = prepare("voc", raw / "VOC2012", raw / "VOC2012", splits=["val"], progress=False)
    assert report.written == {"val": 2}
    assert len(build_dataset("voc", raw, "val")) == 2  # the prepared labels win over VOC's own


def test_an_unknown_id_or_colour_is_one_error_naming_the_file(voc, tmp_path, capsys):
    raw, masks = voc
    bad = raw / "VOC2012/SegmentationClass/2007_000033.png"
    ids = masks["val"]["2007_000033"].copy()
    ids[0, 0] = 30
    voc_palette_png(ids, bad)
    assert main(["prepare", "voc", "--from", str(raw), "--to", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "[30]" in err[0], err
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(bad)
    with pytest.raises(DataError, match=r"2007_000033.png: colours \(1, 2, 3\)"):
        prepare("voc", raw, tmp_path / "o", progress=False)


def test_a_missing_split_list_is_an_error_naming_it(voc, tmp_path):
    raw, _ = voc
    (raw / "VOC2012/ImageSets/Segmentation/train.txt").unlink()
    with pytest.raises(DataError, match="ImageSets/Segmentation/train.txt"):
        prepare("voc", raw, tmp_path / "o", progress=False)
    assert prepare("voc", raw, tmp_path / "o", splits=["val"], progress=False).written == {"val": 2}
    with pytest.raises(DataError, match="annotations_detectron2/train.*ImageSets/Segmentation/train.txt"):
        build_dataset("voc", raw, "train")  # neither layout has a train split now
