"""Gradient accumulation (`optim.accumulate_steps`): a batch of 4 in one step and 2 micro-batches of
2 give the same weights, logs and schedule, counted in optimizer steps; a run stopped mid-way with
accumulation resumes exactly.

The comparison needs a per-pixel model whose output for one image does not depend on the others in
its batch: segformer-b0 with its one BatchNorm normalising with running statistics (frozen, as
detectron2's FrozenBatchNorm2d), no dropout and no drop path. Synthetic labels at crop < image size
have no ignored pixel, so each micro-batch's mean loss weighs every pixel alike.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import segadapter
from segadapter.engine import Trainer
from segadapter.engine.config import config_from_dict
from segadapter.modeling import registry

MODEL = "test-segformer-b0-frozen-bn"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Normalises with its running statistics in training too: no dependence on the batch."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def build_frozen_bn_segformer(num_classes, **options):
    model = segadapter.create_model("segformer-b0", num_classes=num_classes, head_dropout=0.0, drop_path_rate=0.0)
    model.decode_head.fuse_norm.__class__ = FrozenBatchNorm2d
    return model


@pytest.fixture(autouse=True)
def frozen_bn_model(monkeypatch):
    # registered for these tests only (monkeypatch removes it), so listings elsewhere do not see it
    monkeypatch.setitem(registry._MODELS, MODEL, build_frozen_bn_segformer)


def config(batch_size, accumulate, max_iters=4, model=MODEL, **train):
    return config_from_dict({
        "model": {"name": model},
        "data": {"dataset": "synthetic", "crop_size": 32, "scale": None, "ratio_range": [1.0, 1.0],
                 "batch_size": batch_size, "num_workers": 0, "val_split": None,
                 "options": {"size": 40, "num_samples": 8}},
        "optim": {"lr": 1e-3, "accumulate_steps": accumulate},
        "schedule": {"max_iters": max_iters, "warmup_iters": 1},
        "train": {"log_interval": 1, "eval_interval": 0, "checkpoint_interval": 2, "progress": False,
                  "device": "cpu", "loggers": ["jsonl"], "amp": "none", **train},  # fp32: exact sums
    })


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run, iteration):
    return load_file(str(run / "checkpoints" / f"iter_{iteration:06d}" / "model.safetensors"))


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def batch_of_4(tmp_path_factory):
    run = tmp_path_factory.mktemp("b4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._MODELS, MODEL, build_frozen_bn_segformer)
        Trainer(config(4, 1), run).fit()
    return run


def test_two_micro_batches_of_2_equal_one_batch_of_4(batch_of_4, tmp_path):
    Trainer(config(2, 2), tmp_path).fit()
    a, b = weights(batch_of_4, 4), weights(tmp_path, 4)
    assert max_difference(a, b) <= 1e-5
    start = Trainer(config(4, 1), tmp_path / "untrained").net.state_dict()
    assert max_difference(a, dict(start)) > 1e-3  # the weights did move

    # Schedule, logs and checkpoints count optimizer steps: 4 of them, each with the lr of its step.
    ra, rb = records(batch_of_4), records(tmp_path)
    assert [r["iter"] for r in rb] == [1, 2, 3, 4] == [r["iter"] for r in ra]
    assert [r["lr"] for r in rb] == [r["lr"] for r in ra]
    assert [r["epoch"] for r in rb] == [r["epoch"] for r in ra] == [0, 0, 1, 1]
    for x, y in zip(ra, rb):  # the logged loss is the mean over the micro-batches
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000002", "iter_000004", "latest"]


def test_batchnorm_in_training_mode_breaks_the_equality(tmp_path):
    """What the README says about BN: each micro-batch is normalised with its own statistics and
    updates the running statistics once per micro-batch, so accumulation is not a bigger batch."""
    Trainer(config(4, 1, max_iters=2, model="segformer-b0", checkpoint_interval=0), tmp_path / "a").fit()
    Trainer(config(2, 2, max_iters=2, model="segformer-b0", checkpoint_interval=0), tmp_path / "b").fit()
    assert max_difference(weights(tmp_path / "a", 2), weights(tmp_path / "b", 2)) > 1e-3


def test_stop_and_resume_with_accumulation_is_exact(tmp_path):
    reference = tmp_path / "reference"
    Trainer(config(2, 2, max_iters=5, checkpoint_interval=0), reference).fit()

    step = Trainer.train_step

    def signal_during_step_3(self, micro_batches):
        assert len(micro_batches) == 2
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # arrives during this step's first micro-batch
        return step(self, micro_batches)

    run = tmp_path / "run"
    stopped = Trainer(config(2, 2, max_iters=5, checkpoint_interval=0), run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "train_step", signal_during_step_3)
        stopped.fit()
    assert stopped.stopped_by == "SIGUSR1" and stopped.iteration == 3
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_000003"

    Trainer(config(2, 2, max_iters=5, checkpoint_interval=0), run, resume=True).fit()
    a, b = weights(reference, 5), weights(run, 5)
    assert all(torch.equal(a[k], b[k]) for k in a)  # micro-batch i * 2 onwards: the same data
    strip = lambda rs: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rs]  # noqa: E731
    assert strip(records(reference)) == strip(records(run))


# ------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from datetime import timedelta

    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from segadapter.runtime.distributed import cleanup, init_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    registry._MODELS[MODEL] = build_frozen_bn_segformer  # this process's own registry
    info = init_distributed("cpu", init_method=f"file://{init_file}", timeout=timedelta(seconds=60))
    try:
        cfg = config(2, 2, max_iters=2, checkpoint_interval=0)  # 1 image per rank x 2 micro-batches
        cfg.data.options["num_samples"] = 4
        trainer = Trainer(cfg, os.path.join(out_dir, "run"), dist_info=info)
        forwards, synced_after = [0], []
        trainer.net.register_forward_pre_hook(lambda module, args: forwards.__setitem__(0, forwards[0] + 1))

        def counting_allreduce(state, bucket):  # when does DDP all-reduce: after which forward?
            synced_after.append(forwards[0])
            return allreduce_hook(state, bucket)

        trainer.model.register_comm_hook(None, counting_allreduce)
        trainer.fit()
        Path(out_dir, f"synced_after{rank}.json").write_text(json.dumps(synced_after))
    finally:
        cleanup()


def test_ddp_accumulation_syncs_once_per_step_and_equals_the_big_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        synced_after = json.loads((tmp_path / f"synced_after{rank}.json").read_text())
        # every all-reduce came after the 2nd, 4th forward: none after a step's first micro-batch
        assert synced_after and sorted(set(synced_after)) == [2, 4]
    single = config(4, 1, max_iters=2, checkpoint_interval=0)  # the same 4 images, one batch a step
    single.data.options["num_samples"] = 4
    Trainer(single, tmp_path / "single").fit()
    assert max_difference(weights(tmp_path / "run", 2), weights(tmp_path / "single", 2)) <= 1e-5
