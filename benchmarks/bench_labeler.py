"""Labeler agreement with the phantom ground truth, over all three report detail levels.

For N random cases per modality (``model.data.phantom.sample_truth``), write the ground-truth report at
every detail level (``model.data.reports``), label it back (``model.data.labeler.label_report``) and
compare with the truth, label by label.

Agreement rule (one decision per evaluated label and report):

- a *present* finding agrees only when the labeler says "positive";
- an *absent* finding agrees when the labeler says "negative" or None (not mentioned): brief reports
  name no negatives, and standard reports only a couple;
- "uncertain" never agrees (our reports never hedge).

Precision and recall per label count "positive" as the call: precision = TP / (TP + FP) over reports
the labeler calls positive, recall = TP / (TP + FN) over reports whose truth is present.

A stricter side figure checks the pertinent negatives: in detailed CXR reports every absent finding must be
labelled "negative" (stated), not merely unmentioned.

Evaluated labels: CXR -> the 7 FINDINGS and "normal" (no finding present); CT -> "nodule" (a tumour of
any class), "tumour_benign", "tumour_malignant" and "normal" (tumour "none"). CXR truths say nothing
about tumour classes and CT truths nothing about the CXR findings, so those are not scored.

    .venv/bin/python benchmarks/bench_labeler.py [--n 1000] [--seed 0]

writes ``benchmarks/results/labeler.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from model.data.labeler import label_report
from model.data.reports import write_reports
from model.types import DETAIL_LEVELS, FINDINGS, CaseTruth

OUT = Path(__file__).parent / "results" / "labeler.json"


def expected(truth: CaseTruth) -> dict[str, bool]:
    """Label -> present? for the labels the truth decides (see the module docstring)."""
    if truth.modality == "CXR":
        present = {f.name for f in truth.findings}
        out = {name: name in present for name in FINDINGS}
        out["normal"] = not present
        return out
    tumour = truth.tumour or "none"
    return {
        "nodule": tumour != "none",
        "tumour_benign": tumour == "benign",
        "tumour_malignant": tumour == "malignant",
        "normal": tumour == "none" and not [f for f in truth.findings if f.name != "tumour"],
    }


def agrees(present: bool, label: str | None) -> bool:
    return label == "positive" if present else label in ("negative", None)


def run(n: int, seed: int) -> dict:
    from model.data.phantom import sample_truth

    rng = np.random.default_rng(seed)
    per_label: dict[str, Counter] = {}
    per_level: dict[str, Counter] = {d: Counter() for d in DETAIL_LEVELS}
    errors: list[dict] = []
    strict = Counter()  # detailed reports: absent findings must be stated ("negative"), not just unmentioned
    t0 = time.perf_counter()
    n_reports = 0
    for modality in ("CXR", "CT"):
        for i in range(n):
            truth = sample_truth(rng, modality, f"{modality.lower()}_{i:05d}")
            want = expected(truth)
            for detail, text in write_reports(truth, rng).items():
                got = label_report(text)
                n_reports += 1
                for name, present in want.items():
                    ok = agrees(present, got[name])
                    c = per_label.setdefault(f"{modality}:{name}", Counter())
                    c["n"] += 1
                    c["agree"] += ok
                    called = got[name] == "positive"
                    c["tp"] += present and called
                    c["fp"] += (not present) and called
                    c["fn"] += present and not called
                    per_level[detail]["n"] += 1
                    per_level[detail]["agree"] += ok
                    if modality == "CXR" and detail == "detailed" and not present and name != "normal":
                        strict["n"] += 1
                        strict["agree"] += got[name] == "negative"
                    if not ok and len(errors) < 20:
                        errors.append({"label": name, "present": present, "got": got[name], "report": text})
    seconds = time.perf_counter() - t0
    total = sum(c["n"] for c in per_label.values())
    agree = sum(c["agree"] for c in per_label.values())
    return {
        "agreement": agree / total,
        "decisions": total,
        "reports": n_reports,
        "cases_per_modality": n,
        "seed": seed,
        "per_label": {k: round(c["agree"] / c["n"], 5) for k, c in sorted(per_label.items())},
        "per_label_precision_recall": {
            k: {
                "precision": round(c["tp"] / max(c["tp"] + c["fp"], 1), 5),
                "recall": round(c["tp"] / max(c["tp"] + c["fn"], 1), 5),
                "positives": c["tp"] + c["fn"],
            }
            for k, c in sorted(per_label.items())
        },
        "min_precision": round(min(c["tp"] / max(c["tp"] + c["fp"], 1) for c in per_label.values()), 5),
        "min_recall": round(min(c["tp"] / max(c["tp"] + c["fn"], 1) for c in per_label.values()), 5),
        "per_detail": {k: round(c["agree"] / c["n"], 5) for k, c in per_level.items()},
        "detailed_absent_stated_negative": round(strict["agree"] / max(strict["n"], 1), 5),
        "reports_labelled_per_s": round(n_reports / seconds, 1),
        "rule": "present -> 'positive'; absent -> 'negative' or None; 'uncertain' never agrees",
        "errors": errors,
        "command": f".venv/bin/python benchmarks/bench_labeler.py --n {n} --seed {seed}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="cases per modality (CXR and CT)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = run(args.n, args.seed)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"labeler agreement {result['agreement']:.4f} over {result['decisions']} decisions "
          f"({result['reports']} reports, {result['reports_labelled_per_s']} reports/s)")  # fmt: skip
    print(
        f"  detailed reports, absent findings labelled 'negative': {result['detailed_absent_stated_negative']:.4f}"
    )
    for k, v in result["per_detail"].items():
        print(f"  {k:9s} {v:.4f}")
    print(
        f"  min precision {result['min_precision']:.4f}, min recall {result['min_recall']:.4f} (label: agreement P R)"
    )
    for k, v in result["per_label"].items():
        pr = result["per_label_precision_recall"][k]
        print(
            f"  {k:24s} {v:.4f}  P {pr['precision']:.4f}  R {pr['recall']:.4f}  ({pr['positives']} present)"
        )
    for e in result["errors"][:5]:
        print("  disagreement:", e)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
