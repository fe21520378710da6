"""`segadapter prepare ade20k-full` on a tiny ADE20K_2021_17_01 made here (index pickle, `_seg.png`
encoding; the real ADE20K validation fixtures as images where ../shared has them): the split rule,
the short-side-512 resize (nearest for the class map, as OpenCV's INTER_NEAREST), the 847-entry
table (values from the spec's Appendix B.3) and 65535 for every other class; and the index
unpickler refusing anything but data."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from raw_datasets import make_ade_full
from segadapter.data import build_dataset
from segadapter.data.prepare import prepare
from segadapter.errors import DataError

# raw class value -> trainId, from the spec's Appendix B.3 (rows 0-19 and 840-846); others -> 65535
TABLE = {2978: 0, 312: 1, 2420: 2, 687: 19, 332: 840, 2826: 845, 3148: 846}
UNLISTED = [5, 3157, 6000]


def expected(raw: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: TABLE.get(int(v), 65535))(raw)


def nearest(label: np.ndarray, h: int, w: int) -> np.ndarray:
    """INTER_NEAREST as OpenCV documents it: dst(x, y) = src(floor(x * sw / w), floor(y * sh / h))."""
    sh, sw = label.shape
    return label[(np.arange(h) * sh // h)[:, None], (np.arange(w) * sw // w)[None, :]]


@pytest.fixture()
def ade(tmp_path):
    classes = make_ade_full(tmp_path / "raw", [*TABLE, *UNLISTED])
    return tmp_path / "raw", classes


def test_labels_sizes_and_splits(ade, tmp_path):
    raw, classes = ade
    out = tmp_path / "ADE20K_2021_17_01"
    report = prepare("ade20k-full", raw, out, progress=False)
    assert report.written == {"training": 2, "validation": 3}
    # ADE_frame_* has no "val" field: training, as the script's rule
    assert (out / "annotations_detectron2/training/ADE_frame_00000007.tif").is_file()
    ds = build_dataset("ade20k-full", tmp_path, "val")
    assert len(ds) == 3 and len(ds.classes) == 847
    for i in range(len(ds)):
        name = ds.pairs[i][0].name
        label = ds[i]["label"].numpy()
        raw_classes = classes[name]
        h, w = raw_classes.shape
        if min(h, w) > 512:  # 600 x 800 -> 512 x round(800 / 600 * 512) = 512 x 683
            assert label.shape == (512, round(w / h * 512)) == (512, 683)
            raw_classes = nearest(raw_classes, *label.shape)
        else:
            assert label.shape == (h, w)
        np.testing.assert_array_equal(label, expected(raw_classes))
        assert Image.open(ds.pairs[i][0]).size == label.shape[::-1]
    assert any((ds[i]["label"] == 65535).any() for i in range(3))


def test_rerun_skips_and_a_missing_listed_file_is_named(ade, tmp_path):
    raw, _ = ade
    out = tmp_path / "out"
    prepare("ade20k-full", raw, out, splits=["val"], progress=False)
    assert prepare("ade20k-full", raw, out, splits=["val"], progress=False).skipped == {"validation": 3}
    os.remove(raw / "ADE20K_2021_17_01/images/ADE/training/bedroom/ADE_train_00000001_seg.png")
    with pytest.raises(DataError, match="ADE_train_00000001_seg.png: file not found"):
        prepare("ade20k-full", raw, out, progress=False)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_the_index_unpickler_refuses_code(ade, tmp_path):
    raw, _ = ade
    index = raw / "ADE20K_2021_17_01/index_ade20k.pkl"
    index.write_bytes(pickle.dumps({"folder": [], "filename": [], "x": _Boom()}))
    with pytest.raises(DataError, match=r"index_ade20k.pkl: cannot read the index \(refusing (posix|os)\.system"):
        prepare("ade20k-full", raw, tmp_path / "o", progress=False)
    index.write_bytes(b"\x80\x04junk")
    with pytest.raises(DataError, match="index_ade20k.pkl: cannot read the index"):
        prepare("ade20k-full", raw, tmp_path / "o", progress=False)
