"""SAN's zero-shot suite end to end on tiny prepared fixtures with a random tiny CLIP (it must run,
not score): `eval --dataset NAME` uses SAN's class names and protocol (short side 640, whole image),
prints the mIoU rules where they differ, and `benchmarks/san_zero_shot.py` runs the five and prints
the paper's table beside the published numbers. ~20 s: every image is segmented at short side 640."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from raw_datasets import ADE_VAL, SMALL_ADE_FULL_ENTRIES, make_ade_full, make_pcontext, make_voc
from segadapter.cli.main import main
from segadapter.data.metainfo import ADE20K_DETECTRON2_CLASSES, PCONTEXT459_CLASSES
from segadapter.data.prepare import prepare
from segadapter.modeling.backbones import clip as clip_module

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TINY = "tiny-san-zero-shot-test"
TINY_CLIP = clip_module.ClipConfig(32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2),
                                   clip_module.ClipTextConfig(77, 600, 32, 2, 2))
SMALL = dict(clip_config_override=TINY, side_width=48, side_heads=2, side_depth=4, num_queries=10)


@pytest.fixture(scope="module", autouse=True)
def tiny_clip_config():
    clip_module.CLIP_CONFIGS[TINY] = TINY_CLIP
    yield
    clip_module.CLIP_CONFIGS.pop(TINY, None)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A random-CLIP SAN "trained" on three COCO names, and the five benchmarks prepared from tiny raw files."""
    d = tmp_path_factory.mktemp("zero_shot")
    torch.manual_seed(0)
    segadapter.create_model("san-vit-b16", classes=["grass", "water", "wall"], **SMALL).save_pretrained(d / "san")
    make_voc(d / "raw_voc")
    prepare("voc", d / "raw_voc", d / "VOC2012", splits=["val"], progress=False)
    make_pcontext(d / "raw_pc")
    prepare("pcontext59", d / "raw_pc", d / "pcontext", splits=["val"], progress=False)
    prepare("pcontext459", d / "raw_pc", d / "pcontext_full", splits=["val"], progress=False)
    make_ade_full(d / "raw_ade", [2978, 312, 3148, 5], SMALL_ADE_FULL_ENTRIES)
    prepare("ade20k-full", d / "raw_ade", d / "ADE20K_2021_17_01", splits=["val"], progress=False)
    ade150 = d / "ADEChallengeData2016"
    for n in (2, 3):  # the real ADE20K fixtures where ../shared has them, else small stand-ins
        for kind, ext in (("images", ".jpg"), ("annotations", ".png")):
            target = ade150 / kind / "validation" / f"ADE_val_0000000{n}{ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            real = ADE_VAL.parents[1] / kind / "validation" / target.name
            if real.is_file():
                shutil.copy(real, target)
            elif kind == "images":
                Image.fromarray(np.full((36, 48, 3), 90 * n, np.uint8)).save(target)
            else:
                Image.fromarray(np.arange(36 * 48).reshape(36, 48).astype(np.uint8) % 151).save(target)
    return d


def _eval(capsys, suite, dataset, root, *extra):
    code = main(["eval", str(suite / "san"), "--data", str(root), "--dataset", dataset, "--device", "cpu",
                 "--no-progress", "--workers", "0", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_on_pcontext459_uses_san_names_and_protocol(capsys, suite):
    code, out, err = _eval(capsys, suite, "pcontext459", suite / "pcontext_full", "--placeholder-names", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["zero_shot"] and r["protocol"] == "official" and r["placeholder_names"]
    assert (r["short_side"], r["max_size"], r["mode"]) == (640, 2560, "whole")
    assert list(r["per_class"]) == PCONTEXT459_CLASSES and r["images"] == 3
    rules = r["mIoU_by_rule"]
    assert rules["all"]["classes"] == 459 and rules["present"]["classes"] == 5  # LabelMap values 0-4 of 5
    assert r["mIoU"] == rules["seen"]["mIoU"]
    assert "PC-459 as SAN evaluates it" in err


def test_eval_takes_miou_over_and_names_ade150_as_detectron2(capsys, suite):
    code, out, err = _eval(capsys, suite, "ade20k", suite, "--placeholder-names", "--miou-over", "present", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["miou_over"] == "present" and r["mIoU"] == r["mIoU_by_rule"]["present"]["mIoU"]
    assert list(r["per_class"]) == ADE20K_DETECTRON2_CLASSES  # e.g. "road, route" where mmseg says "road"
    code, out, err = _eval(capsys, suite, "ade20k", suite, "--placeholder-names")
    assert code == 0 and "| road, route " in out and out.splitlines()[-1].startswith("aAcc: ")


def test_without_clip_weights_zero_shot_is_refused_in_one_line(capsys, suite):
    code, out, err = _eval(capsys, suite, "voc", suite / "VOC2012")
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("segadapter eval: error: zero-shot evaluation on voc: this model "
                                                    "was built without CLIP weights")


def test_protocol_model_keeps_the_models_record(capsys, suite):
    code, out, err = _eval(capsys, suite, "voc", suite / "VOC2012", "--placeholder-names", "--protocol", "model",
                           "--json")
    assert code == 0, err
    assert json.loads(out)["protocol"] == "model" and "as SAN evaluates it" not in err


def test_the_benchmark_script_prints_the_papers_table(capsys, suite):
    spec = importlib.util.spec_from_file_location("san_zero_shot", ROOT / "benchmarks" / "san_zero_shot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    roots = (f"ade20k-full={suite / 'ADE20K_2021_17_01'},pcontext459={suite / 'pcontext_full'},"
             f"ade20k={suite},pcontext59={suite / 'pcontext'},voc={suite / 'VOC2012'}")
    code = script.main([str(suite / "san"), "--roots", roots, "--placeholder-names", "--device", "cpu",
                        "--no-progress", "--json", str(suite / "suite.json")])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "| model | A-847 | PC-459 | A-150 | PC-59 | VOC |"
    ours = next(line for line in lines if line.startswith("| san-vit-b16 ("))
    assert ours.count("|") == 7 and "-" not in ours.split("|", 2)[2].replace(" [", "").split("]")[0][:1]
    assert "| SAN ViT-B/16, paper (Table 2) | 10.1 | 12.6 | 27.5 | 53.8 | 94.0 |" in lines
    assert "| SAN ViT-B/16, released log | 10.21 | 16.71 [345 present] | 27.56 | 54.07 | 93.95 |" in lines
    assert "these scores mean nothing" in out
    saved = json.loads((suite / "suite.json").read_text())
    assert set(next(iter(saved.values()))) == {"ade20k-full", "pcontext459", "ade20k", "pcontext59", "voc"}
    assert script.main([str(suite / "san"), "--roots", "kitti=x"]) == 2
