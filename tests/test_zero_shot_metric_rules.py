"""Which classes the mean IoU averages (the PC-459 question of SAN's paper vs its logs), on
hand-computed confusion matrices; and a K = 847 matrix."""
from __future__ import annotations

import math

import pytest
import torch

from segadapter.evaluation.metrics import MIOU_RULES, ConfusionMatrix


def test_the_three_rules_by_hand():
    # class 0: in GT, IoU 2/4; class 1: predicted once, never in GT (IoU 0); class 2: in neither
    m = ConfusionMatrix(4)
    m.update(torch.tensor([0, 0, 1, 3, 3, 0]), torch.tensor([0, 0, 0, 3, 3, 3]))
    r = m.compute()
    # IoU: class 0 = 2 / (3 + 3 - 2) = 0.5, class 1 = 0, class 2 NaN, class 3 = 2 / (3 + 2 - 2) = 2/3
    assert r.mean_iou("present") == pytest.approx((0.5 + 2 / 3) / 2)
    assert r.mean_iou("seen") == pytest.approx((0.5 + 0 + 2 / 3) / 3) == r.mIoU
    assert r.mean_iou("all") == pytest.approx((0.5 + 2 / 3) / 4)
    assert r.miou_counts() == {"seen": 3, "present": 2, "all": 4}
    present = m.compute(miou_over="present")
    assert present.mIoU == pytest.approx(r.mean_iou("present")) and present.miou_over == "present"
    d = present.to_dict()
    assert d["miou_over"] == "present" and d["mIoU_by_rule"]["all"] == {"mIoU": pytest.approx(29.1667, abs=1e-3),
                                                                        "classes": 4}
    assert any(line.startswith("mIoU by rule (mIoU above: present): seen 38.89 (3 classes)") for line in present.miou_note())
    with pytest.raises(ValueError, match="unknown mIoU rule 'some'"):
        r.mean_iou("some")


def test_rules_agree_when_every_class_is_in_the_ground_truth():
    m = ConfusionMatrix(3)
    m.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
    r = m.compute()
    assert len({round(r.mean_iou(rule), 12) for rule in MIOU_RULES}) == 1 and r.miou_note() == []


def test_pc459_arithmetic_of_the_spec():
    """345 of 459 classes with ground truth, none of the others predicted: the logs' mean (present)
    times 345 / 459 is the paper's figure (the spec: 16.7053 x 345 / 459 = 12.56)."""
    k, present = 459, 345
    matrix = torch.zeros(k, k, dtype=torch.int64)
    for c in range(present):  # IoU of class c: c / present-ish spread, exact from the counts below
        matrix[c, c] = 1 + c
        matrix[c, (c + 1) % present] = 3
    r = ConfusionMatrix(k)
    r.matrix = matrix
    result = r.compute()
    assert result.miou_counts() == {"seen": present, "present": present, "all": k}
    assert result.mean_iou("all") == pytest.approx(result.mean_iou("present") * present / k)


def test_k847_confusion_matrix_counts_ids_above_255():
    m = ConfusionMatrix(847, ignore_index=65535)
    target = torch.tensor([846, 300, 255, 65535, 0])
    pred = torch.tensor([846, 299, 255, 12, 846])
    m.update(pred, target)
    assert int(m.matrix.sum()) == 4 and int(m.matrix[846, 846]) == 1 and int(m.matrix[300, 299]) == 1
    r = m.compute()
    assert r.iou[846] == pytest.approx(0.5) and math.isnan(r.iou[500]) and r.iou[255] == 1.0
