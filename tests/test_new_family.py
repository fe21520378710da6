"""A new method added by creating files only (tests/query_family/: a tiny query head on a tiny
conv backbone, its converters and its registered variant), run through everything a family of
the toolkit goes through: create_model, pretrained= with its own converters, training (the
engine's Trainer: steps, evaluation, checkpoints), `eval`, `predict`, save_pretrained /
from_pretrained, `export --onnx` (and the .onnx through `predict`), pretrained=True's choice
and the model card - with nothing in `segadapter/` knowing it."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import query_family  # noqa: F401  (registers the family, as the package's models/ would)
import segadapter
from query_family.model import NAME, PUBLISHED
from query_family.weights import RELEASE, to_release
from segadapter.cli.main import main
from segadapter.engine.trainer import Trainer
from segadapter.modeling import published
from segadapter.modeling.meta_arch import SegmentationModel
from synthetic_run import synthetic_config

PACKAGE = Path(segadapter.__file__).parent


def test_the_package_does_not_know_the_family():
    """The proof's premise: no file of segadapter/ names the family or its package."""
    named = [p.relative_to(PACKAGE.parent) for p in PACKAGE.rglob("*") if p.suffix in (".py", ".yaml", ".txt")
             and any(w in p.read_text() for w in ("toyquery", "query_family", "TinyQueryHead"))]
    assert named == []
    assert NAME in segadapter.list_models()


def test_create_model_and_its_own_release_through_its_converters(tmp_path):
    torch.manual_seed(0)
    source = segadapter.create_model(NAME, num_classes=3)
    assert isinstance(source, SegmentationModel) and source.output_stride == 1
    torch.save({"state_dict": to_release(source.state_dict())}, tmp_path / "release.pth")
    torch.manual_seed(1)
    model = segadapter.create_model(NAME, num_classes=3, pretrained=tmp_path / "release.pth")
    report = model.load_report
    assert report.layout == RELEASE and report.fresh == [] and report.ignored == {}
    assert sorted(report.loaded) == sorted(source.state_dict())
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(segadapter.CheckpointError, match="predicts 3 classes"):  # its head's classes_in
        segadapter.create_model(NAME, num_classes=5, pretrained=tmp_path / "release.pth")


def test_published_weights_and_model_card_come_from_its_registration(tmp_path):
    assert published.default_weights(NAME, 3) == PUBLISHED[0]  # the whole model: its class count
    assert published.default_weights(NAME, 4) == PUBLISHED[1]  # else the backbone
    segadapter.create_model(NAME, num_classes=3).save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "- toyquery" in card and f"# {NAME}" in card


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Four training steps on the synthetic dataset with the engine, a validation and checkpoints."""
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(synthetic_config(NAME, max_iters=4, warmup_iters=1, checkpoint_interval=2, eval_interval=4),
                      run_dir)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    metrics = trainer.fit()
    return run_dir, trainer, before, metrics


def test_training_steps_move_every_part(run):
    run_dir, trainer, before, metrics = run
    after = trainer.net.state_dict()
    changed = {k.split(".")[0] for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed == {"backbone", "decode_head"}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert train and {"loss_ce", "loss_mask", "loss_dice", "loss"} <= set(train[-1])
    assert metrics is not None and 0 <= metrics["mIoU"] <= 100


def test_from_pretrained_rebuilds_the_trained_model(run):
    run_dir, trainer, _, _ = run
    model = segadapter.from_pretrained(run_dir).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trainer.net.eval()(x), rtol=0, atol=0)


def test_eval_and_predict_from_the_command_line(run, tmp_path, capsys):
    run_dir, _, _, metrics = run
    assert main(["eval", str(run_dir), "--json", "--no-progress", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-6)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(images / "a.png")
    assert main(["predict", str(run_dir), str(images), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    label = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert label.shape == (36, 44) and label.max() < 3


def test_export_onnx_and_predict_with_it(run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run_dir, _, _, _ = run
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--onnx", str(onnx), "--size", "40", "40"]) == 0, capsys.readouterr().err
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / "b.png")
    for source, out in ((onnx, "onnx"), (run_dir, "torch")):
        assert main(["predict", str(source), str(images), "--out", str(tmp_path / out), "--no-progress"]) == 0
    same = np.asarray(Image.open(tmp_path / "onnx" / "b.png")) == np.asarray(Image.open(tmp_path / "torch" / "b.png"))
    assert same.mean() > 0.99
