"""The dashboard under load: 8 browser sessions at once against one local server (loopback only).

    .venv/bin/python benchmarks/bench_load.py                       # shipped checkpoints, app defaults
    .venv/bin/python benchmarks/bench_load.py --policy inline       # another thread policy (model/serving.py)
    .venv/bin/python benchmarks/bench_load.py --large-count 0       # skip the memory phase

One ``streamlit run app.py`` on 127.0.0.1 and headless Chromium (Playwright, async), each session in its
own browser context. Figures (wall clock; the machine's load average is recorded beside them):

* ``cold_start_s``: server launch -> the first session's page fully rendered (models loaded, the default
  sample's reports, overlays and divergence highlights drawn, script idle);
* ``concurrent``: ``--sessions`` sessions open the page, then upload a fresh image each at the same
  moment; per-session upload -> both reports and both Grad-CAM overlays rendered, and the time until
  every session had them (``all_finished_s``), plus until every page was idle again; the server's own
  CPU seconds per session (wall times on a shared machine mostly say what other processes left us);
* ``memory``: server RSS when idle (after the cold start), its peak and its value after
  ``--large-count`` large uploads (``--large-side`` px PNGs) spread over the sessions, after the sessions
  closed (``--settle-s``, past ``server.disconnectedSessionTTL`` in .streamlit/config.toml), and after
  one more visitor came and went (Streamlit drops expired sessions when its session store is next
  written) plus ``--after-visit-s`` (the server trims its heap every minute);
* ``non_local_requests``: every request a page made to anything but the local server (should be none).

CPU seconds (the server's user + system time, ``/proc/PID/stat``) are recorded beside every wall time,
with the 1-minute load average: on a machine other jobs are loading, wall times say mostly what they
left us, CPU seconds say what the app costs (``benchmarks/bench_cpu.py`` measures them in one process).

Writes ``benchmarks/results/load.json`` (``--json``). Bounded: every wait has a timeout and the whole
run stops after ``--max-minutes``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app import (  # noqa: E402  (the app driver shared with bench_app.py)
    CHROMIUM,
    IDLE_JS,
    READY_JS,
    ROOT,
    free_port,
    start_server,
    upload_images,
    wait_health,
)

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 300_000  # one page wait; the run as a whole is bounded by --max-minutes

#: the page's title is drawn (the first paint: before any model is loaded)
FIRST_PAINT_JS = """() => !!document.querySelector("[data-testid='stApp'] h1")"""

#: the study called `name` is shown (its viewer caption) and the script has finished
SHOWN_JS = """(name) => {
  const caps = [...document.querySelectorAll("[data-testid='stImageCaption']")].map(e => e.textContent);
  return caps.some(c => c.startsWith(name + ' '));
}"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has spent busy (all cores; /proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def browser_cpu_s() -> float:
    """CPU seconds of every Chromium process now running (the benchmark's own clients)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if "chrom" in (d / "comm").read_text():
                total += cpu_s(int(d.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return total


def is_local(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in ("data", "blob", "about") or u.hostname in ("127.0.0.1", "localhost", "::1")


def large_images(n: int, side: int, out: Path) -> list[Path]:
    """``n`` distinct ``side`` x ``side`` chest-like PNGs: a shipped phantom upscaled + seeded noise."""
    base = Image.open(ROOT / "assets" / "samples" / "cxr_cardiomegaly.png").convert("L").resize((side, side))
    base = np.asarray(base, np.int16)
    paths = []
    for i in range(n):
        noise = np.random.default_rng(i).integers(-3, 4, base.shape, dtype=np.int16)
        img = np.clip(base + noise, 0, 255).astype(np.uint8)
        p = out / f"large_{i:02d}.png"
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths


async def new_session(browser, outside: list[str]):
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.on("request", lambda r: None if is_local(r.url) else outside.append(r.url))
    return ctx, await ctx.new_page()


async def open_ready(page, url: str) -> None:
    await page.goto(url, wait_until="domcontentloaded")
    await page.wait_for_function(READY_JS, arg=["", True], timeout=WAIT_MS, polling=100)


async def upload_and_wait(page, path: Path, t_start: float) -> dict:
    """Upload; time to both reports + overlays of this file, and to the page idle."""
    await page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    await page.wait_for_function(READY_JS, arg=[path.name, False], timeout=WAIT_MS, polling=50)
    rendered = time.perf_counter() - t_start
    await page.wait_for_function(READY_JS, arg=[path.name, True], timeout=WAIT_MS, polling=50)
    return {"rendered_s": rendered, "idle_s": time.perf_counter() - t_start}


async def upload_large(page, path: Path) -> float:
    """Upload a large file; seconds until it is shown and the script is idle (reports may be refused)."""
    t = time.perf_counter()
    await page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    await page.wait_for_function(SHOWN_JS, arg=path.name, timeout=WAIT_MS, polling=100)
    await page.wait_for_function(IDLE_JS, timeout=WAIT_MS, polling=100)
    return time.perf_counter() - t


async def sample_rss(pid: int, out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        await asyncio.sleep(0.5)


async def run(args, tmp: Path) -> dict:
    from playwright.async_api import async_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_extra = {"MEDDISTILL_INFERENCE": args.policy} if args.policy else {}
    outside: list[str] = []
    result: dict = {"load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        t0 = time.perf_counter()
        proc = start_server(port, args.checkpoints, tmp / "streamlit.log", env_extra)
        try:
            await asyncio.to_thread(wait_health, url, 180)
            result["health_s"] = round(time.perf_counter() - t0, 2)
            ctx0, page0 = await new_session(browser, outside)
            await page0.goto(url, wait_until="domcontentloaded")
            await page0.wait_for_function(FIRST_PAINT_JS, timeout=WAIT_MS, polling=50)
            result["first_paint_s"] = round(time.perf_counter() - t0, 2)
            result["first_paint_server_cpu_s"] = round(cpu_s(proc.pid), 2)
            await page0.wait_for_function(READY_JS, arg=["", True], timeout=WAIT_MS, polling=100)
            result["cold_start_s"] = round(time.perf_counter() - t0, 2)
            result["cold_start_server_cpu_s"] = round(cpu_s(proc.pid), 2)
            result["load_avg_at_cold_start"] = [round(x, 2) for x in os.getloadavg()]
            await asyncio.sleep(2)
            rss_idle = rss_mb(proc.pid)
            print(f"cold start {result['cold_start_s']} s, idle RSS {rss_idle:.0f} MB", flush=True)

            sessions = [await new_session(browser, outside) for _ in range(args.sessions)]
            t = time.perf_counter()
            await asyncio.gather(*(open_ready(p, url) for _, p in sessions))
            first_pages = time.perf_counter() - t
            files = upload_images(args.sessions, tmp)  # fresh images: no cache hit
            load_before = [round(x, 2) for x in os.getloadavg()]
            c, m, b = cpu_s(proc.pid), machine_busy_s(), browser_cpu_s()
            t = time.perf_counter()
            per = await asyncio.gather(
                *(upload_and_wait(p, f, t) for (_, p), f in zip(sessions, files, strict=True))
            )
            server_cpu = cpu_s(proc.pid) - c
            machine_cpu, browser_cpu = machine_busy_s() - m, browser_cpu_s() - b
            rendered = [r["rendered_s"] for r in per]
            result["concurrent"] = {
                "sessions": args.sessions,
                "first_page_all_s": round(first_pages, 2),
                "upload_to_rendered_s": [round(x, 2) for x in rendered],
                "upload_to_rendered_median_s": round(statistics.median(rendered), 2),
                "all_finished_s": round(max(rendered), 2),
                "all_idle_s": round(max(r["idle_s"] for r in per), 2),
                # what the server itself spent (the browsers share the cores too): load-independent
                "server_cpu_s_per_session": round(server_cpu / args.sessions, 2),
                "server_cpu_s_total": round(server_cpu, 2),
                # where the cores went until every session was idle: the browsers' own rendering
                # competes with the server on the same cores
                "browser_cpu_s_total": round(browser_cpu, 2),
                "machine_busy_cpu_s": round(machine_cpu, 2),
                "load_avg_before": load_before,
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            }
            print(json.dumps(result["concurrent"]), flush=True)

            # one session alone: the idle-machine upload latency (as far as the machine is idle)
            c = cpu_s(proc.pid)
            single = await upload_and_wait(
                page0, upload_images(args.sessions + 1, tmp)[-1], time.perf_counter()
            )
            result["single_upload_to_rendered_s"] = round(single["rendered_s"], 2)
            result["single_upload_server_cpu_s"] = round(cpu_s(proc.pid) - c, 2)  # to the page idle
            result["load_avg_at_single_upload"] = [round(x, 2) for x in os.getloadavg()]

            if args.large_count:
                paths = large_images(args.large_count, args.large_side, tmp)
                peak: list[float] = []
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_rss(proc.pid, peak, stop))

                async def uploader(page, mine):
                    return [await upload_large(page, p) for p in mine]

                t = time.perf_counter()
                times = await asyncio.gather(
                    *(uploader(p, paths[i :: args.sessions]) for i, (_, p) in enumerate(sessions))
                )
                large_s = time.perf_counter() - t
                rss_after = rss_mb(proc.pid)
                for ctx, _ in sessions:
                    await ctx.close()
                await ctx0.close()
                t_closed = time.perf_counter()
                rss_closed = rss_after
                while time.perf_counter() - t_closed < args.settle_s:
                    await asyncio.sleep(5)
                    rss_closed = rss_mb(proc.pid)
                # Streamlit drops expired sessions lazily, when its session store is next written: as
                # on a real server, the next visitor's session (opened and closed) lets them go
                ctx_next, page_next = await new_session(browser, outside)
                await open_ready(page_next, url)
                await ctx_next.close()
                await asyncio.sleep(args.after_visit_s)
                rss_next = rss_mb(proc.pid)
                stop.set()
                await sampler
                flat = [x for ts in times for x in ts]
                result["memory"] = {
                    "large_uploads": args.large_count,
                    "large_side_px": args.large_side,
                    "large_file_mb_median": round(
                        statistics.median(p.stat().st_size for p in paths) / 2**20, 1
                    ),
                    "upload_shown_median_s": round(statistics.median(flat), 2),
                    "all_large_uploads_s": round(large_s, 1),
                    "rss_idle_mb": round(rss_idle),
                    "rss_peak_mb": round(max(peak)),
                    "rss_after_uploads_mb": round(rss_after),
                    "rss_after_sessions_closed_mb": round(rss_closed),
                    "settle_s": args.settle_s,
                    "rss_after_next_visit_mb": round(rss_next),
                    "after_visit_s": args.after_visit_s,
                    "growth_after_close_mb": round(rss_next - rss_idle),
                    "target_growth_mb": 500,
                }
                print(json.dumps(result["memory"]), flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
            await browser.close()
    result["non_local_requests"] = sorted(set(outside))
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="8 concurrent browser sessions against a local server.")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument(
        "--large-count", type=int, default=50, help="large uploads for the memory phase (0: skip)"
    )
    ap.add_argument("--large-side", type=int, default=4000, help="px per side of a large upload")
    ap.add_argument("--settle-s", type=float, default=75.0, help="wait after closing the sessions")
    ap.add_argument("--after-visit-s", type=float, default=70.0, help="wait after the next visitor left")
    ap.add_argument("--policy", default=None, help="a model.serving.POLICIES name (default: the app's)")
    ap.add_argument("--checkpoints", type=Path, default=None, help="dir with teacher/ student/")
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = ap.parse_args(argv)

    from model.serving import DEFAULT_POLICY

    tmp = Path(tempfile.mkdtemp(prefix="bench_load_"))
    result = asyncio.run(asyncio.wait_for(run(args, tmp), timeout=args.max_minutes * 60))
    result = {
        "command": "benchmarks/bench_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "policy": args.policy or DEFAULT_POLICY,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "checkpoints": str(args.checkpoints or "shipped/demo"),
        **result,
    }
    print(json.dumps(result, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
