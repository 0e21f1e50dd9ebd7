"""Where the CPU seconds of a cold start (and of one upload) go (issue 13): a table step -> CPU s.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/profile_cold_start.py --uploads 3 \
        --json /tmp/profile.json [--cprofile /tmp/profile.pstats]
    .venv/bin/python benchmarks/profile_cold_start.py --compare /tmp/before.json /tmp/after.json

One fresh process, in the order a server's first visit runs:

1. imports, one at a time on this thread before anything else runs (what ``app.py``, the Compare page
   and the prewarm thread import): CPU s of each (``time.process_time``);
2. the app's first page, headless (Streamlit ``AppTest``: the same script a browser's first visit runs),
   with the model calls the page makes wrapped: each wrapper adds the CPU time of the thread that ran it
   (``time.thread_time``: right while other threads run) to its step. After the page is drawn we wait
   for the inference queue to drain (queued work, such as the warm-up predictions older versions ran at
   load, is part of a cold start).
   The page script's own thread (widgets, page code, lazy imports) is a step of its own; "other" = the
   process's CPU minus the steps: Streamlit's runtime, ``app.py`` and the AppTest harness (an upper
   bound of what a real server spends there);
3. ``--uploads N``: N fresh uploads through the page's uploader (the shipped CXR sample with one pixel
   changed: no cache hit), the same table per upload (median over the N).

``--cprofile FILE`` also runs every wrapped call under cProfile (on its own thread) and writes the merged
stats (``python -m pstats FILE``); it slows the run, so take the table from a run without it.
CPU time, unlike wall time, hardly depends on other processes: measure before/after under any load, but
say the load (recorded in the JSON).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# what app.py + the Compare page import, then the prewarm thread's list (model/serving.py PREWARM_MODULES),
# then our model modules the first page loads lazily
IMPORTS = (
    "streamlit",
    "components.layout",
    "model.serving",
    "components.model_store",
    "components.predictions",
    "components.cam_view",
    "components.controls",
    "components.prediction_view",
    "components.review_view",
    "components.study_view",
    "model.guard",
    "torch",
    "safetensors.torch",
    "model.networks",
    "model.checkpoints",
    "model.inference",
    "model.explain.gradcam",
    "model.explain.divergence",
    "model.evaluate.efficiency",
)

_steps: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_lock = threading.Lock()
_profile: pstats.Stats | None = None
_use_cprofile = False


def _add(name: str, cpu: float, prof: cProfile.Profile | None) -> None:
    global _profile
    with _lock:
        _steps[name] += cpu
        _calls[name] += 1
        if prof is not None:
            if _profile is None:
                _profile = pstats.Stats(prof)
            else:
                _profile.add(prof)


_local = threading.local()  # .depth: wrapped calls open on this thread; .inner: CPU s of nested ones


def _timed(name_of, fn):
    """``fn`` adding its own CPU time (this thread's, minus wrapped calls nested in it) to its step; the
    outermost wrapped call of a thread runs under cProfile (CPU timer) when ``--cprofile`` is given."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        name = name_of(*args, **kwargs) if callable(name_of) else name_of
        depth = getattr(_local, "depth", 0)
        prof = cProfile.Profile(time.thread_time) if _use_cprofile and depth == 0 else None
        outer_inner = getattr(_local, "inner", 0.0)
        _local.depth, _local.inner = depth + 1, 0.0
        c = time.thread_time()
        try:
            return prof.runcall(fn, *args, **kwargs) if prof is not None else fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - c
            _add(name, spent - _local.inner, prof)
            _local.depth, _local.inner = depth, outer_inner + spent

    return wrapper


def _patch(obj, attr: str, name_of) -> None:
    setattr(obj, attr, _timed(name_of, getattr(obj, attr)))


def install_wrappers() -> None:
    """Wrap the model calls of the first page where the page looks them up at call time."""
    import model.checkpoints
    import model.data.imaging
    import model.evaluate.efficiency
    import model.explain.divergence
    import model.explain.gradcam
    import model.guard
    import model.guard.ood
    from model.guard import Guard
    from model.inference import Predictor

    _patch(model.checkpoints, "load_checkpoint", lambda d, **k: f"load checkpoint ({Path(d).name})")
    _patch(Predictor, "__init__", lambda self, m, tok, card, extras, mid: f"Predictor init ({mid})")
    _patch(model.guard.ood, "attach_probe", "attach guard OOD probe")

    def predict_name(self, study, *a, **k):
        return f"{'warm-up' if study.source == 'warm-up' else 'predict'} {self.model_id}"

    _patch(Predictor, "predict", predict_name)
    _patch(model.evaluate.efficiency, "count_parameters", "checkpoint sizes (params + bytes)")
    _patch(model.evaluate.efficiency, "checkpoint_bytes", "checkpoint sizes (params + bytes)")
    _patch(model.data.imaging, "load_study", "load study (decode + window)")
    _patch(Guard, "load", "input guard: load")
    _patch(Guard, "check", "input guard: check")
    _patch(model.guard, "with_verdict", "OOD verdict per model (with_verdict)")
    _patch(model.explain.gradcam, "explain", lambda pred, *a, **k: f"Grad-CAM {pred.model_id}")
    _patch(model.explain.gradcam, "overlay", "Grad-CAM overlay drawing")
    _patch(model.explain.divergence, "token_divergence", "divergence highlights (both reports)")
    import gc

    import model.serving

    # the serving process's heap trim (model/serving.py: a full collection + malloc_trim every 60 s): its
    # CPU grows with wall time, which a loaded machine stretches; shown apart so it is not read as page work
    _patch(gc, "collect", "periodic gc.collect + malloc_trim (grows with wall time)")
    _patch(model.serving, "release_memory", "periodic gc.collect + malloc_trim (grows with wall time)")
    from streamlit.navigation.page import Page as StreamlitPage

    # the Compare script's own thread: widgets, page code, lazy imports (model work runs on the queue's thread)
    _patch(StreamlitPage, "run", "page script thread (widgets, page code, lazy imports)")


def _png(seed: int) -> tuple[str, bytes, str]:
    from bench_cpu import _png as png

    return png(seed)


def _drain() -> None:
    from model.serving import shared_queue

    while shared_queue().pending():
        time.sleep(0.05)


def _table(steps: dict[str, float], total: float) -> dict[str, float]:
    out = {k: round(v, 3) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])}
    out["other (Streamlit runtime + AppTest harness, app.py)"] = round(total - sum(steps.values()), 3)
    out["total"] = round(total, 3)
    return out


def run(uploads: int, timeout: float) -> dict:
    result: dict = {"imports_cpu_s": {}}
    c0 = time.process_time()
    for name in IMPORTS:
        c = time.process_time()
        importlib.import_module(name)
        result["imports_cpu_s"][name] = round(time.process_time() - c, 3)
    imports = time.process_time() - c0
    result["imports_total_cpu_s"] = round(imports, 3)

    install_wrappers()
    from streamlit.testing.v1 import AppTest

    c = time.process_time()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    _drain()
    page = time.process_time() - c
    result["exception"] = [str(e.value)[:300] for e in at.exception]
    result["overlays"] = sum(1 for e in at.get("image") for cap in e.captions if "score" in cap)
    result["first_page_cpu_s"] = _table(dict(_steps), page)
    result["cold_start_total_cpu_s"] = round(imports + page, 3)

    per: list[dict[str, float]] = []
    for i in range(uploads):
        _steps.clear()
        c = time.process_time()
        at.file_uploader(key="cmp_upload").set_value(_png(1000 + i)).run()
        _drain()
        per.append(_table(dict(_steps), time.process_time() - c))
        if at.exception:
            result.setdefault("upload_exception", [str(e.value)[:300] for e in at.exception])
    if per:
        keys = dict.fromkeys(k for p in per for k in p)
        result["upload_cpu_s_median"] = {
            k: round(statistics.median(p.get(k, 0.0) for p in per), 3) for k in keys
        }
        result["upload_cpu_s_runs"] = per
    return result


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}` (commit {result['commit']}, load average "
             f"{result['load_avg_start']} -> {result['load_avg_end']}, {result['wall_s']} s wall)", "",
             "| imports (this thread, in order) | CPU s |", "|---|---:|"]  # fmt: skip
    lines += [f"| `{k}` | {v:.3f} |" for k, v in result["imports_cpu_s"].items()]
    lines += [f"| **imports total** | **{result['imports_total_cpu_s']:.3f}** |", ""]
    lines += ["| first page (AppTest run + queue drained) | CPU s |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["first_page_cpu_s"].items()]
    lines += [f"| **cold start total (imports + first page)** | **{result['cold_start_total_cpu_s']:.3f}** |"]
    if "upload_cpu_s_median" in result:
        n = len(result["upload_cpu_s_runs"])
        lines += ["", f"| one upload (median of {n}) | CPU s |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in result["upload_cpu_s_median"].items()]
    return "\n".join(lines) + "\n"


def compare_markdown(before: dict, after: dict) -> str:
    """One table, before | after, per step (first page and one upload) and per import."""

    def rows(title: str, b: dict, a: dict) -> list[str]:
        out = [f"| {title} | before | after |", "|---|---:|---:|"]
        for k in dict.fromkeys([*b, *a]):
            vb, va = b.get(k), a.get(k)
            cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            bold = k in ("total",) or k.startswith("**")
            out.append(f"| {'**' + k + '**' if bold else k} | {cell(vb)} | {cell(va)} |")
        return out

    lines = []
    for side, d in (("before", before), ("after", after)):
        lines.append(f"- {side}: `{d['command']}` at commit {d['commit']} ({d['root']}), load average "
                     f"{d['load_avg_start']} -> {d['load_avg_end']}, {d['wall_s']} s wall")  # fmt: skip
    lines.append("")
    imports = lambda d: {**d["imports_cpu_s"], "total": d["imports_total_cpu_s"]}  # noqa: E731
    lines += rows("imports (one at a time, in this order), CPU s", imports(before), imports(after)) + [""]
    lines += rows("first page (AppTest run + queue drained), CPU s", before["first_page_cpu_s"],
                  after["first_page_cpu_s"]) + [""]  # fmt: skip
    lines += [f"**Cold start (imports + first page): {before['cold_start_total_cpu_s']:.2f} -> "
              f"{after['cold_start_total_cpu_s']:.2f} CPU s**", ""]  # fmt: skip
    if "upload_cpu_s_median" in before and "upload_cpu_s_median" in after:
        n = min(len(before["upload_cpu_s_runs"]), len(after["upload_cpu_s_runs"]))
        lines += rows(f"one upload (median of {n}), CPU s", before["upload_cpu_s_median"],
                      after["upload_cpu_s_median"])  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global _use_cprofile
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=2, help="fresh uploads after the first page")
    ap.add_argument("--timeout", type=float, default=3600.0, help="s for the AppTest runs")
    ap.add_argument("--json", type=Path, help="write the result here (+ a .md table beside it)")
    ap.add_argument("--cprofile", type=Path, help="write merged cProfile stats of the wrapped calls here")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                    help="print a before | after table of two --json results (no run)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        print(compare_markdown(before, after))
        return 0
    _use_cprofile = args.cprofile is not None
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    la0, w0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    result = run(args.uploads, args.timeout)
    result = {
        "command": "benchmarks/profile_cold_start.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit.stdout.strip(),
        "root": str(ROOT),
        "load_avg_start": la0,
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - w0, 1),
        **result,
    }
    if args.cprofile and _profile is not None:
        _profile.dump_stats(str(args.cprofile))
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        args.json.with_suffix(".md").write_text(markdown(result))
    print(text)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
