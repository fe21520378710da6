"""Class-id PNGs beyond 255 classes: `segadapter predict` with a SAN segmenting A-847's 847 names
writes 16-bit PNGs (ids 0-846, 65535 = ignore) equal to the Inferencer's labels, and its overlays
colour class 255 as a class (not as the 8-bit ignore value)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from segadapter.cli.main import main
from segadapter.data.io import read_label
from segadapter.data.metainfo import ADE20K_FULL_CLASSES, generated_palette
from segadapter.inference.writer import PredictionWriter
from segadapter.modeling.backbones import clip as clip_module

TINY = "tiny-san-16bit-test"


@pytest.fixture(scope="module")
def san847(tmp_path_factory):
    clip_module.CLIP_CONFIGS[TINY] = clip_module.ClipConfig(
        32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2), clip_module.ClipTextConfig(77, 600, 32, 2, 2))
    d = tmp_path_factory.mktemp("san847")
    torch.manual_seed(0)
    model = segadapter.create_model("san-vit-b16", classes=ADE20K_FULL_CLASSES, clip_config_override=TINY,
                                    side_width=48, side_heads=2, side_depth=4, num_queries=10)
    model.save_pretrained(d / "model")
    rng = np.random.default_rng(0)
    (d / "imgs").mkdir()
    for i, (h, w) in enumerate([(40, 56), (48, 40)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / "imgs" / f"img{i}.png")
    yield d
    clip_module.CLIP_CONFIGS.pop(TINY, None)


def test_predict_writes_16_bit_pngs_equal_to_the_inferencer(san847, capsys):
    out = san847 / "out"
    code = main(["predict", str(san847 / "model"), str(san847 / "imgs"), "--out", str(out), "--device", "cpu",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    inferencer = segadapter.Inferencer(san847 / "model", device="cpu")
    for i in range(2):
        png = Image.open(out / f"img{i}.png")
        assert png.mode == "I;16"
        written = read_label(out / f"img{i}.png", sixteen_bit=True)
        expected = inferencer(san847 / "imgs" / f"img{i}.png").label
        np.testing.assert_array_equal(written, expected)
        assert written.max() < 847 and (out / f"img{i}_overlay.png").is_file()


def test_writer_keeps_ids_above_255_and_colours_class_255(tmp_path):
    palette = generated_palette(300)
    label = np.array([[0, 255, 299], [256, 1, 255]], np.int32)
    image = np.full((2, 3, 3), 100, np.uint8)
    with PredictionWriter(tmp_path, palette, opacity=1.0, workers=1) as writer:
        writer.submit("x", label, image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), label)
    overlay = np.asarray(Image.open(tmp_path / "x_overlay.png"))
    assert tuple(overlay[0, 1]) == palette[255] and tuple(overlay[0, 2]) == palette[299]
