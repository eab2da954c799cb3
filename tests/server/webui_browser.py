"""tests/server/webui_browser.py - the chat page of a live `kvlm serve` in a real
headless Chromium, as the browser test (tests/server/webui_test.py) and the docs'
screenshot (scripts/screenshot-webui.py) both drive it:

  chromium(...)   Debian's /usr/bin/chromium and /usr/bin/chromedriver given by path,
                  so Selenium Manager (which would try to download a driver) never runs;
                  a private profile, removed afterwards
  Page            the page's elements by their ids (src/server/webui.html): set a field,
                  send a message, wait for the reply, read the KV gauge, save a screenshot
  api, wait       the server's JSON API called directly (urllib), and polling

Needs Selenium (scripts/webui-venv.sh); nothing else outside the standard library.
"""
import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def api(base, path, body=None, key=None):
    """GET base+path, or POST body as JSON; the decoded JSON answer."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def wait(fn, timeout, step=0.05):
    """fn() until it is truthy (returned) or timeout seconds pass (None)."""
    end = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except Exception:            # an element not there yet, a stale one
            v = None
        if v:
            return v
        if time.monotonic() > end:
            return None
        time.sleep(step)


@contextlib.contextmanager
def chromium(binary="/usr/bin/chromium", driver_path="/usr/bin/chromedriver", window=(1280, 860), viewport=None):
    """A headless Chromium under Selenium, quit (and its profile removed) on leaving.
    window: the window size; viewport (width, height): the page's exact size instead
    (device metrics override), what a screenshot of a given size needs."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="kvlm-webui-chromium.")
    args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            f"--window-size={window[0]},{window[1]}", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", f"--user-data-dir={profile}"]
    if viewport:
        args.append("--hide-scrollbars")   # a picture of the page, not of the window
    for arg in args:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        # an explicit driver path: Selenium Manager (which would download one) never runs
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
        driver.set_script_timeout(10)
        if viewport:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        if driver:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The chat page in driver; screenshots go to artifacts (a folder, or None)."""

    def __init__(self, driver, artifacts=None):
        self.d = driver
        self.artifacts = artifacts
        self.shots = []

    def el(self, id_):
        return self.d.find_element(By.ID, id_)

    def text(self, id_):
        return self.el(id_).text

    def set_field(self, id_, value):
        e = self.el(id_)
        e.clear()
        e.send_keys(str(value))

    def model_shown(self, timeout=5):
        """The model names the page shows once GET /v1/models answered ("" if it never did)."""
        return wait(lambda: self.text("model") if self.text("model") not in ("", "\u2026") else None, timeout) or ""

    def assistants(self):
        return self.d.find_elements(By.CSS_SELECTOR, "#messages .msg.assistant")

    def last_reply(self):
        a = self.assistants()
        return a[-1] if a else None

    def reply_state(self):
        r = self.last_reply()
        return r.get_attribute("data-state") if r else None

    def say(self, text):
        n = len(self.assistants())
        box = self.el("input")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)
        return wait(lambda: len(self.assistants()) > n, 5)

    def wait_reply(self, timeout=40):
        return wait(lambda: self.reply_state() in ("done", "stopped", "error"), timeout)

    def gauge(self):
        return {k: int(self.text("kv-" + k)) for k in ("in-use", "cached", "free", "total")}

    def shot(self, name):
        path = os.path.join(self.artifacts, name + ".png")
        self.d.save_screenshot(path)
        self.shots.append(path)
        return path
