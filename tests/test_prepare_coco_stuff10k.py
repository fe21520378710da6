"""`segadapter prepare coco-stuff10k` on a tiny cocostuff-10k-v1.1 made here (.mat files with S),
read back by the `coco-stuff10k` reader: S = 0 -> ignore, S = COCO id -> its COCO-Stuff-171 label
(the spec's Appendix B.2, plus one for the .mat ids), an unused id is one error naming the file."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from raw_datasets import make_coco10k
from segadapter.data import build_dataset
from segadapter.data.prepare import prepare
from segadapter.errors import DataError

# .mat id (COCO category id) -> COCO-Stuff-171 label after reduce_zero_label (spec B.2: raw + 1)
TABLE = {0: 255, 1: 0, 11: 10, 13: 11, 27: 24, 92: 80, 182: 170}


def test_labels_and_splits(tmp_path):
    mats = make_coco10k(tmp_path / "raw", list(TABLE))
    report = prepare("coco-stuff10k", tmp_path / "raw", tmp_path / "coco_stuff10k", progress=False)
    assert report.written == {"train2014": 2, "test2014": 1}
    for split, sub in (("train", "train"), ("val", "test")):
        ds = build_dataset("coco-stuff10k", tmp_path, split)
        assert len(ds) == len(mats[sub])
        for i in range(len(ds)):
            s = mats[sub][ds.pairs[i][0].stem]
            np.testing.assert_array_equal(ds[i]["label"].numpy(), np.vectorize(TABLE.get)(s))


def test_an_unused_id_is_an_error_naming_the_file(tmp_path):
    mats = make_coco10k(tmp_path / "raw", list(TABLE))
    name = next(iter(mats["test"]))
    bad = mats["test"][name].copy()
    bad[0, 0] = 12  # COCO id 12 is not one of the 171 classes
    savemat(tmp_path / "raw/cocostuff-10k-v1.1/annotations" / f"{name}.mat", {"S": bad})
    with pytest.raises(DataError, match=rf"{name}.mat: label ids \[12\] are not COCO-Stuff classes"):
        prepare("coco-stuff10k", tmp_path / "raw", tmp_path / "o", splits=["test"], progress=False)
    savemat(tmp_path / "raw/cocostuff-10k-v1.1/annotations" / f"{name}.mat", {"T": bad})
    with pytest.raises(DataError, match=rf"{name}.mat: has no variable 'S'"):
        prepare("coco-stuff10k", tmp_path / "raw", tmp_path / "o", splits=["test"], progress=False)
    (tmp_path / "raw/cocostuff-10k-v1.1/imageLists/train.txt").unlink()
    with pytest.raises(DataError, match="COCO-Stuff-10K train list not found: .*imageLists/train.txt"):
        prepare("coco-stuff10k", tmp_path / "raw", tmp_path / "o", progress=False)
