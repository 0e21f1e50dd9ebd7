"""Browser end-to-end: a real `streamlit run app.py` driven by headless Chromium through Playwright."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png_bytes(seed: int) -> bytes:
    from PIL import Image

    from model.data.phantom import make_case

    img = make_case(seed, "CXR", size=128).image  # a chest image: the input guard refuses blobs and noise
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    from components.model_store import build_demo_checkpoints

    ckpt = tmp_path_factory.mktemp("ckpt")
    build_demo_checkpoints(ckpt)
    port = _free_port()
    env = dict(os.environ, MEDDISTILL_CHECKPOINTS=str(ckpt), OMP_NUM_THREADS="1")
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.fileWatcherType", "none", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy")
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


READY_JS = """([name, idle]) => {
  // both reports and both Grad-CAM overlays of the study called `name` are on the page
  // (with `idle`, the script has also finished: divergence highlights drawn, page interactive)
  const app = document.querySelector("[data-testid='stApp']");
  if (!app) return false;
  if (idle && app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const reports = [...document.querySelectorAll('.md-report')]
    .filter(e => !name || e.getAttribute('data-source') === name);
  const overlays = [...document.querySelectorAll("[data-testid='stImageCaption']")]
    .map(e => e.textContent).filter(c => c.includes('score') && (!name || c.startsWith(name + ' ')));
  return reports.length >= 2 && overlays.length >= 2;
}"""


def test_upload_shows_both_reports_and_overlays(server, tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "e2e_upload.png"
    path.write_bytes(_png_bytes(1))
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not an image at all")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server, wait_until="domcontentloaded")
        page.get_by_test_id("stFileUploaderDropzoneInput").wait_for(state="attached", timeout=60_000)
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
        page.wait_for_function(READY_JS, arg=["e2e_upload.png", True], timeout=90_000)
        assert page.locator(".md-report[data-divergence='1']").count() >= 2  # highlights drawn
        text = page.inner_text("body")
        assert "Teacher" in text and "Student" in text
        assert "not for clinical use" in text
        # a bad file: the loader's message, and the app keeps running
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(path), str(bad)])
        bad_alert = page.get_by_test_id("stAlertContainer").filter(has_text="not_an_image.png")
        bad_alert.first.wait_for(timeout=60_000)
        page.wait_for_function(READY_JS, arg=["e2e_upload.png", True], timeout=60_000)  # still working
        assert page.get_by_test_id("stException").count() == 0
        browser.close()
