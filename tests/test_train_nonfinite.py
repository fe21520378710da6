"""Non-finite losses and gradients: the step is skipped (weights and optimizer state unchanged),
logged with its iteration and the loss term; `train.max_bad_steps` in a row stop the run with one
clear error and the last good checkpoint intact.

The model is segformer-b0 whose training forward returns NaN (or, for the gradient case, a finite
loss with an infinite gradient) on chosen calls: registered for these tests only.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import segadapter
from segadapter.cli.main import main
from segadapter.engine import Trainer, load_train_state
from segadapter.engine.config import config_from_dict
from segadapter.modeling import registry

MODEL = "test-segformer-b0-nan"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BAD_CALLS: set[int] = set()  # training forwards (1-based) that go wrong
HOW = {"kind": "nan"}


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward; the gradient flowing back through it becomes infinite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def build_sometimes_nan_segformer(num_classes, **options):
    model = segadapter.create_model("segformer-b0", num_classes=num_classes)
    calls = [0]

    def spoil(module, args, kwargs, out):
        if kwargs.get("labels") is None:
            return out  # evaluation
        calls[0] += 1
        if calls[0] not in BAD_CALLS:
            return out
        out = dict(out)
        if HOW["kind"] == "nan":
            out["loss_main"] = out["loss_main"] * float("nan")
            out["loss"] = out["loss_main"]
        else:
            out["loss"] = _InfiniteGradient.apply(out["loss"])
        return out

    model.register_forward_hook(spoil, with_kwargs=True)
    return model


@pytest.fixture(autouse=True)
def sometimes_nan_model(monkeypatch):
    monkeypatch.setitem(registry._MODELS, MODEL, build_sometimes_nan_segformer)
    BAD_CALLS.clear()
    HOW["kind"] = "nan"


def config(**train):
    return config_from_dict({
        "model": {"name": MODEL},
        "data": {"dataset": "synthetic", "crop_size": 32, "scale": None, "batch_size": 2, "num_workers": 0,
                 "val_split": None, "options": {"size": 40, "num_samples": 6}},
        "optim": {"lr": 1e-3},
        "schedule": {"max_iters": 7, "warmup_iters": 1},
        "train": {"log_interval": 1, "eval_interval": 0, "checkpoint_interval": 1, "progress": False,
                  "device": "cpu", "loggers": ["jsonl"], **train},
    })


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def checkpoint(run, it):
    folder = run / "checkpoints" / f"iter_{it:06d}"
    return load_file(str(folder / "model.safetensors")), load_train_state(folder)["optimizer"]["state"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_steps_are_skipped_without_changing_weights_or_optimizer_state(tmp_path):
    BAD_CALLS.update({3, 4})
    Trainer(config(), tmp_path).fit()
    w2, opt2 = checkpoint(tmp_path, 2)
    w4, opt4 = checkpoint(tmp_path, 4)
    w5, _ = checkpoint(tmp_path, 5)
    assert same(w2, w4)  # steps 3 and 4 changed nothing...
    assert opt2.keys() == opt4.keys() and all(same(opt2[k], opt4[k]) for k in opt2)  # ...not Adam's moments
    assert not same(w4, w5)  # step 5 trained again
    recs = records(tmp_path)
    skipped = [r for r in recs if r["type"] == "skipped"]
    assert [(r["iter"], r["reason"]) for r in skipped] == [(3, "loss_main is nan"), (4, "loss_main is nan")]
    train = [r for r in recs if r["type"] == "train"]
    assert [r["iter"] for r in train] == [1, 2, 5, 6, 7]  # no NaN averaged into a logged loss
    assert all(r["loss"] is not None and r["loss"] > 0 for r in train)


def test_an_infinite_gradient_with_a_finite_loss_is_skipped_too(tmp_path):
    BAD_CALLS.add(2)
    HOW["kind"] = "inf-gradient"
    Trainer(config(), tmp_path).fit()
    (skipped,) = [r for r in records(tmp_path) if r["type"] == "skipped"]
    assert skipped["iter"] == 2 and skipped["reason"].startswith("gradient of ") and "not finite" in skipped["reason"]
    assert same(checkpoint(tmp_path, 1)[0], checkpoint(tmp_path, 2)[0])


def test_too_many_bad_steps_in_a_row_stop_with_one_error(tmp_path, capsys):
    BAD_CALLS.update(range(4, 100))  # every step from 4 on
    cfg_file = tmp_path / "nan.yaml"
    cfg = config(max_bad_steps=3)
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    assert main(["train", str(cfg_file), "--work-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "segadapter train: error: training stopped: 3 steps in a row had a non-finite loss or gradient")
    assert "iteration 6: loss_main is nan" in err[0] and "iter_000005" in err[0]
    assert [r["iter"] for r in records(run) if r["type"] == "skipped"] == [4, 5, 6]
    # No checkpoint for the step that ended the run; those written during the streak hold the
    # weights of step 3, the last good one.
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-2:] == ["iter_000005", "latest"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_000005"
    assert same(checkpoint(run, 3)[0], checkpoint(run, 5)[0])
    assert not same(checkpoint(run, 2)[0], checkpoint(run, 3)[0])
