"""Checkpoint folders: atomic publication, crash mid-save, pruning, weights_only loading."""
from __future__ import annotations

import datetime

import pytest
import torch

import segadapter
from segadapter.engine import checkpoint as ckpt
from segadapter.engine.rng import get_rng_state
from segadapter.errors import CheckpointError
from segadapter.modeling.model_folder import resolve_model_dir


@pytest.fixture(scope="module")
def model():
    return segadapter.create_model("segformer-b0", num_classes=2)


def state(it):
    return {"iteration": it, "rng": [get_rng_state()], "optimizer": {"state": {}, "param_groups": []}}


def folders(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_save_publishes_complete_folder_and_latest(tmp_path, model):
    folder = ckpt.save_checkpoint(tmp_path, 500, model, state(500))
    assert folder == tmp_path / "checkpoints" / "iter_000500"
    assert {p.name for p in folder.iterdir()} == {"README.md", "config.json", "model.safetensors", "train_state.pt"}
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "iter_000500"
    assert ckpt.latest_checkpoint(tmp_path) == folder
    assert resolve_model_dir(tmp_path) == folder  # the modeling side finds it through `latest`
    loaded = ckpt.load_train_state(folder)  # weights_only=True inside
    assert loaded["iteration"] == 500 and torch.equal(loaded["rng"][0]["torch"], state(0)["rng"][0]["torch"])


@pytest.mark.parametrize("where", ["weights", "train_state"])
def test_crash_mid_save_keeps_previous_latest(tmp_path, model, monkeypatch, where):
    ckpt.save_checkpoint(tmp_path, 10, model, state(10))
    before = (tmp_path / "checkpoints" / "iter_000010" / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if where == "weights":
        monkeypatch.setattr(type(model), "save_pretrained", boom)
    else:
        monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 20, model, state(20))
    monkeypatch.undo()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "iter_000010"
    assert folders(tmp_path) == ["iter_000010", "latest"]  # no half-written folder, no temp left
    assert (tmp_path / "checkpoints" / "iter_000010" / "model.safetensors").read_bytes() == before
    assert ckpt.load_train_state(ckpt.latest_checkpoint(tmp_path))["iteration"] == 10
    segadapter.from_pretrained(tmp_path)  # the run folder still loads as a model


def test_killed_save_leftovers_are_ignored_and_cleaned(tmp_path, model):
    ckpt.save_checkpoint(tmp_path, 10, model, state(10))
    stale = tmp_path / "checkpoints" / ".tmp-iter_000020.abc"  # what a SIGKILL mid-save leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert ckpt.latest_checkpoint(tmp_path).name == "iter_000010"
    ckpt.remove_stale_temporaries(tmp_path)
    assert folders(tmp_path) == ["iter_000010", "latest"]


def test_keep_last_k_and_abandoned_future(tmp_path, model):
    for it in (10, 20, 30, 40):
        ckpt.save_checkpoint(tmp_path, it, model, state(it), keep=2)
    assert folders(tmp_path) == ["iter_000030", "iter_000040", "latest"]
    # A run resumed from 30 that saves 35: 40 belongs to the abandoned continuation.
    ckpt.save_checkpoint(tmp_path, 35, model, state(35), keep=2)
    assert folders(tmp_path) == ["iter_000030", "iter_000035", "latest"]
    # Re-saving an existing iteration replaces it.
    ckpt.save_checkpoint(tmp_path, 35, model, state(35), keep=None)
    assert ckpt.load_train_state(tmp_path / "checkpoints" / "iter_000035")["iteration"] == 35


def test_unsafe_or_broken_state_is_a_checkpoint_error(tmp_path, model):
    folder = ckpt.save_checkpoint(tmp_path, 10, model, state(10))
    torch.save({"iteration": 10, "when": datetime.date(2024, 1, 1)}, folder / "train_state.pt")
    with pytest.raises(CheckpointError, match="train_state.pt"):
        ckpt.load_train_state(folder)  # weights_only refuses arbitrary objects
    (folder / "train_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        ckpt.load_train_state(folder)
    (tmp_path / "checkpoints" / "latest").write_text("iter_999999\n")
    with pytest.raises(CheckpointError, match="iter_999999"):
        ckpt.latest_checkpoint(tmp_path)
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None
