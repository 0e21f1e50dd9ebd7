"""Input guard benchmark: modality accuracy, refusal per negative family (incl. the held-out one), per-model
OOD AUROC / flag rates, and the guard's cost beside the student's latency, on the guard's TEST split
(seeds and real files neither training nor calibration saw).

  OMP_NUM_THREADS=1 python benchmarks/bench_guard.py            # writes benchmarks/results/guard.{json,md}
  python benchmarks/bench_guard.py --n 40 --models student       # quicker look
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from result_files import write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per family (real sets: at most their size)")
    ap.add_argument(
        "--models", default="teacher,student,student_nokd", help="models whose OOD probes to score"
    )
    ap.add_argument("--out", default=str(OUT / "guard.json"))
    ap.add_argument(
        "--cache", default="", help="folder keeping the generated test files between runs (optional)"
    )
    ap.add_argument("--prepare", action="store_true", help="only generate the test files into --cache")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from model.data.imaging import ImageLoadError, load_study, to_model_input
    from model.evaluate.classification import auroc
    from model.guard import Guard
    from model.guard.families import (
        HELD_OUT_NEGATIVES,
        NEGATIVE_FAMILIES,
        POSITIVE_FAMILIES,
        WRONG_MODALITY,
        generators,
        shared_files,
    )
    from model.guard.ood import model_features
    from model.inference import Predictor

    counts = {f: args.n for f in generators("test")}
    counts["ct_small"] = min(args.n, 20)
    counts["nih_cxr"] = min(args.n, len(shared_files("nih", "valid")))
    counts["real_ct"] = min(args.n, len(shared_files("ct", "valid")))
    if args.prepare:
        for fam, n in counts.items():
            list(cached_examples(fam, n, args.cache))
        return
    guard = Guard.load()
    if guard is None:
        raise SystemExit("no guard in assets/checkpoints/guard: run meddistill train-guard first")

    rows = []  # one per example: family, label, accepted, detected, served modality, check ms
    studies = []
    loader_refused: dict[str, int] = {}
    for fam, n in counts.items():
        if fam not in generators("test") or n <= 0:
            continue
        for ex in cached_examples(fam, n, args.cache):
            try:
                study = load_study(ex.data, ex.name, modality_hint=ex.hint)
            except ImageLoadError:
                loader_refused[fam] = loader_refused.get(fam, 0) + 1
                continue
            t0 = time.perf_counter()
            checked = guard.check(study, override=ex.hint)
            ms = (time.perf_counter() - t0) * 1e3
            v = checked.verdict
            rows.append(
                {
                    "family": fam,
                    "label": ex.label,
                    "accepted": v.accepted,
                    "check": v.check,
                    "detected": v.detected_modality,
                    "served": checked.modality,
                    "ms": ms,
                }
            )
            checked.pixels = to_model_input(checked.pixels, 128)  # the models' input size; keeps memory small
            studies.append(checked)
    fams = np.asarray([r["family"] for r in rows])
    accepted = np.asarray([r["accepted"] for r in rows])
    detected = np.asarray([r["detected"] for r in rows])
    labels = np.asarray([r["label"] for r in rows])
    served = np.asarray([r["served"] for r in rows])
    pos = np.isin(fams, list(POSITIVE_FAMILIES))

    result: dict = {
        "split": "test",
        "held_out_families": list(HELD_OUT_NEGATIVES),
        "loader_refused": loader_refused,
        "modality_accuracy": {},
        "positives_accepted": {},
        "refused": {},
    }
    for fam in sorted(set(fams)):
        m = fams == fam
        if fam in POSITIVE_FAMILIES:
            result["modality_accuracy"][fam] = {
                "accuracy": float((detected[m] == labels[m]).mean()),
                "n": int(m.sum()),
            }
            result["positives_accepted"][fam] = float(accepted[m].mean())
        else:
            result["refused"][fam] = {"rate": float((~accepted[m]).mean()), "n": int(m.sum())}
    result["modality_accuracy"]["all_positives"] = {
        "accuracy": float((detected[pos] == labels[pos]).mean()),
        "n": int(pos.sum()),
    }
    result["positives_accepted"]["all_positives"] = float(accepted[pos].mean())
    ms = np.asarray([r["ms"] for r in rows])
    result["guard_ms"] = {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)), "n": len(ms)}

    # Per-model OOD probes: score each example under the modality it is served as.
    result["ood"] = {}
    for model_id in [m for m in args.models.split(",") if m]:
        p = Predictor.from_dir(model_id)
        if p.ood_probe is None:
            result["ood"][model_id] = {"note": "no guard probe for these weights"}
            continue
        x = torch.from_numpy(model_features(p, studies))
        scores = np.asarray([p.ood_probe.score(x[i : i + 1], served[i]) for i in range(len(studies))])
        thr = np.asarray([p.ood_probe.threshold(s) for s in served])
        flag = scores > thr
        in_dist = pos & (detected == labels)
        entry = {
            "in_distribution_flagged": float(flag[in_dist].mean()),
            "n_in_distribution": int(in_dist.sum()),
        }
        fam_stats = {}
        for fam in [*NEGATIVE_FAMILIES, WRONG_MODALITY]:
            m = fams == fam
            if not m.any():
                continue
            y = np.r_[np.zeros(in_dist.sum()), np.ones(m.sum())]
            # AUROC of (score - threshold): each example is compared at its own modality's operating point
            s = np.r_[(scores - thr)[in_dist], (scores - thr)[m]]
            fam_stats[fam] = {
                "auroc": float(auroc(y, s)),
                "flagged": float(flag[m].mean()),
                "n": int(m.sum()),
            }
        entry["families"] = fam_stats
        neg = np.isin(fams, [*NEGATIVE_FAMILIES, WRONG_MODALITY])
        entry["junk_flagged"] = float(flag[neg].mean())
        # what a user meets: the study refused by the classifier, or this model's output withheld by its probe
        either = flag | ~accepted
        entry["guard_or_probe"] = {
            "in_distribution_flagged": float(either[in_dist].mean()),
            "junk_flagged": float(either[neg].mean()),
            "per_family": {f: float(either[fams == f].mean()) for f in [*NEGATIVE_FAMILIES, WRONG_MODALITY]},
        }
        entry["thresholds"] = p.ood_probe.thresholds
        result["ood"][model_id] = entry

    # Cost: the guard's check vs the student's whole prediction, in this one run.
    student = Predictor.from_dir("student")
    chest = [s for s, ok in zip(studies, pos & accepted, strict=True) if ok][:30]
    lat, gms = [], []
    for s in chest:
        t0 = time.perf_counter()
        guard.check(s)
        gms.append((time.perf_counter() - t0) * 1e3)
        lat.append(student.predict(s).latency_ms["total"])
    result["cost"] = {
        "guard_ms_median": float(np.median(gms)),
        "student_predict_ms_median": float(np.median(lat)),
        "guard_over_student": float(np.median(gms) / np.median(lat)),
        "n": len(chest),
        "threads": torch.get_num_threads(),
    }
    result["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor(),
    }
    result["command"] = "OMP_NUM_THREADS=1 python benchmarks/bench_guard.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "cache", "prepare")
    )
    write_result(args.out, result, to_markdown, indent=2)


def cached_examples(family: str, n: int, cache: str):
    """The test split's examples of a family, read from / written to ``cache`` when given (same bytes)."""
    from model.guard.families import Example, examples

    if not cache:
        yield from examples(family, "test", n)
        return
    d = Path(cache) / family
    index = d / "index.json"
    if index.is_file() and len(json.loads(index.read_text())) >= n:
        for i, e in enumerate(json.loads(index.read_text())[:n]):
            yield Example((d / f"{i}.bin").read_bytes(), e["name"], family, e["label"], e["hint"])
        return
    d.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, ex in enumerate(examples(family, "test", n)):
        (d / f"{i}.bin").write_bytes(ex.data)
        entries.append({"name": ex.name, "label": ex.label, "hint": ex.hint})
        yield ex
    index.write_text(json.dumps(entries))


