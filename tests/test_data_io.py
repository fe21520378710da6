"""read_image / read_label: format conversions and errors that name the file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segadapter.data.io import read_image, read_label
from segadapter.errors import DataError


def _noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_rgb_roundtrip(tmp_path):
    a = _noise((7, 9, 3))
    Image.fromarray(a).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_becomes_rgb(tmp_path):
    g = _noise((5, 6))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_rgba_drops_alpha(tmp_path):
    a = _noise((4, 5, 4))
    a[..., 3] = 0  # fully transparent: colours must survive anyway (no compositing)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), a[..., :3])


def test_16bit_scaled_to_8bit(tmp_path):
    g = np.array([[0, 257, 65535], [257 * 100, 257 * 200, 128]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = read_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 255], [100, 200, 0]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def _palette_png(path, idx):
    img = Image.fromarray(idx, "P")
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    img.putpalette(pal)
    img.save(path)


def test_palette_image_as_colours_and_label_as_indices(tmp_path):
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    _palette_png(tmp_path / "p.png", idx)
    rgb = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(rgb[0, 1], [255, 0, 0])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 255])
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), idx)


def test_label_gray_and_16bit_in_range(tmp_path):
    lbl = np.array([[0, 5], [255, 3]], dtype=np.uint8)
    Image.fromarray(lbl).save(tmp_path / "l.png")
    out = read_label(tmp_path / "l.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, lbl)
    Image.fromarray(lbl.astype(np.uint16)).save(tmp_path / "l16.png")
    np.testing.assert_array_equal(read_label(tmp_path / "l16.png"), lbl)


def test_label_16bit_out_of_range(tmp_path):
    Image.fromarray(np.array([[1, 300]], dtype=np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="big.png") as e:
        read_label(tmp_path / "big.png")
    assert "300" in str(e.value)


def test_rgb_label_rejected(tmp_path):
    Image.fromarray(_noise((3, 3, 3))).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png") as e:
        read_label(tmp_path / "colour.png")
    assert "class-index" in str(e.value)


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_truncated_png(tmp_path, reader):
    Image.fromarray(_noise((64, 64))).save(tmp_path / "t.png")  # noise: IDAT barely compresses
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="trunc.png") as e:
        reader(tmp_path / "trunc.png")
    assert "truncated" in str(e.value)


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_missing_and_not_an_image(tmp_path, reader):
    with pytest.raises(DataError, match="nope.png.*not found"):
        reader(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match="text.png"):
        reader(tmp_path / "text.png")
