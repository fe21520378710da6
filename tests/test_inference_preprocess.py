"""The preprocessing record: round trips, resize rules against direct formulas, training runs write
it, folders without one keep the old behaviour (said once), and export carries it."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from inference_helpers import normalise, save_tiny, tiny_model
from segadapter.data.transforms import build_transforms
from segadapter.errors import ConfigError
from segadapter.inference import LegacyPreprocessingWarning, Preprocessing, preprocessing_of

RULES = [
    Preprocessing(),
    Preprocessing(scale=(320, 240)),
    Preprocessing(scale=(64, 48), keep_ratio=False, mean=(0.5, 0.5, 0.5), std=(2, 2, 2)),
    Preprocessing(short_side=512, max_size=1024, mode="slide", crop_size=(64, 64), stride=(32, 48), flip=True),
    Preprocessing(short_side=100, classes=["a", "b"], palette=[[1, 2, 3], [4, 5, 6]]),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("pre", RULES)
def test_round_trip_through_json_and_a_model_folder(pre, tmp_path):
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    folder = save_tiny(tmp_path / "m", preprocessing=pre)
    assert json.loads((folder / "config.json").read_text())["preprocessing"] == pre.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a folder with a record says nothing
        loaded = preprocessing_of(segadapter.from_pretrained(folder), source=str(folder))
    assert loaded == pre and loaded.recorded


def test_resize_rules_follow_their_formulas():
    h, w = 360, 480
    # keep ratio, MMSeg: scale factor min(long_max / long, short_max / short)
    f = min(320 / 480, 240 / 360)
    assert Preprocessing(scale=(320, 240)).resized_size(h, w) == (int(h * f + 0.5), int(w * f + 0.5)) == (240, 320)
    f = min(2048 / 480, 512 / 360)
    assert Preprocessing(scale=(2048, 512)).resized_size(h, w) == (int(h * f + 0.5), int(w * f + 0.5)) == (512, 683)
    assert Preprocessing(scale=(64, 48), keep_ratio=False).resized_size(h, w) == (48, 64)
    assert Preprocessing(short_side=180).resized_size(h, w) == (180, 240)
    assert Preprocessing(short_side=180, max_size=200).resized_size(h, w) == (150, 200)  # 200 / 480 wins
    assert Preprocessing().resized_size(h, w) == (h, w)


def test_transform_equals_the_eval_pipeline_and_a_hand_written_one():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    pre = Preprocessing(scale=(32, 24))
    x = pre(image)
    assert torch.equal(x, build_transforms(False, scale=(32, 24))(image)[0])  # what eval used so far
    size = pre.resized_size(45, 70)
    by_hand = normalise(np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR)))
    torch.testing.assert_close(x, by_hand, rtol=0, atol=1e-5)
    custom = Preprocessing(mean=(10, 20, 30), std=(2, 4, 8))(image)
    torch.testing.assert_close(custom, normalise(image, (10, 20, 30), (2, 4, 8)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("raw, named", [
    ({"resize": {"scale": [320]}}, "scale"),
    ({"resize": {"scale": [320, 240], "short_side": 100}}, "either scale or short_side"),
    ({"normalize": {"mean": [1, 2]}}, "mean"),
    ({"normalize": {"std": [1, 0, 1]}}, "std"),
    ({"inference": {"mode": "tiles"}}, "mode"),
    ({"inference": {"mode": "slide"}}, "crop_size"),
    ({"inference": {"mode": "whole", "crop_size": [8, 8]}}, "slide"),
    ({"colour": 1}, "'colour'"),
    ({"version": 99}, "version 99"),
    ({"palette": [[1, 2]]}, "palette"),
])
def test_bad_records_raise_config_error_naming_source_and_key(raw, named):
    with pytest.raises(ConfigError) as e:
        Preprocessing.from_dict(raw, source="m/config.json")
    assert "m/config.json" in str(e.value) and named in str(e.value)


def test_folder_without_record_keeps_old_behaviour_said_once(tmp_path):
    folder = tmp_path / "old"
    tiny_model().save_pretrained(folder, classes=["a", "b", "c"], palette=[[1, 1, 1], [2, 2, 2], [3, 3, 3]])
    model = segadapter.from_pretrained(folder)
    with pytest.warns(LegacyPreprocessingWarning, match="no preprocessing record") as record:
        pre = preprocessing_of(model, source=str(folder))
    assert str(folder) in str(record[0].message)
    assert not pre.recorded and pre.scale is None and pre.short_side is None and pre.mode == "whole"
    assert pre.classes == ("a", "b", "c") and pre.palette[2] == (3, 3, 3)  # the top-level keys
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocessing_of(model, source=str(folder))  # said once per folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from segadapter.engine import load_config
    from segadapter.engine.trainer import Trainer

    cfg = load_config("synthetic", [
        "schedule.max_iters=1", "schedule.warmup_iters=0", "data.crop_size=[32,32]", "data.batch_size=2",
        "data.options={size: 48, num_samples: 2}", "data.val_options={num_samples: 1}", "data.scale=[40,30]",
        "data.transform_options={mean: [100, 110, 120], std: [50, 51, 52]}", "model.name=segformer-b0",
        "model.options={decoder_channels: 32}", "train.progress=false", "train.device=cpu", "train.amp=none",
        "eval.mode=slide", "eval.crop_size=[32,32]", "eval.stride=[16,16]"])
    run = tmp_path_factory.mktemp("run") / "run"
    Trainer(cfg, run).fit()
    return run


def test_training_run_records_its_test_pipeline(run_dir):
    config = json.loads((run_dir / "checkpoints/iter_000001/config.json").read_text())
    pre = Preprocessing.from_dict(config["preprocessing"])
    assert pre.scale == (40, 30) and pre.keep_ratio
    assert pre.mean == (100, 110, 120) and pre.std == (50, 51, 52)
    assert (pre.mode, pre.crop_size, pre.stride) == ("slide", (32, 32), (16, 16))
    assert list(pre.classes) == config["classes"] and [list(c) for c in pre.palette] == config["palette"]


def test_eval_of_an_old_run_keeps_its_data_scale_and_says_so(run_dir, tmp_path, capsys):
    from segadapter.cli.main import main

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    config_path = old / "checkpoints/iter_000001/config.json"
    config = json.loads(config_path.read_text())
    del config["preprocessing"]  # as written before the record existed
    config_path.write_text(json.dumps(config))
    args = ["eval", str(old), "--json", "--no-progress", "--workers", "0"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["scale"] == [40, 30] and result["mode"] == "whole"  # today's behaviour: data.scale, whole
    assert err.count("no preprocessing record") == 1
    assert main(["eval", str(run_dir), "--json", "--no-progress", "--workers", "0"]) == 0
    new = json.loads(capsys.readouterr().out)  # the run with its record: eval follows it, slide included
    assert new["scale"] == [40, 30] and new["mode"] == "slide" and new["crop_size"] == [32, 32]


def test_export_writes_the_record_into_onnx_metadata(tmp_path):
    pytest.importorskip("onnx")
    from segadapter.export import METADATA_KEY, export_onnx, read_metadata

    pre = Preprocessing(scale=(64, 48), classes=["a", "b", "c"])
    model = segadapter.from_pretrained(save_tiny(tmp_path / "m", preprocessing=pre))
    path = export_onnx(model, tmp_path / "m.onnx", sample_size=(48, 64))
    assert Preprocessing.from_dict(json.loads(read_metadata(path)[METADATA_KEY])) == pre


def test_a_model_class_may_name_defaults_for_unrecorded_instances():
    model = tiny_model()
    model.default_preprocessing = {"mean": (122.8, 116.7, 104.1), "std": (68.5, 66.6, 70.3)}  # CLIP's
    pre = preprocessing_of(model)
    assert pre.mean == (122.8, 116.7, 104.1) and pre.std == (68.5, 66.6, 70.3) and not pre.recorded
    model.config["preprocessing"] = Preprocessing(scale=(8, 8)).to_dict()
    assert preprocessing_of(model).mean == Preprocessing().mean  # a record always wins
