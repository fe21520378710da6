"""Config files: shipped configs, _base_ inheritance, overrides with YAML typing, strict errors."""
from __future__ import annotations

import pytest

from segadapter.engine import list_configs, load_config, save_config
from segadapter.engine.config import Config, config_from_dict
from segadapter.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def cfg_files(tmp_path):
    write(tmp_path / "base.yaml", "optim:\n  lr: 6e-5\n  betas: [0.9, 0.999]\ndata:\n  crop_size: 512\n")
    write(tmp_path / "child.yaml",
          "_base_: base.yaml\nmodel: {name: adapt-mit-b0, options: {kernel_size: 3}}\noptim:\n  weight_decay: 0.05\n")
    return tmp_path


def test_base_inheritance_and_yaml_typing(cfg_files):
    cfg = load_config(cfg_files / "child.yaml")
    assert cfg.optim.lr == pytest.approx(6e-5) and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads 6e-5 as str
    assert cfg.optim.weight_decay == 0.05 and cfg.optim.betas == (0.9, 0.999)
    assert cfg.data.crop_size == (512, 512)  # a scalar means square
    assert cfg.model.options == {"kernel_size": 3}
    assert cfg.schedule.max_iters == Config().schedule.max_iters  # untouched keys keep the defaults


def test_overrides_are_typed_as_yaml(cfg_files):
    cfg = load_config(cfg_files / "child.yaml", [
        "optim.lr=1e-4", "data.crop_size=[256, 320]", "optim.layer_decay=0.9", "model.pretrained=null",
        "train.amp=bf16", "model.options.mu_learnable=false", "data.val_split=null",
    ])
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.data.crop_size == (256, 320)
    assert cfg.optim.layer_decay == 0.9 and cfg.train.amp == "bf16"
    assert cfg.model.options == {"kernel_size": 3, "mu_learnable": False}  # merged into the file's dict
    assert cfg.data.val_split is None


@pytest.mark.parametrize("where, text, needles", [
    ("file", "optim:\n  lrr: 1\n", ["bad.yaml", "optim.lrr", "did you mean 'optim.lr'"]),
    ("file", "optimm:\n  lr: 1\n", ["bad.yaml", "optimm"]),
    ("override", "train.lr=1", ["override 'train.lr=1'", "train.lr", "did you mean 'optim.lr'"]),
    ("override", "schedule.max_iter=10", ["schedule.max_iter", "did you mean 'schedule.max_iters'"]),
])
def test_unknown_key_names_origin_and_suggestion(cfg_files, where, text, needles):
    if where == "file":
        write(cfg_files / "bad.yaml", "_base_: child.yaml\n" + text)
        args = (cfg_files / "bad.yaml", [])
    else:
        args = (cfg_files / "child.yaml", [text])
    with pytest.raises(ConfigError) as e:
        load_config(*args)
    for needle in needles:
        assert needle in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=1.5", "data.batch_size"),
    ("data.batch_size=true", "data.batch_size"),  # a bool is not an int
    ("optim.lr=fast", "optim.lr"),
    ("train.amp=fp32", "train.amp"),
    ("data.crop_size=[1, 2, 3]", "data.crop_size"),
    ("optim.betas=[0.9, yes]", "optim.betas[1]"),
    ("model.options=3", "model.options"),
    ("model.name=[a]", "model.name"),
])
def test_wrong_type_names_override_and_key(cfg_files, override, key):
    with pytest.raises(ConfigError) as e:
        load_config(cfg_files / "child.yaml", [override])
    assert f"override {override!r}" in str(e.value) and key in str(e.value)


def test_wrong_type_in_file_names_the_file(cfg_files):
    write(cfg_files / "bad.yaml", "_base_: child.yaml\nschedule:\n  max_iters: many\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: schedule\.max_iters: expected int"):
        load_config(cfg_files / "bad.yaml")


@pytest.mark.parametrize("override, needle", [
    ("schedule.warmup_iters=200000", "schedule.warmup_iters"),
    ("optim.lr=0", "optim.lr"),
    ("optim.layer_decay=1.5", "optim.layer_decay"),
    ("eval.mode=slide", "eval.crop_size"),
    ("noequals", "key.sub=value"),
    ("optim.lr=[1", "not valid YAML"),
])
def test_value_checks(cfg_files, override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(cfg_files / "child.yaml", [override])


def test_base_cycle_and_missing_base(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(tmp_path / "c.yaml")


def test_unknown_config_name_suggests_shipped(tmp_path):
    with pytest.raises(ConfigError, match="adapt-mit_ade20k"):
        load_config("adapt-mit_ade20kk")


def test_saved_config_round_trips(cfg_files, tmp_path):
    cfg = load_config(cfg_files / "child.yaml", ["optim.lr=1e-4", "eval.mode=slide", "eval.crop_size=64",
                                                  "eval.stride=[32, 48]"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "config.yaml"]  # no temp file left


def test_config_from_dict_rejects_non_mapping_section():
    with pytest.raises(ConfigError, match="optim: expected a mapping"):
        config_from_dict({"optim": [1, 2]})


def test_every_shipped_config_is_valid_and_buildable():
    import segadapter
    from segadapter.data import DATASET_NAMES

    names = list_configs()
    assert {"synthetic", "adapt-mit_ade20k", "adapt-convnext_cityscapes", "segformer_coco-stuff164k",
            "semask-mit_ade20k", "convnext_ade20k", "adapt-mit_camvid-cpu"} <= set(names)
    models = set(segadapter.list_models())
    for name in names:
        cfg = load_config(name)
        assert cfg.model.name in models, name
        assert cfg.data.dataset in DATASET_NAMES, name
        assert (cfg.optim.layer_decay is not None) == ("convnext" in cfg.model.name), name


def test_paper_recipes():
    ade = load_config("adapt-mit_ade20k")
    assert (ade.optim.lr, ade.optim.weight_decay, ade.optim.head_lr_mult, ade.optim.adapter_lr_mult) == (
        pytest.approx(6e-5), 0.01, 10.0, 7.0)
    assert (ade.schedule.max_iters, ade.schedule.warmup_iters, ade.data.batch_size) == (160_000, 1500, 16)
    assert ade.data.crop_size == (512, 512)
    city = load_config("segformer_cityscapes")
    assert (city.data.crop_size, city.data.batch_size, city.schedule.max_iters) == ((768, 768), 8, 160_000)
    coco = load_config("semask-mit_coco-stuff164k")
    assert (coco.data.crop_size, coco.schedule.max_iters) == ((512, 512), 80_000)
    cnx = load_config("adapt-convnext_ade20k")
    assert (cnx.optim.lr, cnx.optim.weight_decay, cnx.optim.layer_decay) == (pytest.approx(1e-4), 0.05, 0.9)


def test_camvid_cpu_config_reads_the_project_copy():
    from pathlib import Path

    from segadapter.engine.builders import build_datasets

    cfg = load_config("adapt-mit_camvid-cpu")
    if not Path(cfg.data.root).is_dir():
        pytest.skip(f"CamVid not at {cfg.data.root} (relative to the repository root)")
    train, val = build_datasets(cfg.data)
    assert (len(train), len(val), len(train.classes)) == (367, 101, 11)
    item = train[0]
    assert tuple(item["image"].shape) == (3, 192, 256) and tuple(item["label"].shape) == (192, 256)
    v = val[0]
    assert tuple(v["image"].shape) == (3, 240, 320) and tuple(v["label"].shape) == (360, 480)  # labels at full res