def to_markdown(r: dict) -> str:
    lines = ["# Input guard (test split)", "", f"Command: `{r['command']}`", ""]
    lines += ["| positives | modality accuracy | accepted | n |", "|---|---|---|---|"]
    for fam, v in r["modality_accuracy"].items():
        acc = r["positives_accepted"].get(fam, float("nan"))
        lines.append(f"| {fam} | {v['accuracy']:.1%} | {acc:.1%} | {v['n']} |")
    lines += ["", "| negative family | refused by the guard | n |", "|---|---|---|"]
    for fam, v in r["refused"].items():
        held = " (held out)" if fam in r["held_out_families"] else ""
        lines.append(f"| {fam}{held} | {v['rate']:.1%} | {v['n']} |")
    models = [m for m, v in r["ood"].items() if "families" in v]
    if models:
        lines += ["", "| OOD probe | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        lines.append(
            "| in-distribution flagged | "
            + " | ".join(f"{r['ood'][m]['in_distribution_flagged']:.1%}" for m in models)
            + " |"
        )
        lines.append(
            "| all junk flagged | " + " | ".join(f"{r['ood'][m]['junk_flagged']:.1%}" for m in models) + " |"
        )
        gp = [r["ood"][m]["guard_or_probe"] for m in models]
        lines.append(
            "| guard or probe: in-distribution flagged | "
            + " | ".join(f"{g['in_distribution_flagged']:.1%}" for g in gp)
            + " |"
        )
        lines.append(
            "| guard or probe: junk flagged | " + " | ".join(f"{g['junk_flagged']:.1%}" for g in gp) + " |"
        )
        for fam in r["ood"][models[0]]["families"]:
            cells = [
                f"AUROC {r['ood'][m]['families'][fam]['auroc']:.3f}, flagged {r['ood'][m]['families'][fam]['flagged']:.0%}"
                for m in models
            ]
            lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    c = r["cost"]
    lines += [
        "",
        f"Guard cost: median {c['guard_ms_median']:.2f} ms per image vs student prediction "
        f"{c['student_predict_ms_median']:.0f} ms (ratio {c['guard_over_student']:.3f}; {c['threads']} thread, same run).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
