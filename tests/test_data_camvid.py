"""CamVid on the real data (shared/data/camvid or $SEGADAPTER_CAMVID); skipped when absent."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from segadapter.data.registry import build_dataset
from segadapter.data.transforms import build_transforms
from segadapter.data.io import read_label


@pytest.fixture(scope="module")
def camvid_root() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared/data/camvid"
    root = Path(os.environ.get("SEGADAPTER_CAMVID") or default)
    if not (root / "train").is_dir():
        pytest.skip(f"CamVid not found at {root} (set SEGADAPTER_CAMVID)")
    return root


def test_split_sizes(camvid_root):
    assert len(build_dataset("camvid", camvid_root, "train")) == 367
    assert len(build_dataset("camvid", camvid_root, "val")) == 101


def test_label_values_after_void_mapping(camvid_root):
    ds = build_dataset("camvid", camvid_root, "val")
    raw_values, mapped_values = set(), set()
    for _, lbl_path in ds.pairs:
        raw = read_label(lbl_path)
        mapped = ds.map_label(raw, lbl_path)
        np.testing.assert_array_equal(mapped == 255, raw == 11)  # void -> ignore, nothing else
        np.testing.assert_array_equal(mapped[raw != 11], raw[raw != 11])
        raw_values |= set(np.unique(raw).tolist())
        mapped_values |= set(np.unique(mapped).tolist())
    assert raw_values == set(range(12))
    assert mapped_values == set(range(11)) | {255}


def test_items(camvid_root):
    ds = build_dataset("camvid", camvid_root, "train", build_transforms(True, crop_size=(256, 256)))
    item = ds[0]
    assert item["image"].shape == (3, 256, 256) and item["label"].shape == (256, 256)
    assert item["label"].dtype == torch.int64 and item["path"].endswith(".png")
    val = build_dataset("camvid", camvid_root, "val")[5]
    assert val["image"].shape == (3, 360, 480) and val["label"].shape == (360, 480)
    assert set(val["label"].unique().tolist()) <= set(range(11)) | {255}
