"""save_pretrained / from_pretrained: config JSON + safetensors, rebuilt from the folder alone."""
import json

import pytest
import torch

import segadapter
from segadapter.errors import CheckpointError
from segadapter.modeling.model_folder import resolve_model_dir


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_round_trip_keeps_options_and_weights(tmp_path):
    torch.manual_seed(0)
    model = segadapter.create_model("adapt-mit-b0", num_classes=7, kernel_size=3, blocks_per_stage=[1, 2, 1, 1])
    model.save_pretrained(tmp_path / "m", classes=[f"c{i}" for i in range(7)])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["name"] == "adapt-mit-b0" and cfg["num_classes"] == 7
    assert cfg["options"] == {"kernel_size": 3, "blocks_per_stage": [1, 2, 1, 1]}
    loaded = segadapter.from_pretrained(tmp_path / "m")
    assert loaded.config["classes"][3] == "c3"
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_logits(model, x), _logits(loaded, x))
    # nothing pickled: the weights file is plain safetensors
    assert (tmp_path / "m" / "model.safetensors").read_bytes()[8:9] == b"{"


def test_pretrained_accepts_own_folder(tmp_path):
    torch.manual_seed(1)
    src = segadapter.create_model("segformer-b0", num_classes=4)
    src.save_pretrained(tmp_path)
    dst = segadapter.create_model("segformer-b0", num_classes=4, pretrained=tmp_path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_logits(src, x), _logits(dst, x))


def test_wrong_model_is_a_clear_error(tmp_path):
    segadapter.create_model("segformer-b0", num_classes=4).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        segadapter.create_model("segformer-b1", num_classes=4, pretrained=tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        segadapter.create_model("adapt-mit-b0", num_classes=4, pretrained=tmp_path)


def test_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        segadapter.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a segadapter model folder"):
        segadapter.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        segadapter.from_pretrained(tmp_path)
    segadapter.create_model("segformer-b0", num_classes=4).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        segadapter.from_pretrained(tmp_path)


def test_run_folder_resolves_to_latest_checkpoint(tmp_path):
    ck = tmp_path / "checkpoints" / "iter_000010"
    segadapter.create_model("segformer-b0", num_classes=3).save_pretrained(ck)
    (tmp_path / "checkpoints" / "latest").write_text("iter_000010\n")
    assert resolve_model_dir(tmp_path) == ck
    assert segadapter.from_pretrained(tmp_path).num_classes == 3


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = segadapter.create_model("segformer-b0", num_classes=3)
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    import segadapter.modeling.model_folder as model_folder

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(model_folder, "save_file", boom)
    with pytest.raises(OSError):
        segadapter.create_model("segformer-b0", num_classes=3).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
