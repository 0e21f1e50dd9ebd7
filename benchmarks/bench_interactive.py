"""Interactive regeneration latency (issue 14, Deliver 6): one model's report rewritten from edited labels.

What a click on Compare costs: ``model.interactive.regenerate_report`` on a shipped model, one thread,
for a toggled finding (CXR) and a changed tumour class (CT), and "more detail" on one finding
(``finding_detail``: a detailed decode). Each measured two ways: *full* (encoder + heads + decode, what
the page runs: its cache is per labels) and *decode only* (the encoder reused, ``encode_study``).
Targets: <= 1 s student, <= 3 s teacher (full). The machine's load average is recorded: this CPU is
shared, and a busy one slows every figure.

  OMP_NUM_THREADS=1 python benchmarks/bench_interactive.py     # writes benchmarks/results/interactive.{json,md}
  python benchmarks/bench_interactive.py --repeats 10 --models student
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from result_files import write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
TARGET_S = {"student": 1.0, "teacher": 3.0}


def _timed(fn, repeats: int) -> dict:
    """Median / p90 / min / max seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "median_s": round(statistics.median(times), 4),
        "p90_s": round(times[min(len(times) - 1, int(0.9 * len(times)))], 4),
        "min_s": round(times[0], 4),
        "max_s": round(times[-1], 4),
        "n": repeats,
    }


def _studies():
    from model.data.phantom import make_case
    from model.types import Study

    return {
        m: Study(pixels=make_case(7, m, size=256).image.astype(np.float32), modality=m, source="bench")
        for m in ("CXR", "CT")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=12, help="timed calls per case (median of these; >= 10)")
    ap.add_argument("--models", default="teacher,student")
    ap.add_argument("--out", default=str(OUT / "interactive.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    from model.inference import Predictor
    from model.interactive import ReportLabels, encode_study, finding_detail, regenerate_report
    from model.types import ReportStyle

    style = ReportStyle()  # the page's default report style
    studies = _studies()
    load_before = os.getloadavg()
    models = {}
    for m in args.models.split(","):
        p = Predictor.from_dir(m)
        cases = {}
        for modality, study in studies.items():
            base = ReportLabels.from_prediction(p.predict(study, style=style), p.finding_thresholds)
            if modality == "CXR":  # a toggled finding: the effusion switched
                edited = base.with_finding("pleural_effusion", "pleural_effusion" not in base.present)
            else:  # the tumour class changed to the next one
                nxt = ("none", "benign", "malignant")
                edited = base.with_tumour(nxt[(nxt.index(base.tumour) + 1) % 3])
            enc = encode_study(p, study)
            cases[f"{modality} edit, full"] = _timed(
                partial(regenerate_report, p, study, edited, style), args.repeats
            )
            cases[f"{modality} edit, decode only"] = _timed(
                partial(regenerate_report, p, study, edited, style, encoded=enc), args.repeats
            )
            target = "tumour" if modality == "CT" else "pleural_effusion"
            detail_labels = (
                edited.with_tumour("malignant")
                if modality == "CT"
                else edited.with_finding("pleural_effusion", True)
            )
            cases[f"{modality} more detail, full"] = _timed(
                partial(finding_detail, p, study, detail_labels, target), args.repeats
            )
        worst = max(v["median_s"] for k, v in cases.items() if k.endswith("edit, full"))
        target_s = TARGET_S.get(m)
        models[m] = {
            "cases": cases,
            "worst_edit_median_s": worst,
            "target_s": target_s,
            "ratio_to_target": round(worst / target_s, 3) if target_s else None,
            "met": bool(target_s and worst <= target_s),
        }
    if "teacher" in models and "student" in models:
        ratio = models["teacher"]["worst_edit_median_s"] / models["student"]["worst_edit_median_s"]
    else:
        ratio = None
    result = {
        "name": "interactive",
        "what": "seconds per regenerated report of one model (model.interactive), one thread, shipped weights",
        "style": {"detail": style.detail, "max_new_tokens": style.max_new_tokens, "decoding": style.decoding},
        "models": models,
        "teacher_over_student": round(ratio, 2) if ratio else None,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_interactive.py",
    }
    write_result(args.out, result, to_markdown)


def to_markdown(r: dict) -> str:
    lines = [
        "# Interactive regeneration latency (one model's report)",
        "",
        f"Machine: {r['machine']['cpus']} CPUs, 1 thread; load average before {r['machine']['load_average_before']}"
        f", after {r['machine']['load_average_after']}. Median of {next(iter(next(iter(r['models'].values()))['cases'].values()))['n']} calls.",
        "",
        "| model | case | median s | p90 s | min s |",
        "|---|---|---|---|---|",
    ]
    for m, block in r["models"].items():
        for case, t in block["cases"].items():
            lines.append(f"| {m} | {case} | {t['median_s']:.3f} | {t['p90_s']:.3f} | {t['min_s']:.3f} |")
    lines.append("")
    for m, block in r["models"].items():
        verdict = "met" if block["met"] else "missed"
        lines.append(
            f"- {m}: worst edit {block['worst_edit_median_s']:.3f} s against a target of {block['target_s']} s "
            f"({block['ratio_to_target']:.2f} of the target): {verdict}."
        )
    if r.get("teacher_over_student"):
        lines.append(f"- teacher / student: {r['teacher_over_student']}x.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
