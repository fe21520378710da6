"""Colourising, overlays and the PNG files written for predictions."""
import os

import numpy as np
import pytest
from PIL import Image

from segadapter.errors import ConfigError
from segadapter.evaluation.visualize import colorize, overlay, save_prediction

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_colorize_and_ignore():
    label = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    rgb = colorize(label, PALETTE, ignore_color=(9, 9, 9))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb.reshape(-1, 3).tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]]
    with pytest.raises(ValueError, match="colours"):
        colorize(np.array([[3]]), PALETTE)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_colorize_checks_ids_for_every_label_dtype(dtype):
    label = np.array([[0, 255], [4, 2]], dtype=dtype)
    with pytest.raises(ValueError, match=r"label ids 0\.\.4 need 5 colours, have 3"):
        colorize(label, PALETTE)
    label[1, 0] = 1
    assert colorize(label, PALETTE).reshape(-1, 3).tolist() == [[255, 0, 0], [0, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_overlay_matches_the_blend_formula_on_a_real_sized_map(dtype):
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (11, 3))
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    label = rng.integers(0, 11, (60, 80)).astype(dtype)
    label[:5] = 255
    for opacity in (0.0, 0.3, 0.5, 0.77, 1.0):
        colour = np.asarray(palette, np.float32)[np.minimum(label, 10)]
        expected = np.rint(image.astype(np.float32) * np.float32(1 - opacity) + colour * np.float32(opacity))
        expected[label == 255] = image[label == 255]
        assert np.array_equal(overlay(image, label, palette, opacity), expected.astype(np.uint8)), opacity


def test_overlay_blends_with_opacity_and_keeps_ignored_pixels():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    label = np.array([[0, 2, 255]])
    out = overlay(image, label, PALETTE, opacity=0.25)
    # 0.75 * 100 + 0.25 * 255 = 138.75 -> 139 ; 0.75 * 100 = 75
    assert out[0, 0].tolist() == [139, 75, 75]
    assert out[0, 1].tolist() == [75, 75, 139]
    assert out[0, 2].tolist() == [100, 100, 100]  # ignored: the image alone
    assert np.array_equal(overlay(image, label, PALETTE, opacity=0.0), image)
    with pytest.raises(ConfigError, match="opacity must be between 0 and 1"):
        overlay(image, label, PALETTE, opacity=1.5)


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, size=(17, 23)).astype(np.uint8)
    label[0, :5] = 255
    image = rng.integers(0, 256, size=(17, 23, 3)).astype(np.uint8)
    paths = save_prediction(tmp_path / "sub", "frame", label, image, PALETTE, opacity=0.5)
    assert [p.name for p in paths] == ["frame.png", "frame_overlay.png"]
    ids = Image.open(paths[0])
    assert ids.mode == "L" and ids.size == (23, 17)
    assert np.array_equal(np.asarray(ids), label)  # ignore stays 255
    ov = Image.open(paths[1])
    assert ov.mode == "RGB"
    assert np.array_equal(np.asarray(ov), overlay(image, label, PALETTE, 0.5))
    assert sorted(os.listdir(tmp_path / "sub")) == ["frame.png", "frame_overlay.png"]  # no temp left


def test_failed_write_leaves_previous_file_intact(tmp_path):
    label = np.zeros((4, 4), dtype=np.uint8)
    save_prediction(tmp_path, "x", label)
    before = (tmp_path / "x.png").read_bytes()
    with pytest.raises(ValueError):
        save_prediction(tmp_path, "x", np.full((4, 4), 300))  # ids do not fit one byte
    with pytest.raises(ValueError):  # bad overlay input after the id PNG check
        save_prediction(tmp_path, "x", label + 1, np.zeros((5, 5, 3), np.uint8), PALETTE)
    assert (tmp_path / "x.png").read_bytes() == before
    assert os.listdir(tmp_path) == ["x.png"]
