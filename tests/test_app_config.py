"""Serving settings: .streamlit/config.toml, offline icons, bounded caches, and no request leaving localhost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".streamlit" / "config.toml"


def test_config_matches_the_loader_and_stays_offline():
    from model.data.imaging import MAX_BYTES

    cfg = tomllib.loads(CONFIG.read_text())
    assert cfg["server"]["maxUploadSize"] == MAX_BYTES // 2**20  # MB, the loader's own limit
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["toolbarMode"] == "minimal"
    assert cfg["client"]["showErrorLinks"] == "false"  # no Google / ChatGPT links under errors
    budget = cfg["server"]["maxCacheDataSize"]
    assert budget.endswith("mb") and 0 < int(budget[:-2]) <= 512
    assert 0 < cfg["server"]["disconnectedSessionTTL"] <= 300


def test_streamlit_reads_the_config(monkeypatch):
    """Streamlit itself parses the file into the values the app relies on (names and types right)."""
    from streamlit import config

    monkeypatch.chdir(ROOT)
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("server.maxUploadSize") == 64
        assert config.get_option("browser.gatherUsageStats") is False
        assert config.get_option("client.toolbarMode") == "minimal"
        assert config.get_option("server.maxCacheDataSize")
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


def test_no_material_icons_in_app_navigation():
    """`:material/...:` page icons make the browser fetch the favicon from fonts.gstatic.com."""
    import re

    text = (ROOT / "app.py").read_text()
    icons = re.findall(r"icon\s*=\s*['\"]([^'\"]*)['\"]", text)  # page_icon= and every st.Page(icon=)
    assert len(icons) >= 6 and "page_icon=" in text
    assert not [i for i in icons if i.startswith(":material")]


def _study(h: int, w: int, spacing=(0.2, 0.25)):
    from model.types import Study

    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    px = 0.2 + 0.6 * np.exp(-(((xx - w / 2) / (w / 5)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2))
    return Study(pixels=px.astype(np.float32), modality="CXR", pixel_spacing=spacing, source="big.png")


def test_served_study_is_display_size_and_models_see_the_same_image():
    from components.study_view import SERVE_MAX_SIDE, served_study
    from model.data.imaging import to_model_input

    big = _study(3000, 2400)
    small = served_study(big)
    assert max(small.pixels.shape) == SERVE_MAX_SIDE and small.pixels.dtype == np.float32
    assert small.pixels.nbytes <= SERVE_MAX_SIDE**2 * 4 < big.pixels.nbytes / 6
    h, w = small.pixels.shape
    assert small.pixel_spacing == pytest.approx((0.2 * 3000 / h, 0.25 * 2400 / w))  # mm per pixel grows
    assert any("2400×3000" in note for note in small.warnings)  # the user is told
    for size in (128, 256):  # what a model reads: the same picture, within 1% of full scale
        diff = np.abs(to_model_input(small.pixels, size) - to_model_input(big.pixels, size)).max()
        assert diff < 0.01
    normal = _study(256, 256)
    assert served_study(normal) is normal  # ordinary studies pass unchanged (predictions identical)


def test_study_cache_is_bounded_by_entries_age_and_size(tmp_path):
    """Each cached study is at most display size; entries are capped and expire."""
    import io

    from PIL import Image

    from components.study_view import SERVE_MAX_SIDE, STUDY_TTL_S, load_study_cached

    assert load_study_cached._info.max_entries <= 64 and 0 < load_study_cached._info.ttl <= STUDY_TTL_S
    img = (np.random.default_rng(0).random((2000, 1600)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    study = load_study_cached("bigsha", "big.png", 0, "CXR", buf.getvalue())
    assert max(study.pixels.shape) == SERVE_MAX_SIDE
    per_entry = study.pixels.nbytes + (0 if study.raw is None else study.raw.nbytes)
    assert per_entry * load_study_cached._info.max_entries <= 512 * 2**20  # worst case, before the budget
    load_study_cached.clear()


def test_result_caches_expire():
    from components import predictions, samples

    for fn in (predictions._predict, predictions._divergence, predictions._explain, predictions._next_tokens):
        assert fn._info.ttl and fn._info.max_entries
    assert samples.load_sample._info.ttl and samples.load_sample._info.max_entries


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_no_request_leaves_localhost(tmp_path):
    """Every page, in a real browser: all requests go to the local server (no fonts, icons, telemetry)."""
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_app import CHROMIUM, IDLE_JS, PAGES, free_port, start_server, wait_health

    from model.demo import build_demo_checkpoints

    ckpt = tmp_path / "ckpt"
    build_demo_checkpoints(ckpt)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, ckpt, tmp_path / "streamlit.log", {"OMP_NUM_THREADS": "1"})
    outside, local = [], []
    try:
        wait_health(url, 120)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()

            def log(request):
                host = request.url.split("/")[2] if "://" in request.url else ""
                (local if host.startswith("127.0.0.1") or not host else outside).append(request.url)

            page.on("request", log)
            for path in PAGES.values():
                page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                page.wait_for_timeout(500)
                page.wait_for_function(IDLE_JS, timeout=180_000)
            page.wait_for_timeout(1000)  # late requests (favicon, fonts)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # a busy machine: do not let a slow shutdown fail the test
            proc.kill()
            proc.wait(10)
    assert local, "the pages made no requests at all: the test saw nothing"
    assert outside == [], f"requests left localhost: {sorted(set(outside))}"


def test_every_page_run_stops_animations_but_spinners_and_starts_a_request(app, monkeypatch):
    """The page style (components/layout.PAGE_STYLE) is drawn on every run: no fade or status animation
    to repaint while a page reruns (the load benchmark's browsers spent a third less CPU), spinners
    still turn; and each run takes a new request ticket for the inference queue (model/serving.py)."""
    import model.serving as serving

    runs = []
    real = serving.new_request
    monkeypatch.setattr(serving, "new_request", lambda: (runs.append(1), real()))
    app.run()
    assert not app.exception
    styles = [e.proto.body for e in app.get("html") if "<style>" in e.proto.body]
    assert len(styles) == 1
    assert "animation: none !important" in styles[0] and "transition: none !important" in styles[0]
    assert ":not([data-testid='stSpinner'] *)" in styles[0]
    app.run()
    assert len(runs) == 2
