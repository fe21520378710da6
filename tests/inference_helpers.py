"""Shared by the inference / predict / serve tests: where real CamVid is, a tiny saved model with a
preprocessing record, and a toy open-vocabulary model (class names are colour words)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

import segadapter
from segadapter.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segadapter.inference.onnx_network import RecordedHead
from segadapter.modeling.heads.base import LOGITS
from segadapter.modeling.meta_arch.base import SegmentationModel
from segadapter.modeling.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[1]


def camvid_root() -> Path | None:
    """../shared/data/camvid next to the repository (or $SEGADAPTER_CAMVID); None when absent."""
    for candidate in (os.environ.get("SEGADAPTER_CAMVID"), ROOT.parent / "shared/data/camvid",
                      Path("/work/shared/data/camvid")):
        if candidate and (Path(candidate) / "val").is_dir():
            return Path(candidate)
    return None


def tiny_model(num_classes: int = 3, seed: int = 0) -> nn.Module:
    """segformer-b0 with a narrow head, randomly initialised (no weights exist offline)."""
    torch.manual_seed(seed)
    return segadapter.create_model("segformer-b0", num_classes=num_classes, decoder_channels=32)


def save_tiny(folder: Path, preprocessing=None, num_classes: int = 3, **extra) -> Path:
    model = tiny_model(num_classes)
    if preprocessing is not None:
        extra["preprocessing"] = preprocessing.to_dict()
    model.save_pretrained(folder, **extra)
    return folder


def normalise(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Reference normalisation written out by hand: (x - mean) / std per channel, CHW float32."""
    x = torch.from_numpy(image.astype(np.float32))
    x = (x - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    return x.permute(2, 0, 1).contiguous()


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0), "yellow": (255, 255, 0)}


class ColourVocabulary(SegmentationModel):
    """Open-vocabulary toy model: each class is a colour word, and a pixel's logit for a class is
    minus its squared distance to that colour in normalised space (so the answer is known)."""

    def __init__(self, classes=("red", "green", "blue")):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.decode_head = RecordedHead(len(classes), output_stride=1, space=LOGITS)
        self.config = {"name": "colour-vocabulary", "num_classes": len(classes)}
        self.set_classes(list(classes))

    @property
    def num_classes(self) -> int:
        return len(self.vocabulary.names)

    def set_classes(self, names, what="class names"):
        names = Vocabulary(names).check(names, what)  # the contract: checked here, errors prefixed by `what`
        unknown = [n for n in names if n not in COLOURS]
        if unknown:
            raise ValueError(f"unknown colour words {unknown}")
        rgb = torch.tensor([COLOURS[n] for n in names], dtype=torch.float32)
        centres = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        self.register_buffer("centres", centres, persistent=False)
        self.vocabulary = Vocabulary(names)  # names map to colours directly: no text tower

    def forward(self, x):
        d = (x[:, None] - self.centres.to(x)[None, :, :, None, None]) ** 2
        return -d.sum(2) * self.scale


def nearest_colour(image: np.ndarray, names) -> np.ndarray:
    """Independent answer for ColourVocabulary: the nearest colour word per pixel, in RGB units."""
    std = np.asarray(IMAGENET_STD, np.float64)
    centres = np.asarray([COLOURS[n] for n in names], np.float64)
    d = (((image[:, :, None, :].astype(np.float64) - centres[None, None]) / std) ** 2).sum(-1)
    return d.argmin(-1)
