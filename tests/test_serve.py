"""The web demo's backend: upload limits and bad files, legend numbers, overlays and downloads,
open-vocabulary class names, and its API through gradio_client with concurrent requests."""
from __future__ import annotations

import html
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from inference_helpers import ColourVocabulary, nearest_colour, save_tiny
from segadapter import Inferencer, Preprocessing
from segadapter.errors import DataError
from segadapter.evaluation.visualize import overlay as overlay_fn
from segadapter.serve.app import Backend
from segadapter.serve.legend import legend_html, legend_rows
from segadapter.serve.uploads import Limits, read_upload

PRE = Preprocessing(scale=(64, 48), classes=["sky", "road", "car"], palette=[[10, 20, 30], [200, 0, 0], [0, 200, 0]])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def inferencer(tmp_path_factory):
    return Inferencer(save_tiny(tmp_path_factory.mktemp("serve") / "m", preprocessing=PRE), device="cpu")


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(low).resize((80, 60), Image.BICUBIC))
    Image.fromarray(image).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (3000, 2000)).save(tmp_path / "wide.png")  # 6 M pixels, a few kB
    Image.new("1", (30000, 30000)).save(tmp_path / "bomb.png")  # 900 M pixels in ~100 kB
    return tmp_path, image


def test_uploads_are_checked_before_decoding(files):
    folder, image = files
    limits = Limits(max_bytes=200_000, max_pixels=5_000_000)
    assert np.array_equal(read_upload(folder / "good.png", limits), image)
    cases = {"cut.png": "truncated", "notes.png": "not an image", "empty.png": "empty file",
             "wide.png": "3000 x 2000 = 6.0 M pixels, over the limit of 5.0 M",
             "bomb.png": "too large to decode safely (Image size (900000000 pixels)"}
    for name, message in cases.items():
        with pytest.raises(DataError) as e:
            read_upload(folder / name, limits)
        assert str(e.value).startswith(name) and message in str(e.value), str(e.value)
    with pytest.raises(DataError, match="over the upload limit of 0.0 MB"):
        read_upload(folder / "good.png", Limits(max_bytes=1000))
    with pytest.raises(DataError, match="too large to decode safely"):  # PIL's guard, whatever our limit
        read_upload(folder / "bomb.png", Limits(max_pixels=10**12))


def test_legend_rows_are_the_label_shares_with_their_colours():
    label = np.array([[0, 0, 2, 2], [2, 2, 2, 1]], np.uint8)
    pred_shares = {2: 5 / 8, 0: 2 / 8, 1: 1 / 8}
    rows = legend_rows(pred_shares, ["a", "b<i>", "c"], [[255, 0, 0], [0, 16, 0], [1, 2, 3]])
    assert [(r["name"], r["color"], r["share"]) for r in rows] == [
        ("c", "#010203", 5 / 8), ("a", "#ff0000", 2 / 8), ("b<i>", "#001000", 1 / 8)]
    page = legend_html([("x.png", rows)])
    assert page.count('class="legend-row"') == 3 and "b&lt;i&gt;" in page and "62.5%" in page
    assert label.size == 8


def test_backend_segments_good_files_and_reports_bad_ones(inferencer, files):
    folder, image = files
    backend = Backend(inferencer, Limits(max_pixels=5_000_000))
    names = ["notes.png", "good.png", "cut.png", "wide.png"]
    out = backend.segment([str(folder / n) for n in names], opacity=0.4)
    status = html.unescape(out.status)
    assert "Segmented 1 image" in status
    for n in ("notes.png", "cut.png", "wide.png"):
        assert f'<div class="error">{n}' in out.status
    assert [d["name"] for d in out.details] == names  # upload order
    label = inferencer(image).label
    (overlay, caption), = out.overlays
    assert caption == "good.png" and np.array_equal(overlay, overlay_fn(image, label, PRE.palette, 0.4))
    assert np.array_equal(np.asarray(Image.open(out.downloads[0])), label)
    shares = {r["name"]: r["share"] for r in out.details[1]["classes"]}
    expected = {PRE.classes[k]: float((label == k).mean()) for k in np.unique(label)}
    assert shares == pytest.approx(expected) and sum(shares.values()) == pytest.approx(1)
    shown = [float(s) for s in re.findall(r'legend-share">([\d.]+)%', out.legend)]
    assert sum(shown) == pytest.approx(100, abs=0.2)
    again = backend.blend(out.state, 0.9)  # a new opacity without the network
    assert np.array_equal(again[0][0], overlay_fn(image, label, PRE.palette, 0.9))
    (path, caption), = backend.gallery(out.overlays, out.folder)  # what the page shows: PNG files
    assert caption == "good.png" and np.array_equal(np.asarray(Image.open(path)), overlay)
    empty = backend.segment([], 0.5)
    assert "Upload one or more images" in empty.status and not empty.overlays
    too_many = Backend(inferencer, Limits(max_files=1)).segment([str(folder / "good.png")] * 2)
    assert "only the first 1" in too_many.status and len(too_many.overlays) == 1


