"""Debian's Chromium driven through chromedriver, headless and offline: what the browser tests
(the web demo, the docs site) share. Import it after `pytest.importorskip("selenium.webdriver")`."""
from __future__ import annotations

import os
import shutil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = CHROMIUM is None or DRIVER is None  # the tests skip: "chromium / chromedriver not installed"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1050"]


def start_chromium(performance_log: bool = False):
    """A headless Chrome webdriver (quit it when done); `performance_log` records network events."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    if performance_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver
