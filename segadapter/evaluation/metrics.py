"""Dataset-level segmentation metrics from one confusion matrix (MMSeg's IoUMetric numbers).

The matrix is a torch tensor so that DDP ranks can add their counts with one all-reduce; all
scores are derived from it at the end, never averaged per image. At K = 847 it is 5.5 MiB of
int64, and one update costs a few label-sized int64 vectors.

Which classes enter the mean IoU is a choice that changes a benchmark whose split lacks some
classes (PC-459: 345 of 459 in val); `MIOU_RULES` names the three in use.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import DataError


class ConfusionMatrix:
    """Accumulates `matrix[gt, pred]` pixel counts over a dataset; `ignore_index` pixels are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # int64: a 2048x1024 image is 2M pixels, millions of images stay far from overflow
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self._synced = False

    def reset(self) -> None:
        self.matrix.zero_()
        self._synced = False

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: `pred` and `target` are integer label maps of the same shape."""
        if self._synced:
            raise RuntimeError("update() after sync(): the counts already hold every rank's pixels")
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")
        k = self.num_classes
        pred = pred.to(self.matrix.device, torch.int64).reshape(-1)
        target = target.to(self.matrix.device, torch.int64).reshape(-1)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        # a label outside [0, K) would silently shift every score: treat it as a data bug
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
            bad = int(target.max()) if int(target.max()) >= k else int(target.min())
            raise DataError(
                f"label value {bad} is outside the {k} classes (0-{k - 1}) and is not the "
                f"ignore index {self.ignore_index}"
            )
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            raise ValueError(f"prediction values must lie in [0, {k}), got {int(pred.min())}..{int(pred.max())}")
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def sync(self) -> "ConfusionMatrix":
        """Sum the counts over all ranks (no-op without torch.distributed); call once, on every rank."""
        if not self._synced and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.matrix, op=torch.distributed.ReduceOp.SUM)
            self._synced = True
        return self

    def compute(self, class_names: Sequence[str] | None = None, miou_over: str = "seen") -> "MetricResult":
        return MetricResult.from_confusion(self.matrix, class_names, miou_over)


# which classes' IoUs the mean IoU averages
MIOU_RULES = {
    "seen": "classes with ground truth or predictions (a predicted absent class counts 0): mmseg and "
            "detectron2 v0.6, which SAN pins; the SAN paper's PC-459 figure",
    "present": "classes with ground truth only: detectron2 since July 2022; SAN's released logs",
    "all": "all K classes, one without ground truth counting 0",
}


@dataclass
class MetricResult:
    """Per-class IoU / Acc and the summary scores, as fractions in [0, 1] (NaN: class never seen)."""

    class_names: list[str]
    iou: list[float]
    acc: list[float]
    aAcc: float
    mIoU: float
    mAcc: float
    num_pixels: int = 0
    present: list[bool] | None = None  # per class: has ground-truth pixels
    miou_over: str = "seen"  # the rule of `mIoU` (MIOU_RULES)

    @classmethod
    def from_confusion(cls, matrix: torch.Tensor, class_names: Sequence[str] | None = None,
                       miou_over: str = "seen") -> "MetricResult":
        m = matrix.detach().to("cpu", torch.float64)
        k = m.shape[0]
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        if len(names) != k:
            raise ValueError(f"{len(names)} class names for {k} classes")
        intersect = m.diagonal()
        area_label = m.sum(1)
        union = area_label + m.sum(0) - intersect
        # 0/0 -> NaN on purpose: like MMSeg, a class absent from both GT and prediction gets
        # IoU NaN and is left out of mIoU; a class absent from GT gets Acc NaN.
        iou = intersect / union
        acc = intersect / area_label
        total = float(m.sum())
        result = cls(
            class_names=names,
            iou=iou.tolist(),
            acc=acc.tolist(),
            aAcc=float(intersect.sum()) / total if total else math.nan,
            mIoU=_nanmean(iou),
            mAcc=_nanmean(acc),
            num_pixels=int(total),
            present=(area_label > 0).tolist(),
        )
        return result.averaged_over(miou_over)

    def mean_iou(self, over: str = "seen") -> float:
        """The mean IoU under one of `MIOU_RULES`."""
        if over not in MIOU_RULES:
            raise ValueError(f"unknown mIoU rule {over!r}; choose one of {', '.join(MIOU_RULES)}")
        iou = torch.tensor(self.iou, dtype=torch.float64)
        if over == "seen":
            return _nanmean(iou)
        if over == "present":
            present = torch.tensor(self.present if self.present is not None else [True] * len(iou))
            return _nanmean(iou[present])
        return float(torch.nan_to_num(iou).sum()) / len(iou) if len(iou) else math.nan

    def averaged_over(self, over: str) -> "MetricResult":
        """This result with `mIoU` under rule `over`."""
        return dataclasses.replace(self, mIoU=self.mean_iou(over), miou_over=over)

    def miou_counts(self) -> dict[str, int]:
        """How many classes each rule averages."""
        iou = torch.tensor(self.iou, dtype=torch.float64)
        present = self.present if self.present is not None else [True] * len(self.iou)
        return {"seen": int((~torch.isnan(iou)).sum()), "present": int(sum(present)), "all": len(self.iou)}

    def to_dict(self) -> dict:
        """JSON-able (NaN -> None) summary plus per-class scores, in percent like the table."""

        def pct(x: float) -> float | None:
            return None if math.isnan(x) else round(100.0 * x, 4)

        counts = self.miou_counts()
        return {
            "aAcc": pct(self.aAcc),
            "mIoU": pct(self.mIoU),
            "mAcc": pct(self.mAcc),
            "num_pixels": self.num_pixels,
            "miou_over": self.miou_over,
            "mIoU_by_rule": {rule: {"mIoU": pct(self.mean_iou(rule)), "classes": counts[rule]} for rule in MIOU_RULES},
            "per_class": {
                name: {"IoU": pct(i), "Acc": pct(a)}
                for name, i, a in zip(self.class_names, self.iou, self.acc)
            },
        }

    def table(self) -> str:
        """MMSeg-style text table: class | IoU | Acc in percent, then the summary line."""
        rows = [(n, _fmt(i), _fmt(a)) for n, i, a in zip(self.class_names, self.iou, self.acc)]
        header = ("Class", "IoU", "Acc")
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]

        def line(r: tuple[str, str, str]) -> str:
            return "| " + " | ".join(
                r[c].ljust(widths[c]) if c == 0 else r[c].rjust(widths[c]) for c in range(3)
            ) + " |"

        sep = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        body = [sep, line(header), sep, *(line(r) for r in rows), sep]
        summary = f"aAcc: {_fmt(self.aAcc)}  mIoU: {_fmt(self.mIoU)}  mAcc: {_fmt(self.mAcc)}"
        return "\n".join([*body, summary])

    def miou_note(self) -> list[str]:
        """A line comparing the mIoU rules, when they disagree (some class lacks ground truth)."""
        values = {rule: self.mean_iou(rule) for rule in MIOU_RULES}
        if len({_fmt(v) for v in values.values()}) == 1:
            return []
        counts = self.miou_counts()
        parts = [f"{rule} {_fmt(values[rule])} ({counts[rule]} classes)" for rule in MIOU_RULES]
        return [f"mIoU by rule (mIoU above: {self.miou_over}): " + ", ".join(parts)]


def _nanmean(x: torch.Tensor) -> float:
    valid = ~torch.isnan(x)
    return float(x[valid].mean()) if bool(valid.any()) else math.nan


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100.0 * x:.2f}"