def test_uploads_with_the_same_name_get_their_own_files(inferencer, files, tmp_path_factory):
    folder, image = files
    other = tmp_path_factory.mktemp("other") / "good.png"  # same name, another picture
    flipped = np.ascontiguousarray(image[::-1])
    Image.fromarray(flipped).save(other)
    backend = Backend(inferencer)
    out = backend.segment([str(folder / "good.png"), str(other)], 0.5)
    assert len(set(out.downloads)) == 2
    for download, picture in zip(out.downloads, (image, flipped)):
        assert np.array_equal(np.asarray(Image.open(download)), inferencer(picture).label)
    shown = backend.gallery(out.overlays, out.folder)
    assert [c for _, c in shown] == ["good.png", "good.png"] and len({p for p, _ in shown}) == 2
    for (path, _), (overlay, _) in zip(shown, out.overlays):
        assert np.array_equal(np.asarray(Image.open(path)), overlay)


def test_output_stems_stay_distinct():
    from segadapter.serve.app import _distinct_stems

    assert _distinct_stems(["a/frame.png", "frame_2.jpg", "b/frame.png", "c/frame.png", "x.png"]) == [
        "frame", "frame_2", "frame_3", "frame_4", "x"]


def test_open_vocabulary_names_from_the_text_box(files):
    folder, image = files
    backend = Backend(Inferencer(ColourVocabulary(), device="cpu"))
    assert backend.open_vocabulary and backend.default_classes == ["red", "green", "blue"]
    out = backend.segment([str(folder / "good.png")], 0.5, "white, black,\nyellow")
    label = np.asarray(Image.open(out.downloads[0]))
    assert (label == nearest_colour(image, ["white", "black", "yellow"])).mean() > 0.99
    assert {r["name"] for r in out.details[0]["classes"]} <= {"white", "black", "yellow"}
    bad = backend.segment([str(folder / "good.png")], 0.5, "white, mauve")
    assert "error" in bad.status and not bad.overlays  # the model's own refusal, shown in the page
    back = backend.segment([str(folder / "good.png")], 0.5, "")  # empty box: the model's own classes
    assert {r["name"] for r in back.details[0]["classes"]} <= {"red", "green", "blue"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_api_from_gradio_client_with_concurrent_requests(inferencer, files):
    pytest.importorskip("gradio")
    client_mod = pytest.importorskip("gradio_client")
    from segadapter.serve.app import API_NAME, build_app, launch

    folder, image = files
    backend = Backend(inferencer)
    demo = build_app(backend)
    port = _free_port()
    _, url = launch(demo, backend, port=port, block=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        client = client_mod.Client(url, verbose=False)
        gallery, legend, downloads, status, details = client.predict(
            [client_mod.handle_file(str(folder / "good.png")), client_mod.handle_file(str(folder / "notes.png"))],
            0.5, "", api_name=f"/{API_NAME}")
        assert "Segmented 1 image" in status and "notes.png: not an image" in status
        assert np.array_equal(np.asarray(Image.open(downloads[0])), inferencer(image).label)
        assert len(gallery) == 1 and 'class="legend-row"' in legend
        assert details[0]["size"] == [80, 60] and "error" in details[1]
        # several clients at once: queued one at a time, every answer complete and right
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(client.predict, [client_mod.handle_file(str(folder / "good.png"))], 0.5, "",
                                api_name=f"/{API_NAME}") for _ in range(4)]
            for job in jobs:
                result = job.result(timeout=120)
                assert np.array_equal(np.asarray(Image.open(result[2][0])), inferencer(image).label)
    finally:
        demo.close()
