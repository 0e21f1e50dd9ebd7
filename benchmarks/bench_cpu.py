"""CPU seconds of a cold start and of one upload: figures that hold on a machine other jobs are loading.

    .venv/bin/python benchmarks/bench_cpu.py                         # shipped checkpoints, 3 cold starts
    .venv/bin/python benchmarks/bench_cpu.py --sizes 128 224         # + the model work at 224 px
    .venv/bin/python benchmarks/bench_cpu.py --json benchmarks/results/load_cpu_before.json

Wall time on a shared machine mostly says what other processes left us; the CPU time a process itself
spends (``resource.getrusage``: user + system of all its threads) does not depend on them (apart from
cache effects), so "before vs after" can be measured while a training job runs. Wall time and the load
average are recorded beside every figure.

* ``cold``: a fresh Python process runs the app's first page headless (Streamlit's AppTest: the same
  script a browser's first visit runs: imports, model loading, the default sample's reports, Grad-CAM
  overlays and divergence highlights), ``--repeats`` times; CPU and wall at: first paint (the script
  has drawn the navigation and the disclaimer: ``streamlit`` and ``app.py``'s imports), fully rendered.
  Also the CPU of each import the page needs (``-X importtime``-like, measured one after the other).
* ``upload``: in that warm process, ``--uploads`` fresh images (a changed pixel each: no cache hit) are
  uploaded one after the other through the page's own uploader; CPU per upload of the whole page run
  (input guard, both predictions, both Grad-CAMs, both divergence passes, Streamlit).
* ``model_work``: per image size, the model calls of one upload in isolation (teacher and student
  predict, Grad-CAM at the default method/layer, token divergence), median of ``--uploads`` images; at
  a size other than the checkpoints', teacher and student are built from their presets' configs with
  ``image_size`` replaced (random weights, untrained: speed only).

Writes ``--json`` (default ``benchmarks/results/load_cpu_run.json``). Never more than one torch thread
(the serving policy's), ``OMP_NUM_THREADS=1`` in the children. Before vs after: run it in a checkout of
each commit (``git worktree add``), then merge the JSON files into one table::

    .venv/bin/python benchmarks/bench_cpu.py --before b_cold.json b_work.json --after a_cold.json a_work.json \
        --json benchmarks/results/load_cpu.json          # + load_cpu.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_files import f3, write_result  # noqa: E402  (benchmarks/ is not a package)


def cpu_s() -> float:
    """User + system CPU seconds of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _png(seed: int) -> tuple[str, bytes, str]:
    """A fresh upload: the shipped CXR sample with one pixel changed (bench_app.upload_images' rule)."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(ROOT / "assets" / "samples" / "cxr_cardiomegaly.png").convert("L")).copy()
    img[0, seed % img.shape[1]] = (int(img[0, seed % img.shape[1]]) + 1 + seed) % 256
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return (f"bench_cpu_{seed}.png", buf.getvalue(), "image/png")


# ------------------------------------------------------------------------------------------------
# child: one cold start + uploads, in a fresh process


def child_cold(uploads: int, timeout: float) -> dict:
    c0, w0 = cpu_s(), time.perf_counter()
    from streamlit.testing.v1 import AppTest

    out: dict = {"streamlit_import_cpu_s": round(cpu_s() - c0, 2)}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()  # the first visit: Compare with the default sample, fully rendered
    out["rendered_cpu_s"] = round(cpu_s() - c0, 2)
    out["rendered_wall_s"] = round(time.perf_counter() - w0, 2)
    out["exception"] = [str(e.value)[:200] for e in at.exception]
    out["overlays"] = sum(1 for e in at.get("image") for c in e.captions if "score" in c)
    out["modules"] = {m: m in sys.modules for m in ("sklearn", "pytorch_grad_cam", "cv2", "matplotlib")}
    per, walls = [], []
    for i in range(uploads):
        c, w = cpu_s(), time.perf_counter()
        at.file_uploader(key="cmp_upload").set_value(_png(1000 + i)).run()
        per.append(cpu_s() - c)
        walls.append(time.perf_counter() - w)
        if at.exception:
            out.setdefault("upload_exception", [str(e.value)[:200] for e in at.exception])
    out["upload_cpu_s"] = [round(x, 3) for x in per]
    out["upload_wall_s"] = [round(x, 3) for x in walls]
    out["upload_overlays"] = sum(1 for e in at.get("image") for c in e.captions if "score" in c)
    return out


def child_first_paint() -> dict:
    """CPU of ``streamlit`` + ``app.py``'s module-level imports + every page module's imports (what
    runs before the Compare page can draw its header)."""
    c0 = cpu_s()
    import streamlit  # noqa: F401

    out = {"streamlit_cpu_s": round(cpu_s() - c0, 2)}
    import importlib

    sys.path.insert(0, str(ROOT))
    names = ["components.layout", "model.serving", "components.model_store", "components.predictions",
             "components.cam_view", "components.prediction_view", "components.study_view", "model.guard"]  # fmt: skip
    for name in names:
        c = cpu_s()
        try:
            importlib.import_module(name)
        except Exception as err:  # a module of another version of the app
            out[name] = f"error: {type(err).__name__}"
            continue
        out[name] = round(cpu_s() - c, 3)
    out["before_header_cpu_s"] = round(cpu_s() - c0, 2)
    out["torch_imported_before_header"] = "torch" in sys.modules
    c = cpu_s()
    for name in ("torch", "torchvision", "transformers", "model.networks", "model.inference",
                 "model.explain.gradcam"):  # fmt: skip
        importlib.import_module(name)
    out["model_stack_import_cpu_s"] = round(cpu_s() - c, 2)
    c = cpu_s()
    try:
        importlib.import_module("pytorch_grad_cam")
        out["pytorch_grad_cam_import_cpu_s"] = round(cpu_s() - c, 2)
    except ImportError:
        out["pytorch_grad_cam_import_cpu_s"] = None
    return out


# ------------------------------------------------------------------------------------------------
# child: the model work of one upload, per image size


def _predictors(size: int):
    """(teacher, student): the shipped checkpoints when they are ``size`` px, else presets at ``size``."""
    import dataclasses

    from model.inference import Predictor

    shipped = {m: Predictor.from_dir(ROOT / "assets" / "checkpoints" / m, m) for m in ("teacher", "student")}
    if all(p.image_size == size for p in shipped.values()):
        return shipped, "shipped"
    from model.networks import build_model

    out = {}
    for m, p in shipped.items():
        cfg = dataclasses.replace(p.model.cfg, image_size=size)
        card = {"model_id": m, "untrained": True}  # no data config: served at the model's own size
        out[m] = Predictor(build_model(cfg).eval(), p.tokenizer, card, {}, m)
        assert out[m].image_size == size
    return out, f"random-init presets at {size} px (shipped configs, image_size={size})"


def child_model_work(size: int, uploads: int) -> dict:
    import torch

    torch.set_num_threads(1)  # the serving policy (model/serving.py DEFAULT_POLICY): one torch thread
    from model.data.imaging import load_study
    from model.explain.divergence import token_divergence
    from model.explain.gradcam import explain
    from model.guard import Guard

    preds, origin = _predictors(size)
    guard = Guard.load()
    steps: dict[str, list[float]] = {}

    def timed(name, fn, *a, **k):
        c = cpu_s()
        r = fn(*a, **k)
        steps.setdefault(name, []).append(cpu_s() - c)
        return r

    for i in range(uploads + 1):  # the first is a warm-up (one-off kernel set-up), not counted
        name, data, _ = _png(2000 + i)
        study = timed("load", load_study, data, name)
        if guard is not None:
            study = timed("guard", guard.check, study)
        p = {m: timed(f"predict_{m}", preds[m].predict, study) for m in ("teacher", "student")}
        target = "finding:" + max(p["teacher"].findings, key=p["teacher"].findings.get)
        for m in ("teacher", "student"):
            timed(f"gradcam_{m}", explain, preds[m], study, target, tokens=p[m].tokens)
        for m in ("teacher", "student"):
            timed("divergence", token_divergence, preds["teacher"], preds["student"], study, p[m].tokens)
        if i == 0:
            steps = {}
    med = {k: round(statistics.median(v) if k != "divergence" else 2 * statistics.median(v), 3)
           for k, v in steps.items()}  # fmt: skip
    med["total"] = round(sum(med.values()), 3)
    return {"image_size": size, "weights": origin, "uploads": uploads, "median_cpu_s": med,
            "divergence_note": "both reports (two token_divergence calls)"}  # fmt: skip


# ------------------------------------------------------------------------------------------------


def _merge(paths: list[Path]) -> dict:
    out: dict = {"files": []}
    for p in paths:
        d = json.loads(Path(p).read_text())
        out["files"].append({"file": Path(p).name, "commit": d.get("commit"), "command": d.get("command"),
                             "load_avg_start": d.get("load_avg_start"), "load_avg_end": d.get("load_avg_end")})  # fmt: skip
        for k in ("first_paint", "cold", "upload"):
            if k in d:
                out[k] = d[k]
        out.setdefault("model_work", []).extend(d.get("model_work", []))
    return out


def _rows(side: dict) -> dict[str, float | None]:
    """Figure name -> value for the markdown table."""
    rows: dict[str, float | None] = {}
    cold = side.get("cold") or {}
    rows["cold start, CPU s (fresh process, first page fully rendered)"] = cold.get("rendered_cpu_s_median")
    rows["cold start, wall s (same run; see load average)"] = cold.get("rendered_wall_s_median")
    up = side.get("upload") or {}
    rows["one upload on the page, CPU s (median)"] = up.get("page_cpu_s_median")
    rows["one upload on the page, wall s (median)"] = up.get("page_wall_s_median")
    for w in side.get("model_work", []):
        for k, v in w["median_cpu_s"].items():
            rows[f"model work at {w['image_size']} px: {k}, CPU s"] = v
    fp = side.get("first_paint") or {}
    rows["imports before the Compare header, CPU s"] = fp.get("before_header_cpu_s")
    rows["pytorch-grad-cam import (first Grad-CAM), CPU s"] = fp.get("pytorch_grad_cam_import_cpu_s")
    return rows


def compare_markdown(result: dict) -> str:
    before, after = _rows(result["before"]), _rows(result["after"])
    lines = [
        "# CPU seconds: cold start and one upload, before vs after (issue 13)",
        "",
        "CPU = user + system seconds of the process (all threads), which other jobs on the machine do not",
        "change much; wall seconds depend on them (load averages in load_cpu.json). One torch thread.",
        f"Command: `{result['command']}`",
        "",
        "| figure | before | after |",
        "|---|---:|---:|",
    ]
    for k in dict.fromkeys([*before, *after]):
        b, a = before.get(k), after.get(k)
        if b is None and a is None:
            continue
        lines.append(f"| {k} | {f3(b)} | {f3(a)} |")
    return "\n".join(lines) + "\n"


def run_child(args: list[str], timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    la, w = load_avg(), time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = round(time.perf_counter() - w, 2)
    out["load_avg_before"], out["load_avg_after"] = la, load_avg()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CPU seconds of a cold start and of one upload.")
    ap.add_argument("--repeats", type=int, default=3, help="cold starts (fresh processes)")
    ap.add_argument("--uploads", type=int, default=5, help="uploads per cold process / model-work images")
    ap.add_argument("--sizes", type=int, nargs="*", default=[128], help="image sizes for the model work")
    ap.add_argument("--parts", default="paint,cold,work", help="which of paint, cold, work to run")
    ap.add_argument("--timeout", type=float, default=3600.0, help="s per child process")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "load_cpu_run.json")
    ap.add_argument("--before", type=Path, nargs="*", help="merge: JSON files of the before checkout")
    ap.add_argument("--after", type=Path, nargs="*", help="merge: JSON files of the after checkout")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    command = "benchmarks/bench_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])

    if args.before and args.after:
        merged = {"command": command, "before": _merge(args.before), "after": _merge(args.after)}
        write_result(args.json, merged, compare_markdown)
        return 0

    if args.child:
        kind = args.child[0]
        if kind == "cold":
            out = child_cold(int(args.child[1]), float(args.child[2]))
        elif kind == "paint":
            out = child_first_paint()
        else:
            out = child_model_work(int(args.child[1]), int(args.child[2]))
        print(json.dumps(out))
        return 0

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result: dict = {
        "command": command,
        "commit": commit.stdout.strip(),
        "root": str(ROOT),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "load_avg_start": load_avg(),
    }
    parts = set(args.parts.split(","))
    if "paint" in parts:
        result["first_paint"] = run_child(["paint"], args.timeout)
        print(json.dumps(result["first_paint"]), flush=True)
    if "cold" in parts:
        colds = []
        for i in range(args.repeats):
            colds.append(run_child(["cold", str(args.uploads if i == 0 else 0), "600"], args.timeout))
            print(json.dumps(colds[-1]), flush=True)
        uploads = colds[0]["upload_cpu_s"]
        result["cold"] = {
            "runs": colds,
            "rendered_cpu_s_median": round(statistics.median(c["rendered_cpu_s"] for c in colds), 2),
            "rendered_wall_s_median": round(statistics.median(c["rendered_wall_s"] for c in colds), 2),
            "process_wall_s_median": round(statistics.median(c["process_wall_s"] for c in colds), 2),
        }
        result["upload"] = {
            "uploads": len(uploads),
            "page_cpu_s_median": round(statistics.median(uploads), 3) if uploads else None,
            "page_wall_s_median": round(statistics.median(colds[0]["upload_wall_s"]), 3) if uploads else None,
        }
    if "work" in parts:
        result["model_work"] = []
        for size in args.sizes:
            result["model_work"].append(run_child(["work", str(size), str(args.uploads)], args.timeout))
            print(json.dumps(result["model_work"][-1]), flush=True)
    result["load_avg_end"] = load_avg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
