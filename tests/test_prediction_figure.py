"""benchmarks/prediction_figure.py: the README's image | ground truth | prediction figure shows what
`segadapter predict` writes for those frames, scored against the dataset's own labels."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inference_helpers import ROOT, camvid_root, save_tiny
from segadapter import Preprocessing
from segadapter.data.metainfo import CAMVID_CLASSES, CAMVID_PALETTE
from segadapter.data.registry import build_dataset

CAMVID = camvid_root()
pytestmark = pytest.mark.skipif(CAMVID is None, reason="CamVid not found (../shared/data/camvid)")
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_figure_rows_are_the_predict_command_on_the_chosen_frames(tmp_path):
    from prediction_figure import draw, pick_frames

    record = Preprocessing(scale=(240, 180), classes=list(CAMVID_CLASSES), palette=[list(c) for c in CAMVID_PALETTE])
    model = save_tiny(tmp_path / "model", record, num_classes=11)  # predicts at half size, labels at full
    assert pick_frames(101, 3) == [0, 50, 100]
    out = tmp_path / "figure.png"
    shown = draw(model, str(CAMVID), out, frames=[0, 100])
    with Image.open(out) as png:
        width, height = png.size
    assert width > 600 and height > 400  # two rows of three 480x360 frames, landscape panels

    ds = build_dataset("camvid", str(CAMVID), "val")
    frames = [ds.pairs[0][0], ds.pairs[100][0]]
    assert shown["frames"] == [str(f) for f in frames]
    written = tmp_path / "predicted"
    subprocess.run([sys.executable, "-m", "segadapter", "predict", str(model), *map(str, frames),
                    "--out", str(written), "--amp", "none"], check=True, capture_output=True, timeout=300)
    for index, frame, accuracy, label in zip((0, 100), frames, shown["accuracy"], shown["labels"]):
        predicted = np.asarray(Image.open(written / f"{frame.stem}.png"))
        np.testing.assert_array_equal(label, predicted)
        truth = ds.load(index)[1]
        valid = truth != 255
        assert accuracy == pytest.approx((predicted[valid] == truth[valid]).mean())
