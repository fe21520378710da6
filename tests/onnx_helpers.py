"""Shared by the ONNX Runtime / int8 tests and the int8 benchmark's smoke test: a few real CamVid
frames in CamVid's layout, and a tiny model trained on them for a few seconds, saved as a training
run folder (a random model's class scores are near ties everywhere, which says little about what
int8 rounding does to a real model's labels)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import segadapter
from inference_helpers import camvid_root
from segadapter.data import build_dataset
from segadapter.data.metainfo import CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID_ID
from segadapter.inference.preprocess import Preprocessing

CAMVID = camvid_root()
RECORD = Preprocessing(scale=(160, 120), classes=list(CAMVID_CLASSES), palette=[list(c) for c in CAMVID_PALETTE])
K = len(CAMVID_CLASSES)
TRAIN_STEPS = 40


def mini_camvid(root: Path, train: int = 8, val: int = 3) -> Path:
    """The first `train` / `val` frames of the real CamVid (480x360) with their labels."""
    for split, n in (("train", train), ("val", val)):
        for folder in (split, split + "annot"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for name in sorted(p.name for p in (CAMVID / split).iterdir())[:n]:
            shutil.copy(CAMVID / split / name, root / split / name)
            shutil.copy(CAMVID / (split + "annot") / name, root / (split + "annot") / name)
    return root


def tiny_trained_run(run: Path, data: Path, steps: int = TRAIN_STEPS) -> Path:
    """segformer-b0 with a 32-channel head, `steps` AdamW steps on `data`'s train frames at the
    record's 160x120, written as a training run: RUN/config.yaml (its data section) and
    RUN/checkpoints/iter_N (a model folder with the record) named by RUN/checkpoints/latest."""
    train = build_dataset("camvid", data, "train", RECORD.transforms())
    x = torch.stack([train[i]["image"] for i in range(len(train))])
    y = torch.stack([train[i]["label"] for i in range(len(train))])
    y = F.interpolate(y[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0].long()
    torch.manual_seed(0)
    model = segadapter.create_model("segformer-b0", num_classes=K, decoder_channels=32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (4,))
        loss = model(x[batch], labels=y[batch])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    checkpoint = run / "checkpoints" / f"iter_{steps:06d}"
    model.eval().save_pretrained(checkpoint, preprocessing=RECORD.to_dict())
    (run / "checkpoints" / "latest").write_text(checkpoint.name)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "camvid", "root": str(data)}}))
    return run


def miou(preds, labels) -> float:
    """mIoU (%) over classes seen in labels or predictions, CamVid's void left out: written out
    here, not taken from the evaluation code it checks."""
    inter, union = np.zeros(K), np.zeros(K)
    for pred, gt in zip(preds, labels):
        valid = gt != CAMVID_VOID_ID
        for c in range(K):
            inter[c] += np.sum((pred == c) & (gt == c) & valid)
            union[c] += np.sum(((pred == c) | (gt == c)) & valid)
    seen = union > 0
    return 100 * float(np.mean(inter[seen] / union[seen]))


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))
