"""`segadapter prepare pcontext59 | pcontext60 | pcontext459` on a tiny PASCAL Context made here
(a Detail-format json with RLE masks, 459-class .mat files), read back by the readers and checked
pixel by pixel: the masks are painted here from the json's rectangles in the order the official
Detail API keeps them (Python's own remove-while-iterating loop is the oracle for which images and
annotations it sees), then mapped with the spec's table."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2, in the oracle

from raw_datasets import make_pcontext  # noqa: E402
from segadapter.cli.main import main  # noqa: E402
from segadapter.data import build_dataset  # noqa: E402
from segadapter.data.prepare import prepare  # noqa: E402
from segadapter.errors import DataError  # noqa: E402

# the spec's Appendix B.1 for the ids the fixture uses: Detail id -> SAN PC-59 label
PC59 = {0: 255, 2: 0, 19: 3, 397: 49, 458: 58}


def official_view(raw: dict, phase: str) -> tuple[list[dict], list[dict]]:
    """What Detail(json, ..., phase) indexes: its loops remove from the list they walk."""
    images = [dict(im) for im in raw["images"]]
    kept = []
    for im in images:
        if im["phase"] != phase:
            images.remove(im)
        else:
            kept.append(im)
    ids = {im["image_id"] for im in kept}
    annotations, kept_anns = list(raw["annotations"]), []
    for ann in annotations:
        if ann["image_id"] not in ids:
            annotations.remove(ann)
        else:
            kept_anns.append(ann)
    return kept, kept_anns


def painted(image: dict, annotations: list[dict]) -> np.ndarray:
    from pycocotools import mask as coco_mask

    out = np.zeros((image["height"], image["width"]), np.int64)
    for ann in annotations:
        if ann["image_id"] == image["image_id"]:
            rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
            out[coco_mask.decode(rle) != 0] = ann["category_id"]
    return out


@pytest.fixture()
def raw(tmp_path):
    return tmp_path / "raw", make_pcontext(tmp_path / "raw")


def _by_name(ds) -> dict[str, np.ndarray]:
    return {ds.pairs[i][0].stem: ds[i]["label"].numpy() for i in range(len(ds))}


def test_pcontext59_and_60_labels(raw, tmp_path, capsys):
    root, facts = raw
    assert main(["prepare", "pcontext59", "--from", str(root), "--to", str(tmp_path / "pc59"), "--no-progress"]) == 0
    assert "read it with: --dataset pcontext59" in capsys.readouterr().out
    prepare("pcontext60", root, tmp_path / "VOC2010", progress=False)
    for phase in ("train", "val"):
        images, anns = official_view(facts, phase)
        if phase == "val":  # the API's skipping happened, to images and to annotations of kept images
            assert len(images) < sum(im["phase"] == phase for im in facts["images"])
            ids = {im["image_id"] for im in images}
            assert len(anns) < sum(a["image_id"] in ids for a in facts["annotations"])
        pc59, pc60 = _by_name(build_dataset("pcontext59", tmp_path / "pc59", phase)), \
            _by_name(build_dataset("pcontext60", tmp_path, phase))
        assert sorted(pc59) == sorted(pc60) == sorted(im["file_name"][:-4] for im in images)
        for im in images:
            ids = painted(im, anns)
            expected59 = np.vectorize(PC59.get)(ids)
            np.testing.assert_array_equal(pc59[im["file_name"][:-4]], expected59)
            np.testing.assert_array_equal(pc60[im["file_name"][:-4]], np.where(expected59 == 255, 0, expected59 + 1))
        listed = (tmp_path / "VOC2010/ImageSets/SegmentationContext" / f"{phase}.txt").read_text().split()
        assert listed == sorted(im["file_name"][:-4] for im in images)


def test_pcontext459_labels_are_labelmap_minus_one_in_16_bits(raw, tmp_path):
    root, facts = raw
    report = prepare("pcontext459", root, tmp_path / "pcontext_full", progress=False)
    images, _ = official_view(facts, "val")
    assert report.written["val"] == len(images)
    ds = build_dataset("pcontext459", tmp_path, "val")
    got = _by_name(ds)
    for im in images:
        lm = facts["label_maps"][im["file_name"][:-4]].astype(np.int64)
        np.testing.assert_array_equal(got[im["file_name"][:-4]], np.where(lm == 0, 65535, lm - 1))
    assert any((v == 65535).any() for v in got.values())  # the LabelMap 0 really wrapped
    assert ds.classes[396] == "table" and ds.classes[0] == "accordion"


def test_an_id_outside_the_59_is_one_error_naming_the_image(tmp_path, capsys):
    make_pcontext(tmp_path / "raw", category_ids=(2, 5))  # 5 is not a PC-59 id
    code = main(["prepare", "pcontext59", "--from", str(tmp_path / "raw"), "--to", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "trainval_merged.json (image 2008_" in err[0] and "category ids [5]" in err[0]


def test_missing_raw_parts_are_named(raw, tmp_path):
    root, _ = raw
    (root / "trainval" / "2008_000002.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="2008_000002.mat: not a readable MATLAB"):
        prepare("pcontext459", root, tmp_path / "o", splits=["val"], progress=False)
    (root / "trainval_merged.json").unlink()
    with pytest.raises(DataError, match="annotations not found: .*trainval_merged.json"):
        prepare("pcontext59", root, tmp_path / "o", progress=False)
