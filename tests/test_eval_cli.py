"""`segadapter eval` end to end: a fake CamVid layout, real CamVid frames, and bad inputs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import segadapter
from segadapter.cli.main import main

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpt") / "camvid_b0"
    segadapter.create_model("segformer-b0", num_classes=11).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def fake_camvid(tmp_path_factory):
    """CamVid layout (val/, valannot/) with small random frames; label 11 is void."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    (root / "val").mkdir(), (root / "valannot").mkdir()
    for i, (h, w) in enumerate([(48, 64), (40, 72), (64, 48)]):
        # smooth blobs rather than noise, so a random net's prediction is not constant
        img = np.kron(rng.integers(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(img).save(root / "val" / f"f{i}.png")
        Image.fromarray(rng.integers(0, 12, (h, w)).astype(np.uint8)).save(root / "valannot" / f"f{i}.png")
    return root


def _eval(capsys, *argv):
    code = main(["eval", *map(str, argv), "--no-progress", "--workers", "0"])
    out, err = capsys.readouterr()
    return code, out, err


def _expected(model_dir, root):
    """mIoU / aAcc computed independently: own preprocessing, own counting in numpy."""
    model = segadapter.from_pretrained(model_dir).eval()
    inter, union, area = np.zeros(11), np.zeros(11), np.zeros(11)
    for img_path in sorted((root / "val").glob("*.png")):
        img = (np.asarray(Image.open(img_path).convert("RGB"), np.float32) - MEAN) / STD
        gt = np.asarray(Image.open(root / "valannot" / img_path.name)).astype(np.int64)
        with torch.no_grad():
            logits = model(torch.from_numpy(img).permute(2, 0, 1)[None])
        pred = F.interpolate(logits, gt.shape, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
        valid = gt != 11
        for c in range(11):
            inter[c] += np.sum((pred == c) & (gt == c) & valid)
            union[c] += np.sum(((pred == c) | (gt == c)) & valid)
            area[c] += np.sum((gt == c) & valid)
    with np.errstate(invalid="ignore"):
        iou = inter / union
    return 100 * np.nanmean(iou), 100 * inter.sum() / area.sum(), int(area.sum())


def test_json_matches_independent_computation(capsys, camvid_model, fake_camvid):
    # fp32, as the independent computation (the default amp auto is bf16 on CPUs with bf16 units)
    code, out, err = _eval(capsys, camvid_model, "--data", fake_camvid, "--dataset", "camvid", "--json", "--amp", "none")
    assert code == 0, err
    result = json.loads(out)
    miou, aacc, pixels = _expected(camvid_model, fake_camvid)
    assert result["mIoU"] == pytest.approx(miou, abs=1e-3)
    assert result["aAcc"] == pytest.approx(aacc, abs=1e-3)
    assert result["num_pixels"] == pixels  # void (11) pixels are ignored
    assert list(result["per_class"])[:2] == ["sky", "building"] and len(result["per_class"]) == 11
    assert result["images"] == 3 and result["split"] == "val"


def test_table_with_slide_flip_and_scales(capsys, camvid_model, fake_camvid):
    code, out, err = main(["eval", str(camvid_model), "--data", str(fake_camvid), "--dataset", "camvid",
                           "--mode", "slide", "--crop", "32", "32", "--stride", "16", "16", "--flip",
                           "--scales", "0.75", "1.0", "--amp", "bf16", "--no-progress"]), *capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert "| bicyclist " in out and "| Class " in out
    assert lines[-1].startswith("aAcc: ") and " mIoU: " in lines[-1] and " mAcc: " in lines[-1]


@pytest.mark.parametrize("case", ["missing_ckpt", "class_mismatch", "missing_data", "bad_split"])
def test_bad_inputs_exit_2_with_one_line(capsys, camvid_model, fake_camvid, tmp_path, case):
    ckpt, root, extra = camvid_model, fake_camvid, []
    if case == "missing_ckpt":
        ckpt, named = tmp_path / "gone", "gone"
    elif case == "class_mismatch":
        ckpt = tmp_path / "k3"
        segadapter.create_model("segformer-b0", num_classes=3).save_pretrained(ckpt)
        named = "k3"
    elif case == "missing_data":
        root, named = tmp_path / "nodata", "nodata"
    else:
        extra, named = ["--split", "train"], "train"  # the fake layout has no train folder
    code, out, err = _eval(capsys, ckpt, "--data", root, "--dataset", "camvid", *extra)
    assert code == 2 and out == ""
    assert err.startswith("segadapter eval: error:") and err.count("\n") == 1 and named in err
    if case == "class_mismatch":
        assert "3 classes" in err and "11" in err


@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not available")
def test_real_camvid_val_frames(capsys, camvid_model, tmp_path):
    root = tmp_path / "camvid"
    (root / "val").mkdir(parents=True), (root / "valannot").mkdir()
    for f in sorted((CAMVID / "val").glob("*.png"))[:2]:
        shutil.copy(f, root / "val" / f.name)
        shutil.copy(CAMVID / "valannot" / f.name, root / "valannot" / f.name)
    code = main(["eval", str(camvid_model), "--data", str(root), "--dataset", "camvid", "--json", "--no-progress",
                 "--amp", "none"])  # fp32, as the independent computation
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    miou, aacc, pixels = _expected(camvid_model, root)
    assert result["num_pixels"] == pixels and 0 < pixels < 2 * 360 * 480
    assert result["mIoU"] == pytest.approx(miou, abs=1e-3)
    assert result["aAcc"] == pytest.approx(aacc, abs=1e-3)


def _torchrun_like_worker(rank, world, port, argv, out_dir):
    import contextlib
    import io
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    Path(out_dir, f"rank{rank}.txt").write_text(f"{code}\n{buf.getvalue()}")


def test_two_process_eval_equals_single(capsys, camvid_model, fake_camvid, tmp_path):
    import socket

    import torch.multiprocessing as mp

    argv = ["eval", str(camvid_model), "--data", str(fake_camvid), "--dataset", "camvid", "--json",
            "--no-progress", "--workers", "0", "--device", "cpu"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_torchrun_like_worker, args=(2, port, argv, str(tmp_path)), nprocs=2, join=True)
    code0, out0 = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    code1, out1 = (tmp_path / "rank1.txt").read_text().split("\n", 1)
    assert code0 == code1 == "0" and out1 == ""  # only rank 0 prints
    assert main(argv) == 0
    single = json.loads(capsys.readouterr().out)
    assert json.loads(out0) == single  # 2 + 1 images on the ranks, summed exactly


def test_training_run_folder_resolves_to_latest_checkpoint(capsys, camvid_model, fake_camvid, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(camvid_model, run / "checkpoints" / "iter_000010")
    (run / "checkpoints" / "latest").write_text("iter_000010\n")
    code, out, err = _eval(capsys, run, "--data", fake_camvid, "--dataset", "camvid", "--json")
    assert code == 0, err
    assert json.loads(out)["checkpoint"].endswith("iter_000010")
