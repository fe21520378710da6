"""TensorBoard logging, read back with TensorBoard's own reader: the scalars are the jsonl log's
records (same steps, same values), the per-group lrs, the validation metrics with per-class IoU,
and one image | label | prediction grid per evaluation; `train.loggers` chooses the outputs."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from segadapter.engine import Trainer
from segadapter.errors import ConfigError
from synthetic_run import synthetic_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
CLASSES = ["background", "disc", "square", "triangle", "stripe"]  # the synthetic dataset's


def tiny_config(**train):
    """adapt-mit-b0 (three parameter groups) on synthetic 40x40 images, 3 validation images."""
    return synthetic_config("adapt-mit-b0", max_iters=8, warmup_iters=2, samples=4, val_samples=3,
                            **{"log_interval": 3, "eval_interval": 4, "checkpoint_interval": 0,
                               "tensorboard_images": 2, **train})


def records(run, kind):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


def reader(run):
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tb")
    Trainer(tiny_config(), run).fit()  # loggers: default, both
    return run


def test_scalars_are_the_jsonl_records(run):
    acc = reader(run)
    train, val = records(run, "train"), records(run, "val")
    assert [r["iter"] for r in train] == [3, 6, 8] and [r["iter"] for r in val] == [4, 8]
    expected = ({"train/loss", "train/loss_main", "train/loss_coarse", "train/grad_norm", "train/lr",
                 "lr/backbone", "lr/adapter", "lr/head", "perf/images_per_s",
                 "val/mIoU", "val/aAcc", "val/mAcc"} | {f"val_IoU/{name}" for name in CLASSES})
    assert set(acc.Tags()["scalars"]) == expected
    for tag, key in [("train/loss", "loss"), ("train/loss_main", "loss_main"), ("train/loss_coarse", "loss_coarse"),
                     ("train/grad_norm", "grad_norm"), ("train/lr", "lr"), ("perf/images_per_s", "images_per_s")]:
        assert [e.step for e in acc.Scalars(tag)] == [r["iter"] for r in train], tag
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([r[key] for r in train], rel=1e-6), tag
    for group, mult in [("backbone", 1), ("adapter", 7), ("head", 10)]:  # the default multipliers
        values = [e.value for e in acc.Scalars(f"lr/{group}")]
        assert values == pytest.approx([mult * r["lr"] for r in train], rel=1e-6), group
    for key in ("mIoU", "aAcc", "mAcc"):
        assert [(e.step, e.value) for e in acc.Scalars(f"val/{key}")] == \
            [(r["iter"], pytest.approx(r[key], rel=1e-6)) for r in val]
    for name in CLASSES:
        assert [e.value for e in acc.Scalars(f"val_IoU/{name}")] == \
            pytest.approx([r["IoU"][name] for r in val], rel=1e-6, nan_ok=True)


def test_one_prediction_grid_per_evaluation(run):
    acc = reader(run)
    assert acc.Tags()["images"] == ["val/predictions"]
    shots = acc.Images("val/predictions")
    assert [s.step for s in shots] == [4, 8]
    grid = np.asarray(Image.open(io.BytesIO(shots[-1].encoded_image_string)).convert("RGB"))
    # 2 rows (train.tensorboard_images) of 3 square 128-pixel panels, 2 white pixels apart
    assert grid.shape == (2 * 128 + 2, 3 * 128 + 2 * 2, 3)
    assert (grid[128:130] == 255).all() and (grid[:, 128:130] == 255).all()
    image, label_overlay, pred_overlay = grid[:128, :128], grid[:128, 130:258], grid[:128, 260:]
    assert not np.array_equal(image, label_overlay) and not np.array_equal(image, pred_overlay)
    assert not np.array_equal(grid[:128], grid[130:])  # two different validation images


def test_loggers_choose_the_outputs(tmp_path):
    cfg = tiny_config(eval_interval=0, log_interval=1)
    cfg.schedule.max_iters, cfg.data.val_split = 2, None
    cfg.train.loggers = ["jsonl"]
    Trainer(cfg, tmp_path / "jsonl").fit()
    assert (tmp_path / "jsonl" / "metrics.jsonl").is_file() and not list((tmp_path / "jsonl").glob("events.*"))
    cfg.train.loggers = ["tensorboard"]
    Trainer(cfg, tmp_path / "tb").fit()
    assert not (tmp_path / "tb" / "metrics.jsonl").exists() and not (tmp_path / "tb" / "curves.png").exists()
    assert [e.step for e in reader(tmp_path / "tb").Scalars("train/loss")] == [1, 2]


def test_without_tensorboard_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    cfg = tiny_config(eval_interval=0, loggers=["jsonl", "tensorboard"])
    with pytest.raises(ConfigError, match=r"segadapter\[tensorboard\]"):
        Trainer(cfg, tmp_path / "asked")
    assert not (tmp_path / "asked").exists()  # refused before writing anything
    cfg.train.loggers = None  # the default falls back to jsonl alone
    trainer = Trainer(cfg, tmp_path / "default")
    assert trainer.loggers == ["jsonl"] and trainer.log.tensorboard is None


def test_logger_names_are_checked():
    with pytest.raises(ConfigError, match="train.loggers"):
        tiny_config(loggers=["jsonl", "wandb"])
    with pytest.raises(ConfigError, match="twice"):
        tiny_config(loggers=["jsonl", "jsonl"])
