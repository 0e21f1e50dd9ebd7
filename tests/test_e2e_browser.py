"""Browser end-to-end: a real `streamlit run app.py` driven by headless Chromium through Playwright."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_app import IDLE_JS, READY_JS, free_port, start_server, wait_health  # noqa: E402, F401  (the app driver the benchmarks use; IDLE_JS for test_e2e_uploads)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]


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
    from model.demo import build_demo_checkpoints

    ckpt = tmp_path_factory.mktemp("ckpt")
    build_demo_checkpoints(ckpt)
    log_path = tmp_path_factory.mktemp("log") / "streamlit.log"
    port = free_port()
    proc = start_server(port, ckpt, log_path, env_extra={"OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, timeout=60)
    except TimeoutError:
        proc.kill()
        pytest.fail("streamlit did not become healthy")
    yield url
    proc.terminate()
    proc.wait(10)


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
