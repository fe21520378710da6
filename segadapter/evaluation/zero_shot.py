"""SAN's open-vocabulary benchmarks (Xu et al., CVPR 2023, Table 2): for each dataset, the class
names SAN's registration hands the text encoder, its test protocol and the published numbers
(../shared/spec/datasets.md, "SAN evaluation protocol" and "Reported numbers").

`segadapter eval SAN_RUN --dataset NAME` uses them when the model is open-vocabulary;
`benchmarks/san_zero_shot.py` runs the five and prints the paper's table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import metainfo
from ..inference.preprocess import Preprocessing

# SAN's test resize for every set (detectron2 ResizeShortestEdge), whole image, one scale, no flip
SHORT_SIDE, MAX_SIZE = 640, 2560
PAPER_MODELS = {"san-vit-b16": "ViT-B/16", "san-vit-l14": "ViT-L/14"}


@dataclass(frozen=True)
class ZeroShotBenchmark:
    dataset: str  # registry name of the reader
    column: str  # the paper's name for it
    names: tuple[str, ...]  # what SAN's text encoder reads, in label order (synonym lists kept whole)
    paper: dict[str, float] = field(default_factory=dict)  # Table 2, per CLIP
    log: dict[str, float] = field(default_factory=dict)  # SAN's released evaluation logs, per CLIP
    log_rule: str = "present"  # the logs' evaluator averages classes with ground truth only
    split: str = "val"

    def protocol(self, record: Preprocessing) -> Preprocessing:
        """The model's own record (normalisation, names) with SAN's test resize and inference."""
        return record.replace(scale=None, short_side=SHORT_SIDE, max_size=MAX_SIZE, mode="whole",
                              crop_size=None, stride=None, flip=False)


def _b_l(b: float, l: float) -> dict[str, float]:
    return {"ViT-B/16": b, "ViT-L/14": l}


# the paper's column order
SAN_BENCHMARKS: dict[str, ZeroShotBenchmark] = {b.dataset: b for b in (
    ZeroShotBenchmark("ade20k-full", "A-847", tuple(metainfo.ADE20K_FULL_CLASSES), _b_l(10.1, 12.4), _b_l(10.21, 12.96)),
    # the paper's PC-459 divides the IoU sum by all 459 classes; the logs by the 345 present in val
    ZeroShotBenchmark("pcontext459", "PC-459", tuple(metainfo.PCONTEXT459_CLASSES), _b_l(12.6, 15.7), _b_l(16.71, 20.83)),
    ZeroShotBenchmark("ade20k", "A-150", tuple(metainfo.ADE20K_DETECTRON2_CLASSES), _b_l(27.5, 32.1), _b_l(27.56, 31.93)),
    ZeroShotBenchmark("pcontext59", "PC-59", tuple(metainfo.PCONTEXT59_CLASSES), _b_l(53.8, 57.7), _b_l(54.07, 57.53)),
    ZeroShotBenchmark("voc", "VOC", tuple(metainfo.VOC_CLASSES), _b_l(94.0, 94.6), _b_l(93.95, 95.18)),
)}
# SAN's training set, evaluated in-domain in its logs (not a column of Table 2)
IN_DOMAIN = ZeroShotBenchmark("coco-stuff164k", "COCO-171", tuple(metainfo.COCO_STUFF_CLASSES), {},
                              _b_l(41.93, 45.57))
PAPER_RULE = "seen"  # detectron2 v0.6 (SAN's install.sh): classes with ground truth or predictions


def benchmark_of(dataset: str) -> ZeroShotBenchmark | None:
    key = dataset.strip().lower().replace("_", "-")
    return SAN_BENCHMARKS.get(key) or (IN_DOMAIN if key == IN_DOMAIN.dataset else None)
