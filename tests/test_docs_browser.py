"""The built docs site in a real browser: `mkdocs build --strict` into tmp, served on 127.0.0.1,
opened in headless Chromium (Debian's `chromium` + `chromium-driver` through selenium, as the web
demo's test does): the landing page and a tutorial render with their navigation, and the site's
search finds "SegDeformer". Skips without mkdocs or Chromium."""
from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from headless_chromium import MISSING, start_chromium

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(MISSING, reason="chromium / chromedriver not installed")
pytest.importorskip("mkdocs")
pytest.importorskip("material")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402



@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


def test_landing_page_and_a_tutorial_render(site_url, browser):
    browser.get(site_url)
    assert browser.title.startswith("segadapter")
    h1 = browser.find_element(By.TAG_NAME, "h1").text
    assert h1 == "segadapter"
    nav = browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").get_attribute("textContent")
    for section in ("Get started", "Tutorials", "Methods", "Benchmarks", "Reference"):
        assert section in nav
    picture = browser.find_element(By.CSS_SELECTOR, "article img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture) > 0

    browser.get(site_url + "tutorials/own-data/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Train on your own images and masks"
    code = browser.find_elements(By.CSS_SELECTOR, "article pre code")
    assert any("build_dataset" in c.text for c in code)


def test_search_finds_segdeformer(site_url, browser):
    browser.get(site_url + "?q=SegDeformer")  # Material opens its search with the query filled in

    def results(driver):
        items = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
        return items if any("SegDeformer" in i.get_attribute("textContent") for i in items) else False

    items = WebDriverWait(browser, 30).until(results)
    links = [a.get_attribute("href") for i in items for a in i.find_elements(By.TAG_NAME, "a")]
    assert any("methods/segdeformer" in (h or "") for h in links), links[:10]
