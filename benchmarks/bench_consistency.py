"""Report / head consistency of the shipped models, before and after label conditioning (issue 10).

Three conditions: "probs", "labels" (the raw decoder) and "followed" (the served rule: labels, then the
report made to follow the heads sentence by sentence, ``model/follow_labels.py``).

On the shipped run's phantom test split (re-rendered from its seed, ``model.evaluate.phantom_cases``)
every shipped model writes a report at every detail level and decoding mode, twice: with the decoder
memory embedding the heads' raw probabilities ("probs", how the shipped models were served) and their
thresholded calls ("labels", ``Predictor.report_conditioning``). ``model.evaluate.consistency`` then
counts reports that deny what their own head calls present, or state what it calls absent. Heads are
read at the thresholds the evaluation uses (validation max-F1, ``assets/eval/phantom_test.json``), the
same thresholds the labels are conditioned on. Report recall / precision against the phantom truth
(CXR findings) is measured beside it, so a gain in consistency cannot hide a loss in what the reports
get right.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_consistency.py        # ~8 min, 1 thread
    -> benchmarks/results/consistency.json + consistency.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_files import f3 as _f  # noqa: E402
from result_files import write_result  # noqa: E402

from model.evaluate import consistency  # noqa: E402
from model.types import DETAIL_LEVELS, FINDINGS, ReportStyle  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EVAL_JSON = ROOT / "assets" / "eval" / "phantom_test.json"
MODELS = ("teacher", "student", "student_nokd")
#: decoder memory from the heads' probabilities, from their thresholded calls (the raw decoder), and the
#: served rule: calls + the report made to follow them (model/follow_labels.py)
CONDITIONS = ("probs", "labels", "followed")
DECODINGS = {
    "greedy": {},
    "beam": {"num_beams": 3},
    "sample": {"temperature": 1.0, "seed": 0},
}


def truth_recall(preds, cases, labeler) -> dict:
    """Micro recall / precision of the reports' CXR findings against the phantom truth."""
    tp = fp = fn = 0
    for p, c in zip(preds, cases, strict=True):
        if c.study.modality != "CXR":
            continue
        truth = {f.name for f in c.truth.findings}
        said = consistency.report_calls("CXR", labeler(p.report))
        stated = {n for n in FINDINGS if said[n] == "present"}
        tp += len(truth & stated)
        fp += len(stated - truth)
        fn += len(truth - stated)
    return {
        "recall": tp / (tp + fn) if tp + fn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="cases per modality (default: whole split)")
    ap.add_argument("--beam-limit", type=int, default=48, help="cases per modality for beam search")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--out", default=str(RESULTS / "consistency.json"))
    ap.add_argument(
        "--thresholds",
        choices=("evaluation", "served"),
        default="evaluation",
        help="heads read at the evaluation's validation thresholds or the Predictor's own (card, else 0.5)",
    )
    ap.add_argument("--decodings", nargs="*", default=list(DECODINGS))
    ap.add_argument("--details", nargs="*", default=list(DETAIL_LEVELS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    from model.evaluate.clinical import default_labeler
    from model.evaluate.phantom_cases import SHIPPED_RUN, split_cases
    from model.inference import Predictor, shipped_checkpoint

    label = default_labeler()
    cases = [c for m in ("CXR", "CT") for c in split_cases("test", m, args.limit)]
    beam_cases = [
        c for m in ("CXR", "CT") for c in [x for x in cases if x.study.modality == m][: args.beam_limit]
    ]
    evaluation = json.loads(EVAL_JSON.read_text())
    results: dict = {}
    for name in args.models:
        p = Predictor.from_dir(shipped_checkpoint(name), name)
        if args.thresholds == "evaluation":
            thresholds = evaluation["models"][name]["thresholds"]["findings"]
            p.finding_thresholds = {n: float(thresholds[n]) for n in FINDINGS}
        results[name] = {"thresholds": p.finding_thresholds}
        for conditioning in CONDITIONS:
            p.report_conditioning = "labels" if conditioning == "followed" else conditioning
            p.follow_heads = conditioning == "followed"
            for decoding in args.decodings:
                extra = DECODINGS[decoding]
                subset = beam_cases if decoding == "beam" else cases
                for detail in args.details:
                    style = ReportStyle(detail=detail, max_new_tokens=96, decoding=decoding, **extra)
                    preds = []
                    for start in range(0, len(subset), 16):
                        chunk = subset[start : start + 16]
                        preds += p.predict_batch(
                            [c.study for c in chunk], [c.truth.context for c in chunk], style
                        )
                    scores = consistency.measure(preds, p.finding_thresholds, label)
                    scores.pop("cases")
                    scores["truth"] = truth_recall(preds, subset, label)
                    scores["distinct_reports"] = len({q.report for q in preds})
                    key = f"{conditioning}|{decoding}|{detail}"
                    results[name][key] = scores
                    print(name, key, {k: scores[k] for k in ("contradiction_rate", "denial_rate", "assertion_rate")},
                          scores["truth"], f"{time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip

    summary = {}
    for name, r in results.items():
        summary[name] = {}
        for conditioning in CONDITIONS:
            keys = [k for k in r if k.startswith(conditioning + "|")]
            summary[name][conditioning] = {
                "worst_contradiction_rate": max(r[k]["contradiction_rate"] for k in keys),
                "mean_contradiction_rate": float(np.mean([r[k]["contradiction_rate"] for k in keys])),
                "greedy_standard": {
                    k: r.get(f"{conditioning}|greedy|standard", {}).get(k)
                    for k in ("contradiction_rate", "denial_rate", "assertion_rate", "omission_rate")
                },
                "greedy_standard_truth": r.get(f"{conditioning}|greedy|standard", {}).get("truth"),
            }
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_consistency.py "
        + " ".join(argv or sys.argv[1:]),
        "data": {"split": "test", "run": SHIPPED_RUN, "n_cases": len(cases), "n_beam_cases": len(beam_cases)},
        "protocol": consistency.consistency_protocol(),
        "thresholds": "validation max-F1 per finding from assets/eval/phantom_test.json (heads and labels)"
        if args.thresholds == "evaluation"
        else "the Predictor's own: card thresholds.findings, else 0.5 (as served)",
        "decodings": DECODINGS,
        "results": results,
        "summary": summary,
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
    }
    write_result(args.out, result, to_markdown)
    return 0


def to_markdown(r: dict) -> str:
    d = r["data"]
    lines = [
        "# Report / head consistency on the phantom test split",
        "",
        f"`{r['command']}` ({r['wall_s']} s). {d['n_cases']} test cases (beam search: {d['n_beam_cases']}). "
        "Contradiction = the report denies a finding its head calls present, or states one it calls absent.",
        "",
        "| model | conditioning | decoding | detail | contradiction rate | denial | assertion | omission | "
        "truth recall | truth precision | distinct reports |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in r["results"].items():
        for key, s in res.items():
            if key == "thresholds":
                continue
            cond, dec, det = key.split("|")
            lines.append(
                f"| {name} | {cond} | {dec} | {det} | {_f(s['contradiction_rate'])} | {_f(s['denial_rate'])} | "
                f"{_f(s['assertion_rate'])} | {_f(s['omission_rate'])} | {_f(s['truth']['recall'])} | "
                f"{_f(s['truth']['precision'])} | {s['distinct_reports']} |"
            )
    lines += ["", "Worst contradiction rate over every detail level and decoding mode:", ""]
    for name, s in r["summary"].items():
        a, b = s["probs"]["worst_contradiction_rate"], s["labels"]["worst_contradiction_rate"]
        c = s.get("followed", {}).get("worst_contradiction_rate")
        lines.append(
            f"- {name}: {_f(a)} with probabilities -> {_f(b)} with labels (raw decoder) -> {_f(c)} served "
            "(report made to follow the heads)"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
