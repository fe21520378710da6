"""`train.compile`: the model's units compiled in place train as eager does (20 steps, losses
within fp32 noise), and a compiled run stopped and resumed ends where an uninterrupted one does.
Also why units and not the whole model: a whole-model inductor graph of `adapt-mit-b0` gives its
decode head zero gradients on CPU (torch 2.13), which the per-unit graphs do not."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import segadapter
from segadapter.engine import Trainer
from segadapter.utils.compile import compile_for_training, compile_units, cxx_compiler
from synthetic_run import synthetic_config

needs_cxx = pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")
STEPS = 20


def config(**train):
    cfg = synthetic_config("adapt-mit-b0", max_iters=STEPS, warmup_iters=2, log_interval=1, eval_interval=0,
                           checkpoint_interval=10, tensorboard_images=0, amp="none", **train)
    cfg.data.crop_size, cfg.data.options["size"] = (64, 64), 72  # the coarse map stays 2x2 or more
    cfg.data.val_split = None  # training steps only
    return cfg


def losses(run) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]


@needs_cxx
def test_compiled_training_matches_eager_and_resumes_exactly(tmp_path):
    Trainer(config(), tmp_path / "eager").fit()
    Trainer(config(compile=True), tmp_path / "compiled").fit()
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == STEPS
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-3, atol=1e-4)

    stopped = Trainer(config(compile=True), tmp_path / "resumed")
    stopped.cfg.schedule.max_iters = 10  # the scheduler was built for 20 steps: the lrs stay the full run's
    stopped.fit()
    Trainer(config(compile=True), tmp_path / "resumed", resume=True).fit()
    assert losses(tmp_path / "resumed") == losses(tmp_path / "compiled")
    final = f"checkpoints/iter_{STEPS:06d}/model.safetensors"
    a, b = load_file(str(tmp_path / "resumed" / final)), load_file(str(tmp_path / "compiled" / final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # keys as eager: no _orig_mod


@needs_cxx
def test_units_cover_the_backbone_adapters_and_head():
    model = segadapter.create_model("adapt-mit-b0", num_classes=5)
    units = compile_units(model)
    owners = {name.split(".")[0] for name, m in model.named_modules() if any(m is u for u in units)}
    assert owners == {"backbone", "adapters", "decode_head"}
    assert all(not isinstance(u, torch.nn.ModuleList) for u in units)


def test_no_compiler_means_eager_with_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    model = segadapter.create_model("segformer-b0", num_classes=5)
    line = compile_for_training(model, "cpu")
    assert line.startswith("train.compile: no C++ compiler") and line.endswith("training runs eager")
    assert all(u._compiled_call_impl is None for u in compile_units(model))
