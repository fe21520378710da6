"""ConfusionMatrix / MetricResult against hand-computed and brute-force numbers."""
import json
import math

import numpy as np
import pytest
import torch

from segadapter.errors import DataError
from segadapter.evaluation.metrics import ConfusionMatrix, MetricResult


def test_hand_computed_example():
    # 3 classes; class 2 is in neither GT nor prediction -> NaN, left out of the means
    gt = torch.tensor([[0, 0, 1, 1], [1, 255, 0, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1]])  # the 255 pixel's prediction (2) is ignored
    m = ConfusionMatrix(3)
    m.update(pred, gt)
    assert m.matrix.tolist() == [[2, 1, 0], [1, 3, 0], [0, 0, 0]]
    r = m.compute(["a", "b", "c"])
    # class 0: TP 2, FN 1, FP 1 -> IoU 2/4, Acc 2/3; class 1: TP 3, FN 1, FP 1 -> IoU 3/5, Acc 3/4
    assert r.iou[:2] == pytest.approx([0.5, 0.6])
    assert r.acc[:2] == pytest.approx([2 / 3, 0.75])
    assert math.isnan(r.iou[2]) and math.isnan(r.acc[2])
    assert r.aAcc == pytest.approx(5 / 7)
    assert r.mIoU == pytest.approx(0.55)
    assert r.mAcc == pytest.approx((2 / 3 + 0.75) / 2)
    assert r.num_pixels == 7


def test_predicted_but_absent_class_counts_zero_iou():
    # MMSeg: a class never in GT but predicted has IoU 0 (counts in mIoU) and Acc NaN
    m = ConfusionMatrix(2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    r = m.compute()
    assert r.iou == pytest.approx([0.5, 0.0])
    assert math.isnan(r.acc[1])
    assert r.mIoU == pytest.approx(0.25) and r.mAcc == pytest.approx(0.5)


def _brute_force(preds, gts, k, ignore=255):
    inter, union, label = np.zeros(k), np.zeros(k), np.zeros(k)
    correct = total = 0
    for p, g in zip(preds, gts):
        for c in range(k):
            valid = g != ignore
            inter[c] += np.sum((p == c) & (g == c) & valid)
            union[c] += np.sum(((p == c) | (g == c)) & valid)
            label[c] += np.sum((g == c) & valid)
        correct += np.sum((p == g) & (g != ignore))
        total += np.sum(g != ignore)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / label
    return iou, acc, correct / total


def test_random_data_matches_brute_force():
    rng = np.random.default_rng(0)
    k = 6
    m = ConfusionMatrix(k)
    preds, gts = [], []
    for shape in [(7, 9), (13, 5), (1, 30)]:  # varying sizes, accumulated over the "dataset"
        g = rng.integers(0, k - 1, size=shape)  # class 5 never in GT
        g[rng.random(shape) < 0.2] = 255
        p = rng.integers(0, k - 2, size=shape)  # classes 4, 5 never predicted -> class 5 NaN
        preds.append(p), gts.append(g)
        m.update(torch.from_numpy(p), torch.from_numpy(g))
    r = m.compute()
    iou, acc, aacc = _brute_force(preds, gts, k)
    np.testing.assert_allclose(r.iou, iou, equal_nan=True)
    np.testing.assert_allclose(r.acc, acc, equal_nan=True)
    assert math.isnan(r.iou[5]) and r.iou[4] == 0.0
    assert r.aAcc == pytest.approx(aacc)
    assert r.mIoU == pytest.approx(np.nanmean(iou))
    assert r.mAcc == pytest.approx(np.nanmean(acc))


def test_ignore_pixels_change_nothing():
    rng = np.random.default_rng(1)
    g = torch.from_numpy(rng.integers(0, 4, size=(10, 10)))
    p = torch.from_numpy(rng.integers(0, 4, size=(10, 10)))
    a = ConfusionMatrix(4)
    a.update(p, g)
    # the same pixels plus ignored ones whose predictions are all wrong
    b = ConfusionMatrix(4)
    b.update(torch.cat([p, (p + 1) % 4]), torch.cat([g, torch.full_like(g, 255)]))
    assert torch.equal(a.matrix, b.matrix)
    # a custom ignore index
    c = ConfusionMatrix(4, ignore_index=3)
    c.update(p, g)
    assert c.matrix[3].sum() == 0 and c.compute().num_pixels == int((g != 3).sum())


def test_out_of_range_label_is_a_data_error():
    m = ConfusionMatrix(3)
    with pytest.raises(DataError, match="label value 11"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_sync_without_distributed_is_noop_and_reset():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    before = m.matrix.clone()
    assert torch.equal(m.sync().matrix, before)
    m.reset()
    assert m.matrix.sum() == 0


def test_table_and_json():
    m = ConfusionMatrix(3)
    m.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]))
    r = m.compute(["sky", "building", "pole"])
    table = r.table()
    lines = table.splitlines()
    assert lines[1] == "| Class    |   IoU |    Acc |"
    assert "| sky      | 66.67 |  66.67 |" in table
    assert "| building | 50.00 | 100.00 |" in table
    assert "| pole     |   nan |    nan |" in table
    assert lines[-1] == "aAcc: 75.00  mIoU: 58.33  mAcc: 83.33"
    d = json.loads(json.dumps(r.to_dict()))  # must be JSON-able (NaN -> null)
    assert d["mIoU"] == pytest.approx(58.3333, abs=1e-3)
    assert d["per_class"]["pole"] == {"IoU": None, "Acc": None}
    assert d["per_class"]["sky"]["Acc"] == pytest.approx(66.6667, abs=1e-3)


def test_empty_result_is_nan_not_crash():
    r = MetricResult.from_confusion(torch.zeros(2, 2, dtype=torch.int64))
    assert math.isnan(r.aAcc) and math.isnan(r.mIoU)
