"""SegDeformer as a registered model: published MiT / ConvNeXt weights load into its backbone (the
head reported fresh), wrong-family checkpoints get one clear error, the shipped configs build, and
on real CamVid data a short schedule learns (skipped without ../shared)."""
import os
from pathlib import Path

import pytest
import torch

import segadapter
from segadapter.errors import CheckpointError, ConfigError

CAMVID = Path(os.environ.get("SEGADAPTER_CAMVID", Path(__file__).resolve().parents[2] / "shared/data/camvid"))


def _perturbed(name: str, **kw):
    torch.manual_seed(0)
    model = segadapter.create_model(name, num_classes=7, **kw).eval()
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point() and not k.endswith("running_var"):
                t.add_(torch.randn_like(t) * 0.05)
    return model


# norm_eps=None: Segformer's LayerNorm eps (SegDeformer's default is mmseg's 1e-6 everywhere), so
# that the two backbones compute the same features below
@pytest.mark.parametrize("src_name,dst_name,dst_options", [("segformer-b0", "segdeformer-mit-b0", {"norm_eps": None}),
                                                           ("convnext-t", "segdeformer-convnext-t", {})])
def test_backbone_weights_load_and_head_is_fresh(tmp_path, src_name, dst_name, dst_options):
    src = _perturbed(src_name)
    # a published full Segformer / ConvNeXt checkpoint in our names, All-MLP head included
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pth")
    model = segadapter.create_model(dst_name, num_classes=7, pretrained=tmp_path / "w.pth", **dst_options).eval()
    ours = model.state_dict()
    for k, v in src.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(ours[k], v), k
    report = model.load_report
    assert report.fresh and all(k.startswith("decode_head.") for k in report.fresh)
    assert "decode_head" in str(report)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.extract_features(x)[0], src.extract_features(x)[0]))


def test_checkpoint_of_another_family_is_one_clear_error(tmp_path):
    torch.save(_perturbed("convnext-t").state_dict(), tmp_path / "convnext.pth")
    with pytest.raises(CheckpointError, match=r"convnext\.pth: this is a ConvNeXt checkpoint.*MiT"):
        segadapter.create_model("segdeformer-mit-b0", num_classes=7, pretrained=tmp_path / "convnext.pth")


def test_save_and_reload_and_training_step():
    model = segadapter.create_model("segdeformer-mit-b0", num_classes=5, channels=32)
    labels = torch.randint(0, 5, (2, 64, 64))
    out = model.train()(torch.randn(2, 3, 64, 64), labels=labels)
    assert set(out) == {"loss", "loss_main", "loss_aux"}  # the training forward: losses only
    assert torch.allclose(out["loss"], out["loss_main"] + out["loss_aux"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="channels must be a positive integer"):
        segadapter.create_model("segdeformer-mit-b0", num_classes=5, channels=0)
    model = segadapter.create_model("segdeformer-mit-b0", num_classes=5, attention_reduction=3).eval()
    with pytest.raises(ConfigError, match="attention_reduction"):
        model(torch.randn(1, 3, 64, 64))  # a 16x16 stride-4 map is not divisible by 3


@pytest.mark.parametrize("config", ["segdeformer-mit_ade20k", "segdeformer-mit_cityscapes",
                                    "segdeformer-convnext_ade20k", "segdeformer-mit_camvid-cpu"])
def test_shipped_configs_build(config):
    from segadapter.engine import load_config
    from segadapter.engine.builders import build_model

    cfg = load_config(config, [])
    with torch.device("meta"):
        model = build_model(cfg.model, [f"c{i}" for i in range(11)], [[0, 0, 0]] * 11)
    assert model.config["name"].startswith("segdeformer-")


@pytest.mark.skipif(not (CAMVID / "trainannot").is_dir(), reason=f"CamVid not found at {CAMVID}")
def test_short_camvid_training_beats_untrained_by_far(tmp_path):
    """segdeformer-mit-b0 from scratch, 150 iterations at 1/3 resolution (the SegAdapter evidence
    test's schedule): val mIoU far above the untrained model."""
    from segadapter.engine import load_config
    from segadapter.engine.trainer import Trainer

    iters = 150
    cfg = load_config("segdeformer-mit_camvid-cpu", [
        f"data.root={CAMVID}", "data.scale=[160,120]", "data.crop_size=[120,160]", "data.batch_size=8",
        "data.num_workers=0", f"schedule.max_iters={iters}", "schedule.warmup_iters=15", "optim.lr=1e-3",
        f"train.eval_interval={iters}", f"train.checkpoint_interval={iters}", "train.progress=false",
    ])
    trainer = Trainer(cfg, tmp_path / "run")
    untrained = trainer.evaluate()["mIoU"]
    trained = trainer.fit()["mIoU"]
    print(f"CamVid val mIoU: untrained {untrained:.1f}, after {iters} iterations {trained:.1f}")
    assert untrained < 10
    assert trained > untrained + 10
