"""Dashboard timings with a real browser, and the README screenshots.

    .venv/bin/python benchmarks/bench_app.py                       # shipped (or demo) checkpoints
    .venv/bin/python benchmarks/bench_app.py --checkpoints DIR     # $MEDDISTILL_CHECKPOINTS layout
    .venv/bin/python benchmarks/bench_app.py --screenshots docs/screenshots

Figures (wall clock, headless Chromium via Playwright, this machine's CPU):
* cold start: ``streamlit run`` launch -> the first page fully rendered and idle (models loaded, the
  default sample's reports and Grad-CAM overlays drawn);
* upload -> both reports and both overlays rendered: median (and all) of ``--runs`` uploads of fresh
  images (a changed pixel each, so no cache hit); and upload -> page idle (the per-token divergence
  highlights, computed after the overlays, drawn too).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PAGES = {
    "compare": "",
    "metrics": "metrics",
    "errors": "errors",
    "distillation": "distillation",
    "models": "models",
}

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

IDLE_JS = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelectorAll("[data-testid='stSpinner']").length === 0;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    port: int, checkpoints: Path | None, log_path: Path, env_extra: dict[str, str] | None = None
) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:``port`` only (settings otherwise from .streamlit/config.toml)."""
    env = dict(os.environ, **(env_extra or {}))
    if checkpoints:
        env["MEDDISTILL_CHECKPOINTS"] = str(checkpoints)
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def wait_health(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("streamlit never became healthy")


def upload_images(n: int, out: Path) -> list[Path]:
    """``n`` distinct PNGs: a shipped CXR phantom with one changed pixel each (so no cache hit)."""
    src = ROOT / "assets" / "samples" / "cxr_cardiomegaly.png"
    if src.exists():
        base = np.asarray(Image.open(src).convert("L"))
    else:
        yy, xx = np.mgrid[:256, :256]
        base = (255 * (0.3 + 0.5 * np.exp(-(((xx - 128) / 60) ** 2 + ((yy - 140) / 80) ** 2)))).astype(
            np.uint8
        )
    paths = []
    for i in range(n):
        img = base.copy()
        img[0, i] = (int(img[0, i]) + 1 + i) % 256
        p = out / f"bench_upload_{i}.png"
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths


def select_first_row(page) -> None:
    """Tick the first row of the first dataframe (a canvas grid: click where its checkbox is drawn)."""
    grid = page.get_by_test_id("stDataFrame").first
    if grid.count() == 0:
        return
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)
    page.wait_for_timeout(500)
    page.wait_for_function(IDLE_JS, timeout=120_000)


def full_page_screenshot(page, path: Path) -> None:
    """Streamlit scrolls inside stMain: grow the viewport to the content so 'full page' is everything."""
    height = page.evaluate(
        "() => { const m = document.querySelector(\"[data-testid='stMain']\"); "
        "return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight); }"
    )
    page.set_viewport_size({"width": 1500, "height": int(min(max(height, 900), 6000))})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path), full_page=True)


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description="Dashboard cold start and upload->rendered timings (browser).")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--checkpoints", type=Path, default=None, help="dir with teacher/ student/ [student_nokd/]"
    )
    ap.add_argument("--screenshots", type=Path, default=None, help="write one full-page PNG per page here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        t0 = time.perf_counter()
        proc = start_server(port, args.checkpoints, tmp / "streamlit.log")
        try:
            wait_health(url)
            t_health = time.perf_counter() - t0
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_function(READY_JS, arg=["", True], timeout=300_000)
            t_first = time.perf_counter() - t0

            times, idle_times = [], []
            dropzone = page.get_by_test_id("stFileUploaderDropzoneInput")
            for p in upload_images(args.runs, tmp):
                t = time.perf_counter()
                dropzone.set_input_files(str(p))
                page.wait_for_function(READY_JS, arg=[p.name, False], timeout=300_000, polling=20)
                times.append(time.perf_counter() - t)
                page.wait_for_function(READY_JS, arg=[p.name, True], timeout=300_000, polling=20)
                idle_times.append(time.perf_counter() - t)
                print(f"upload {p.name}: rendered {times[-1]:.2f} s, idle {idle_times[-1]:.2f} s", flush=True)

            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                for name, path in PAGES.items():
                    page.set_viewport_size({"width": 1500, "height": 1000})
                    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                    page.wait_for_timeout(500)
                    page.wait_for_function(IDLE_JS, timeout=300_000)
                    if name == "compare":
                        page.wait_for_function(READY_JS, arg=["", True], timeout=300_000)
                    if name == "errors":
                        select_first_row(page)
                    page.wait_for_timeout(800)  # plotly/images settle
                    full_page_screenshot(page, args.screenshots / f"{name}.png")
                    print(f"screenshot {name}", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
            browser.close()

    result = {
        "health_s": round(t_health, 2),
        "cold_start_first_page_s": round(t_first, 2),
        "upload_to_rendered_median_s": round(statistics.median(times), 2),
        "upload_to_rendered_all_s": [round(t, 2) for t in times],
        "upload_to_idle_median_s": round(statistics.median(idle_times), 2),
        "upload_to_idle_all_s": [round(t, 2) for t in idle_times],
        "checkpoints": str(args.checkpoints or "shipped/demo"),
        "cpu_threads": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
