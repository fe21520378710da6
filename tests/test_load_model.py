"""`inference.load.load_model`: the one way from what a user names to a runnable model - a model
object, a saved folder, a training run folder, a hub id of a saved folder, an .onnx export."""
import pytest
import torch

import segadapter
from segadapter.errors import CheckpointError, ConfigError
from segadapter.inference.load import load_model
from segadapter.inference.onnx_network import OnnxNetwork


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = segadapter.create_model("segformer-b0", num_classes=3, decoder_channels=32)
    d = tmp_path_factory.mktemp("m") / "tiny"
    model.save_pretrained(d, classes=["a", "b", "c"], preprocessing={"resize": {"scale": [64, 48], "keep_ratio": True}})
    return d


def _same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_saved_folder_and_a_run_folder(folder, tmp_path):
    loaded = load_model(folder)
    assert loaded.source == folder and loaded.config_file == folder / "config.json"
    assert not loaded.model.training and loaded.record.recorded and loaded.record.scale == (64, 48)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "iter_000004").symlink_to(folder, target_is_directory=True)
    (run / "checkpoints" / "latest").write_text("iter_000004\n")
    from_run = load_model(run)
    assert from_run.source == run / "checkpoints" / "iter_000004"
    assert _same_weights(from_run.model, loaded.model)


def test_a_model_object_keeps_its_record():
    model = segadapter.create_model("segformer-b0", num_classes=2, decoder_channels=32).train()
    loaded = load_model(model, device="cpu")
    assert loaded.model is model and not model.training and loaded.source is None and not loaded.record.recorded


def test_an_onnx_export(folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from segadapter.export import export_onnx

    path = export_onnx(segadapter.from_pretrained(folder), tmp_path / "m.onnx", sample_size=(48, 64))
    loaded = load_model(path)
    assert isinstance(loaded.model, OnnxNetwork) and loaded.source == path and loaded.config_file == path
    assert loaded.record.scale == (64, 48) and loaded.model.num_classes == 3


def test_what_it_refuses(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing")
    with pytest.raises(ConfigError, match="got int"):
        load_model(3)
