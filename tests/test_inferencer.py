"""`segadapter.Inferencer`: every input kind against a hand-written reference, batching, scores and
overlays, open-vocabulary classes, bad inputs, and the `predict` / `eval` command lines."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from inference_helpers import ColourVocabulary, camvid_root, nearest_colour, normalise, save_tiny, tiny_model
from segadapter import Inferencer, Preprocessing
from segadapter.cli.main import main
from segadapter.errors import ConfigError, DataError
from segadapter.evaluation import inference
from segadapter.evaluation.visualize import overlay as overlay_fn

PRE = Preprocessing(scale=(48, 32), classes=["a", "b", "c"], palette=[[200, 0, 0], [0, 200, 0], [0, 0, 200]])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("inf") / "tiny", preprocessing=PRE)


@pytest.fixture(scope="module")
def images():
    """Textured images (smooth random fields) so predictions vary over the image."""
    rng = np.random.default_rng(0)

    def make(h, w):
        low = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC))

    return [make(60, 90), make(60, 90), make(60, 90), make(50, 70), make(60, 90)]


def reference(model, image, pre=PRE):
    """Resize by the rule (PIL bilinear), normalise by hand, run, upsample to the image size."""
    h, w = image.shape[:2]
    size = pre.resized_size(h, w)
    resized = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
    with torch.inference_mode():
        logits = model.eval()(normalise(resized)[None])
        return torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0]


def test_every_input_kind_gives_the_reference_labels(model_dir, images, tmp_path):
    inf = Inferencer(model_dir, device="cpu", amp="none")
    image = images[0]
    ref = reference(inf.model, image).argmax(0).numpy()
    Image.fromarray(image).save(tmp_path / "x.png")
    as_tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
    kinds = {
        "path": str(tmp_path / "x.png"),
        "pathlib": tmp_path / "x.png",
        "pil": Image.fromarray(image),
        "numpy": image,
        "numpy_rgba": np.dstack([image, np.full(image.shape[:2], 7, np.uint8)]),
        "tensor_uint8": as_tensor,
        "tensor_float": as_tensor.float() / 255,
    }
    for kind, value in kinds.items():
        pred = inf(value)
        assert isinstance(pred, segadapter.Prediction), kind
        assert pred.label.shape == image.shape[:2] and pred.label.dtype == np.uint8, kind
        assert np.array_equal(pred.label, ref), kind
    gray = inf(image[:, :, 0])  # grayscale: replicated to RGB
    assert np.array_equal(gray.label, inf(np.repeat(image[:, :, :1], 3, axis=2)).label)
    folder = inf(tmp_path)  # a folder: a list, one per image file
    assert isinstance(folder, list) and len(folder) == 1 and folder[0].name == "x"
    batch = inf(np.stack([image, image]))  # 4-D: a batch
    assert len(batch) == 2 and all(np.array_equal(p.label, ref) for p in batch)
    assert inf([image, tmp_path / "x.png"])[1].name == "x"


def test_batches_equal_one_by_one_and_outputs_keep_each_size(model_dir, images):
    one = Inferencer(model_dir, device="cpu", amp="none", batch_size=1)(images, scores=True)
    many = Inferencer(model_dir, device="cpu", amp="none", batch_size=3, workers=3)(images, scores=True)
    for image, a, b in zip(images, one, many):
        assert a.label.shape == b.label.shape == image.shape[:2]
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        assert (a.label == b.label).mean() > 0.999  # ties may differ in the last float bit


def test_scores_overlay_and_shares(model_dir, images):
    inf = Inferencer(model_dir, device="cpu", amp="none")
    pred = inf(images[3], scores=True, overlay=True, opacity=0.7)
    ref = reference(inf.model, images[3]).softmax(0).numpy()
    np.testing.assert_allclose(pred.scores, ref, atol=1e-5)
    assert np.array_equal(pred.scores.argmax(0), pred.label)
    assert np.array_equal(pred.overlay, overlay_fn(images[3], pred.label, PRE.palette, 0.7))
    shares = pred.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares == {k: float((pred.label == k).mean()) for k in np.unique(pred.label)}
    assert len(set(pred.label.ravel().tolist())) > 1  # the test images do exercise several classes


def test_own_size_override_and_slide_mode(model_dir, images):
    inf = Inferencer(model_dir, device="cpu", amp="none", preprocessing=PRE.replace(scale=None))
    ref = reference(inf.model, images[0], Preprocessing()).argmax(0).numpy()
    assert np.array_equal(inf(images[0]).label, ref)
    slide = Inferencer(model_dir, device="cpu", amp="none", preprocessing=PRE.replace(mode="slide", crop_size=(32, 32)))
    x = PRE(images[0])
    ref = inference(slide.model, x, mode="slide", crop_size=(32, 32), out_size=images[0].shape[:2]).argmax(0)
    assert np.array_equal(slide(images[0]).label, ref.numpy())


def test_open_vocabulary_classes_reach_the_model():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    inf = Inferencer(ColourVocabulary(), device="cpu", amp="none")
    names = ["white", "black", "yellow", "blue"]
    pred = inf(image, classes=names, overlay=True)
    assert pred.classes == names and inf.model.num_classes == 4
    assert (pred.label == nearest_colour(image, names)).mean() > 0.99
    assert len(inf.palette) == 4
    with pytest.raises(ConfigError, match="fixed set of 3 classes"):
        Inferencer(tiny_model(), device="cpu", classes=["x", "y", "z"])


def test_bad_inputs_raise_errors_naming_them(model_dir, tmp_path):
    inf = Inferencer(model_dir, device="cpu", amp="none")
    good = np.zeros((20, 20, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    cases = [
        (tmp_path / "missing.png", "missing.png"),
        (tmp_path / "cut.png", "cut.png"),
        (tmp_path / "notes.png", "notes.png"),
        ([good, good.astype(np.float64)], "input #1"),
        ([good, np.zeros((4, 4, 5), np.uint8)], "input #1"),
        (torch.full((3, 8, 8), 2.0), "0-1"),
        (42, "unsupported type int"),
        ([], "no inputs"),
        (tmp_path / "empty_dir", "no images"),
    ]
    (tmp_path / "empty_dir").mkdir()
    for value, named in cases:
        with pytest.raises(DataError) as e:
            inf(value)
        assert named in str(e.value), (value, str(e.value))
    with pytest.raises(ConfigError):
        Inferencer(model_dir, amp="fp16", device="cpu")  # fp16 autocast needs CUDA
    with pytest.raises(segadapter.CheckpointError, match="nowhere"):
        Inferencer(tmp_path / "nowhere")


def test_save_is_all_or_nothing(model_dir, images, tmp_path):
    inf = Inferencer(model_dir, device="cpu", amp="none")
    out = tmp_path / "out"
    written = inf.save(images[:2], out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written) == [
        "image_0000.png", "image_0000_overlay.png", "image_0001.png", "image_0001_overlay.png"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError):
        inf.save([images[0], np.zeros((4, 4), np.float32)], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging folder left either


def test_cli_predict_equals_python_api(model_dir, images, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(src / f"f{i}.png")
    code = main(["predict", str(model_dir), str(src), "--out", str(tmp_path / "out"), "--no-progress",
                 "--opacity", "0.6", "--batch-size", "2"])
    assert code == 0, capsys.readouterr().err
    # the same batch size as the command: on some CPUs the conv kernels differ by batch size, and a
    # random model's near-tied classes then flip a pixel or two
    preds = Inferencer(model_dir, device="cpu", batch_size=2)(src, overlay=True, opacity=0.6)  # both amp auto
    for pred, image in zip(preds, images):
        label = np.asarray(Image.open(tmp_path / "out" / f"{pred.name}.png"))
        assert label.shape == image.shape[:2]
        assert np.array_equal(label, pred.label)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{pred.name}_overlay.png")), pred.overlay)
    # --scale overrides the record; here it changes the answer, so the record was really used above
    code = main(["predict", str(model_dir), str(src / "f0.png"), "--out", str(tmp_path / "s"), "--no-progress",
                 "--scale", "90", "60", "--amp", "none"])  # fp32, as the reference
    assert code == 0
    own = np.asarray(Image.open(tmp_path / "s" / "f0.png"))
    big = reference(segadapter.from_pretrained(model_dir), images[0], Preprocessing(scale=(90, 60)))
    assert np.array_equal(own, big.argmax(0).numpy())
    assert not np.array_equal(own, preds[0].label)


def test_cli_predict_says_once_when_a_folder_has_no_record(images, tmp_path, capsys):
    old = tmp_path / "old"
    tiny_model().save_pretrained(old)
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    code = main(["predict", str(old), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--no-progress",
                 "--amp", "none"])  # fp32, as the reference
    err = capsys.readouterr().err
    assert code == 0 and err.count("no preprocessing record") == 1 and "note:" in err
    label = np.asarray(Image.open(tmp_path / "o" / "a.png"))
    assert np.array_equal(label, reference(segadapter.from_pretrained(old), images[0], Preprocessing()).argmax(0))


def _folder_dataset(root, image, label):
    (root / "images/val").mkdir(parents=True)
    (root / "masks/val").mkdir(parents=True)
    Image.fromarray(image).save(root / "images/val/x.png")
    Image.fromarray(label).save(root / "masks/val/x.png")
    (root / "classes.txt").write_text("a\nb\nc\n")


def _eval_json(capsys, *argv):
    code = main(["eval", *map(str, argv), "--json", "--no-progress", "--workers", "0", "--dataset", "folder"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_predict_equals_eval_on_the_same_image(model_dir, tmp_path, capsys):
    """eval scores predict's own output as ground truth: 100% pixel accuracy iff both feed the model
    the same way; at the image's own size the answer differs, so the check has teeth."""
    root = camvid_root()
    if root is not None:
        image = np.asarray(Image.open(sorted((root / "val").glob("*.png"))[0]).convert("RGB"))[:120, :160]
    else:
        rng = np.random.default_rng(3)
        image = np.asarray(Image.fromarray(rng.integers(0, 256, (15, 20, 3), np.uint8)).resize((160, 120)))
    Image.fromarray(image).save(tmp_path / "x.png")
    assert main(["predict", str(model_dir), str(tmp_path / "x.png"), "--out", str(tmp_path / "p"), "--no-progress"]) == 0
    capsys.readouterr()
    label = np.asarray(Image.open(tmp_path / "p" / "x.png"))
    _folder_dataset(tmp_path / "data", image, label)
    result = _eval_json(capsys, model_dir, "--data", tmp_path / "data")
    assert result["scale"] == [48, 32] and result["aAcc"] == pytest.approx(100.0)  # percent
    native = _eval_json(capsys, model_dir, "--data", tmp_path / "data", "--no-resize")
    assert native["aAcc"] < 99.9


@pytest.mark.skipif(camvid_root() is None, reason="CamVid not available (../shared absent)")
def test_real_camvid_frames_in_one_batch(model_dir, tmp_path):
    frames = sorted((camvid_root() / "val").glob("*.png"))[:3]
    for f in frames:
        shutil.copy(f, tmp_path / f.name)
    inf = Inferencer(model_dir, device="cpu", amp="none", batch_size=3)
    preds = inf(tmp_path)
    for f, pred in zip(frames, preds):
        image = np.asarray(Image.open(f).convert("RGB"))
        assert pred.label.shape == (360, 480) == image.shape[:2]
        assert (pred.label == reference(inf.model, image).argmax(0).numpy()).mean() > 0.999


def test_cli_predict_jpeg_overlays(model_dir, images, tmp_path, capsys):
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    code = main(["predict", str(model_dir), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--no-progress",
                 "--overlay-format", "jpg"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "a_overlay.jpg"]
    expected = Inferencer(model_dir, device="cpu", amp="none")(images[0], overlay=True).overlay
    shown = np.asarray(Image.open(tmp_path / "o" / "a_overlay.jpg")).astype(int)
    assert shown.shape == expected.shape and np.abs(shown - expected).mean() < 8  # JPEG: close, not equal
