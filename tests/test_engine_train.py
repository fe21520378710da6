"""End-to-end training on the built-in synthetic data: loss goes down, the run folder is complete,
and a run killed mid-way and resumed ends with exactly the weights of an uninterrupted run."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import segadapter
from segadapter.cli.main import main
from segadapter.engine import Trainer, load_config, lr_factor
from segadapter.errors import CheckpointError
from synthetic_run import synthetic_config

MAX_ITERS = 40
KILL_AT = 25  # between the checkpoints at 20 and 30: the resumed run redoes 21..25


def tiny_config(**train):
    """segformer-b0 on 6 synthetic 40x40 images, 32x32 crops, batch 2 (3 batches per epoch)."""
    return synthetic_config(max_iters=MAX_ITERS, **{"log_interval": 5, "eval_interval": 15,
                                                    "checkpoint_interval": 10, **train})


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    Trainer(tiny_config(), run).fit()
    return run


def records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def weights(run):
    return load_file(str(run / "checkpoints" / f"iter_{MAX_ITERS:06d}" / "model.safetensors"))


def test_loss_decreases_and_run_folder_is_complete(full_run):
    train = records(full_run, "train")
    assert [r["iter"] for r in train] == list(range(5, MAX_ITERS + 1, 5))
    assert train[-1]["loss"] < 0.8 * train[0]["loss"]
    assert all(r["lr"] > 0 and r["images_per_s"] > 0 for r in train)
    val = records(full_run, "val")
    assert [r["iter"] for r in val] == [15, 30, 40] and all(0 <= r["mIoU"] <= 100 for r in val)
    assert (full_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(full_run / "config.yaml") == tiny_config()  # the resolved config reloads
    ckpts = sorted(p.name for p in (full_run / "checkpoints").iterdir())
    assert ckpts == [f"iter_{i:06d}" for i in (10, 20, 30, 40)] + ["latest"]
    model = segadapter.from_pretrained(full_run)  # resolves checkpoints/latest
    assert model.config["classes"][:2] == ["background", "disc"] and len(model.config["palette"]) == 5
    # the checkpoint's model card carries the run's dataset and its latest validation (the Hub's reader)
    from huggingface_hub import ModelCard

    card = ModelCard.load(full_run / "checkpoints" / f"iter_{MAX_ITERS:06d}" / "README.md")
    assert card.data.datasets == ["synthetic"] and card.data.library_name == "segadapter"
    assert {r.metric_name: r.metric_value for r in card.data.eval_results}["mIoU"] == val[-1]["mIoU"]


def test_resume_after_kill_matches_uninterrupted_run(full_run, tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    step = Trainer.train_step

    def dying_step(self, batch):
        if self.iteration == KILL_AT - 1:
            raise Killed
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(Killed):
        Trainer(tiny_config(), tmp_path).fit()
    monkeypatch.undo()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "iter_000020"
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(tiny_config(), tmp_path)  # never silently overwrite a run

    resumed = Trainer(tiny_config(), tmp_path, resume=True)
    assert resumed.iteration == 20
    resumed.fit()
    a, b = weights(full_run), weights(tmp_path)
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    assert all(torch.equal(a[k], b[k]) for k in a)  # CPU, same ops in the same order: bitwise
    strip = [{k: v for k, v in r.items() if k != "images_per_s"} for r in records(full_run, "train")]
    assert strip == [{k: v for k, v in r.items() if k != "images_per_s"} for r in records(tmp_path, "train")]
    assert records(full_run, "val") == records(tmp_path, "val")


def test_cli_train_resume_and_errors(tmp_path, capsys):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(json.dumps(tiny_config().to_dict()))  # JSON is YAML
    run = tmp_path / "run"
    assert main(["train", str(cfg_file), "schedule.max_iters=6", "--work-dir", str(run)]) == 0
    assert "done:" in capsys.readouterr().out
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_000006"

    assert main(["train", str(cfg_file), "--work-dir", str(run), "schedule.max_iters=6"]) == 2
    assert "--resume" in capsys.readouterr().err
    # `--resume RUN` alone reuses the run's config.yaml; an override extends the schedule.
    assert main(["train", "--resume", str(run), "schedule.max_iters=8"]) == 0
    assert "config changed since the run started: schedule.max_iters: 6 -> 8" in capsys.readouterr().out
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_000008"
    assert load_config(run / "config.yaml").schedule.max_iters == 8
    last = records(run, "train")[-1]  # the extension follows the new schedule, not the old one's 0
    assert last["iter"] == 8 and last["lr"] == pytest.approx(1e-3 * lr_factor(7, 8, 5))

    assert main(["train", str(cfg_file), "optim.lrr=1", "--work-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segadapter train: error:") and "did you mean 'optim.lr'" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing written for a bad config


def test_cli_default_run_name():
    from segadapter.cli.train import default_run_name

    assert default_run_name("adapt-mit_ade20k", "adapt-mit-b2") == "adapt-mit-b2_ade20k"
    assert default_run_name("adapt-mit_ade20k", "segformer-b2") == "adapt-mit_ade20k"
    assert default_run_name("synthetic", "adapt-mit-b0") == "synthetic"


def test_bf16_channels_last_and_clipping(tmp_path):
    cfg = tiny_config(amp="bf16", channels_last=True, log_interval=2, eval_interval=0, checkpoint_interval=0)
    cfg.schedule.max_iters, cfg.optim.grad_clip, cfg.data.val_split = 4, 0.5, None
    trainer = Trainer(cfg, tmp_path)
    assert trainer.amp_dtype is torch.bfloat16
    assert trainer.net.backbone.stages[0].patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.fit() is None  # no validation split
    train = records(tmp_path, "train")
    assert [r["iter"] for r in train] == [2, 4]
    assert all(r["grad_norm"] > 0 and r["loss"] > 0 for r in train)
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "iter_000004"  # saved at the end


def test_fp16_on_cpu_is_a_config_error(tmp_path):
    from segadapter.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(tiny_config(amp="fp16"), tmp_path)
    assert not tmp_path.joinpath("config.yaml").exists()


def test_pretrained_weights_are_the_starting_point(tmp_path, capsys):
    torch.manual_seed(123)
    source = segadapter.create_model("segformer-b0", num_classes=5)
    source.save_pretrained(tmp_path / "init")
    cfg = tiny_config()
    cfg.model.pretrained = str(tmp_path / "init")
    trainer = Trainer(cfg, tmp_path / "run")
    assert "pretrained: loaded" in capsys.readouterr().out
    for name, p in trainer.net.state_dict().items():
        assert torch.equal(p, source.state_dict()[name]), name
