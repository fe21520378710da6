"""`segadapter predict` end to end on a tiny saved model: formats, palettes, bad-input policy."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from segadapter.cli.main import main

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
PALETTE = [[10, 20, 30], [200, 0, 0], [0, 200, 0]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = segadapter.create_model("segformer-b0", num_classes=3)
    d = tmp_path_factory.mktemp("ckpt") / "tiny"
    model.save_pretrained(d, classes=["a", "b", "c"], palette=PALETTE)
    return d


@pytest.fixture
def images(tmp_path):
    """One image per input kind read_image must handle."""
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).save(d / "photo.jpg", quality=90)
    Image.fromarray(rgb[:, :, 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((40, 56), 128, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (33, 21), dtype=np.uint16)).save(d / "deep16.png")
    return d


def _run(capsys, *argv):
    code = main(["predict", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_predicts_every_format_with_saved_palette(capsys, model_dir, images, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, model_dir, images, "--out", out, "--opacity", "1.0")
    assert code == 0, err
    stems = ["deep16", "gray", "photo", "rgb", "rgba"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.png" for s in stems] + [f"{s}_overlay.png" for s in stems])
    for s in stems:
        src = next(images.glob(s + ".*"))
        ids = Image.open(out / f"{s}.png")
        ov = Image.open(out / f"{s}_overlay.png")
        assert ids.mode == "L" and ov.mode == "RGB"
        assert ids.size == ov.size == Image.open(src).size  # original size, whatever the format
        label = np.asarray(ids)
        assert label.max() < 3
        # opacity 1: the overlay is exactly the saved palette's colour for each id
        assert np.array_equal(np.asarray(ov), np.asarray(PALETTE, np.uint8)[label])
    assert "5 images" in stdout


def test_named_palette_and_slide_mode(capsys, model_dir, images, tmp_path):
    out = tmp_path / "out"
    code, _, err = _run(capsys, model_dir, images / "rgb.png", "--out", out, "--opacity", "1",
                        "--palette", "cityscapes", "--mode", "slide", "--crop", "32", "32", "--flip")
    assert code == 0, err
    label = np.asarray(Image.open(out / "rgb.png"))
    from segadapter.data.metainfo import CITYSCAPES_PALETTE

    assert np.array_equal(np.asarray(Image.open(out / "rgb_overlay.png")),
                          np.asarray(CITYSCAPES_PALETTE, np.uint8)[label])


def test_unreadable_input_writes_nothing_and_keeps_earlier_predictions(capsys, model_dir, images, tmp_path):
    out = tmp_path / "out"
    assert _run(capsys, model_dir, images / "rgb.png", images / "gray.png", "--out", out)[0] == 0
    before = _snapshot(out)
    # a truncated PNG sorted after a good one: nothing may be written for the good one either
    data = (images / "rgb.png").read_bytes()
    (images / "zz_broken.png").write_bytes(data[: len(data) // 2])
    (images / "rgb.png").write_bytes((images / "rgba.png").read_bytes())  # content changed
    code, _, err = _run(capsys, model_dir, images, "--out", out)
    assert code == 2
    assert err.count("\n") == 1 and "zz_broken.png" in err and err.startswith("segadapter predict: error:")
    assert _snapshot(out) == before


@pytest.mark.parametrize("case", ["missing_ckpt", "missing_image", "not_a_model", "empty_dir"])
def test_bad_paths_exit_2_naming_the_path(capsys, model_dir, images, tmp_path, case):
    out = tmp_path / "out"
    ckpt, inp = model_dir, images / "rgb.png"
    if case == "missing_ckpt":
        ckpt = tmp_path / "no_such_ckpt"
        named = "no_such_ckpt"
    elif case == "missing_image":
        inp = images / "nope.png"
        named = "nope.png"
    elif case == "not_a_model":
        ckpt = images
        named = "imgs"
    else:
        inp = tmp_path / "empty_dir"
        inp.mkdir()
        named = "empty_dir"
    code, _, err = _run(capsys, ckpt, inp, "--out", out)
    assert code == 2 and err.count("\n") == 1 and named in err
    assert not out.exists()


def test_output_clashes_are_refused(capsys, model_dir, images, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(images / "rgb.png", other / "rgb.png")
    code, _, err = _run(capsys, model_dir, images / "rgb.png", other / "rgb.png", "--out", tmp_path / "o")
    assert code == 2 and "both write" in err
    # gray.png's overlay and gray_overlay.png's id map share a name
    shutil.copy(images / "rgb.png", images / "gray_overlay.png")
    code, _, err = _run(capsys, model_dir, images / "gray.png", images / "gray_overlay.png", "--out", other)
    assert code == 2 and "both write" in err and "gray_overlay.png" in err
    # writing next to the inputs would replace the input images
    before = _snapshot(images)
    code, _, err = _run(capsys, model_dir, images / "rgb.png", "--out", images)
    assert code == 2 and "rgb.png: is an input" in err
    assert _snapshot(images) == before


def test_bad_options_exit_2(capsys, model_dir, images, tmp_path):
    base = (model_dir, images / "rgb.png", "--out", tmp_path / "o")
    assert _run(capsys, *base, "--opacity", "2")[0] == 2
    code, _, err = _run(capsys, *base, "--mode", "slide")
    assert code == 2 and "crop" in err
    code, _, err = _run(capsys, *base, "--crop", "8", "8")
    assert code == 2 and "--mode slide" in err
    code, _, err = _run(capsys, *base, "--palette", "nosuch")
    assert code == 2 and "nosuch" in err


def test_saved_palette_too_short_exit_2(capsys, images, tmp_path):
    d = tmp_path / "short_palette"
    segadapter.create_model("segformer-b0", num_classes=3).save_pretrained(d, palette=PALETTE[:2])
    code, _, err = _run(capsys, d, images / "rgb.png", "--out", tmp_path / "o")
    assert code == 2 and "config.json palette has 2 colours" in err and str(d) in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not available")
def test_real_camvid_frames(capsys, tmp_path):
    frames = sorted((CAMVID / "val").glob("*.png"))[:2]
    torch.manual_seed(0)
    d = tmp_path / "camvid_model"
    segadapter.create_model("segformer-b0", num_classes=11).save_pretrained(d)  # no palette saved
    code, _, err = _run(capsys, d, *frames, "--out", tmp_path / "out")
    assert code == 0, err
    for f in frames:
        label = np.asarray(Image.open(tmp_path / "out" / f.name))
        assert label.shape == (360, 480) and label.max() < 11
        assert Image.open(tmp_path / "out" / f"{f.stem}_overlay.png").size == (480, 360)
