"""`segadapter serve` in a real browser: the test starts the server on localhost, drives headless
Chromium (Debian's `chromium` + `chromium-driver`, through selenium) to upload a real CamVid
frame, checks the overlay (pixel for pixel) and the legend, checks the messages for bad uploads,
and that the page asks nothing of any other host. A screenshot goes to tmp (and to
$SEGADAPTER_SCREENSHOT when set, e.g. docs/serve.png; $SEGADAPTER_SERVE_MODEL picks the model).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from headless_chromium import MISSING, start_chromium
from inference_helpers import ROOT, camvid_root, save_tiny

CAMVID = camvid_root()

pytestmark = [
    pytest.mark.skipif(CAMVID is None, reason="CamVid not available (../shared absent)"),
    pytest.mark.skipif(MISSING, reason="chromium / chromedriver not installed"),
]
webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("gradio")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    if os.environ.get("SEGADAPTER_SERVE_MODEL"):
        return Path(os.environ["SEGADAPTER_SERVE_MODEL"])
    from segadapter import Preprocessing
    from segadapter.data.metainfo import CAMVID_CLASSES, CAMVID_PALETTE

    pre = Preprocessing(scale=(320, 240), classes=CAMVID_CLASSES, palette=CAMVID_PALETTE)
    return save_tiny(tmp_path_factory.mktemp("browser") / "camvid-tiny", preprocessing=pre, num_classes=11)


@pytest.fixture(scope="module")
def frames():
    return sorted((CAMVID / "val").glob("*.png"))[:2]


@pytest.fixture(scope="module")
def server(model_dir, frames, tmp_path_factory):
    data = tmp_path_factory.mktemp("examples")  # a two-frame CamVid layout for the example images
    for sub, src in (("val", "val"), ("valannot", "valannot")):
        (data / sub).mkdir()
        for f in frames:
            shutil.copy(CAMVID / src / f.name, data / sub / f.name)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segadapter", "serve", str(model_dir), "--port", str(port), "--data", str(data),
         "--max-pixels", "1e6"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"server did not start:\n{proc.stdout.read()}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium(performance_log=True)
    yield driver
    driver.quit()


def _open(browser, url):
    browser.get(url)
    return WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#uploads input[type=file]")))


def _upload_and_run(browser, url, paths):
    _open(browser, url).send_keys("\n".join(str(p) for p in paths))
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: all(Path(p).stem in d.find_element(By.ID, "uploads").text for p in paths))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#status .ok, #status .error"))  # not the progress timer
    return browser.find_element(By.ID, "status").text


def _fetch_image(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=30) as r:
        return np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))


def test_real_frame_overlay_legend_and_download(server, browser, model_dir, frames, tmp_path):
    from segadapter import Inferencer
    from segadapter.data.metainfo import CAMVID_CLASSES

    status = _upload_and_run(browser, server, [frames[0]])
    assert "Segmented 1 image" in status
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#legend .legend-row")
                                     and d.find_elements(By.CSS_SELECTOR, "#overlays img"))
    img = browser.find_element(By.CSS_SELECTOR, "#overlays img")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
    expected = Inferencer(model_dir, device="cpu")(frames[0], overlay=True, opacity=0.5)
    shown = _fetch_image(img.get_attribute("src"))
    assert shown.shape == (360, 480, 3) and np.array_equal(shown, expected.overlay)  # PNG: lossless
    rows = browser.find_elements(By.CSS_SELECTOR, "#legend .legend-row")
    names = [r.find_element(By.CLASS_NAME, "legend-name").text for r in rows]
    shares = [r.find_element(By.CLASS_NAME, "legend-share").text for r in rows]
    assert set(names) <= set(CAMVID_CLASSES) and len(names) == len(np.unique(expected.label))
    assert sum(float(s.rstrip("%")) for s in shares if not s.startswith("<")) == pytest.approx(100, abs=0.6)
    top = max(expected.shares().items(), key=lambda kv: kv[1])
    assert names[0] == CAMVID_CLASSES[top[0]] and shares[0] == f"{100 * top[1]:.1f}%"
    swatch = rows[0].find_element(By.CLASS_NAME, "legend-swatch").value_of_css_property("background-color")
    assert swatch.replace(" ", "").startswith("rgb")
    link = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")
            if f"{frames[0].stem}_classes.png" in (a.get_attribute("href") or "")]
    assert link, "a download link for the class-id PNG"
    with urllib.request.urlopen(link[0], timeout=30) as r:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.read()))), expected.label)
    examples = browser.find_elements(By.XPATH, "//*[contains(text(), '%s')]" % frames[1].name)
    assert examples, "the --data example images are offered"
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    if os.environ.get("SEGADAPTER_SCREENSHOT"):
        shutil.copy(shot, os.environ["SEGADAPTER_SCREENSHOT"])
    _assert_only_local_requests(browser)


def test_bad_uploads_get_messages_and_the_server_keeps_serving(server, browser, frames, tmp_path):
    data = frames[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("this is not an image")
    Image.new("L", (2000, 1000)).save(tmp_path / "huge.png")  # over the server's --max-pixels 1e6
    _upload_and_run(browser, server, [tmp_path / "notes.png", tmp_path / "cut.png", tmp_path / "huge.png"])
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#status .error")) == 3)
    errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#status .error")]
    assert errors[0].startswith("notes.png: not an image")
    assert errors[1].startswith("cut.png:") and "truncated" in errors[1]
    assert errors[2].startswith("huge.png:") and "2000 x 1000" in errors[2] and "limit" in errors[2]
    assert not browser.find_elements(By.CSS_SELECTOR, "#legend .legend-row")
    # still serving: a good frame right after
    assert "Segmented 1 image" in _upload_and_run(browser, server, [frames[1]])
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#legend .legend-row"))
    _assert_only_local_requests(browser)


def _assert_only_local_requests(browser):
    """Every request the page made went to the server on 127.0.0.1 (no fonts, analytics, CDNs)."""
    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = urlparse(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):
                hosts.add(url.hostname)
    assert hosts <= {"127.0.0.1"}, hosts
