"""Do the report controls change the shipped models' reports? (issue 13, deliverable 5)

    .venv/bin/python benchmarks/bench_decoding.py            # shipped checkpoints, the 9 shipped samples
    .venv/bin/python benchmarks/bench_decoding.py --threads 2

For each model and each control of the sidebar, the share of the shipped samples whose report
changes against a baseline setting (greedy, standard detail, 96 tokens), the mean report length, and
the median decode time (batch 1, CPU). Also how peaked each decoder is on its own greedy reports
(mean token probability, share of tokens above 0.9): the reason more beams rarely change a report.
Writes benchmarks/results/decoding.json + decoding.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.data.imaging import load_study_path  # noqa: E402
from model.inference import Predictor  # noqa: E402
from model.types import ReportStyle  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = ROOT / "assets" / "samples"
MODELS = ("teacher", "student", "student_nokd")

#: control -> (baseline style, changed style): does moving this control change the report?
COMPARISONS: dict[str, tuple[ReportStyle, ReportStyle]] = {
    "detail brief -> detailed": (ReportStyle(detail="brief"), ReportStyle(detail="detailed")),
    "max length 96 -> 24 (detailed)": (
        ReportStyle(detail="detailed"),
        ReportStyle(detail="detailed", max_new_tokens=24),
    ),
    "max sentences none -> 1": (ReportStyle(), ReportStyle(max_sentences=1)),
    "greedy -> beam 3": (ReportStyle(), ReportStyle(decoding="beam", num_beams=3)),
    "beams 2 -> 6": (ReportStyle(decoding="beam", num_beams=2), ReportStyle(decoding="beam", num_beams=6)),
    "beams 3 -> 6": (ReportStyle(decoding="beam", num_beams=3), ReportStyle(decoding="beam", num_beams=6)),
    "length penalty 0 -> 2 (3 beams)": (
        ReportStyle(decoding="beam", num_beams=3, length_penalty=0.0),
        ReportStyle(decoding="beam", num_beams=3, length_penalty=2.0),
    ),
    "length penalty 1 -> 2 (3 beams)": (
        ReportStyle(decoding="beam", num_beams=3, length_penalty=1.0),
        ReportStyle(decoding="beam", num_beams=3, length_penalty=2.0),
    ),
    "greedy -> sample T=0.1": (ReportStyle(), ReportStyle(decoding="sample", temperature=0.1)),
    "greedy -> sample T=1.5": (ReportStyle(), ReportStyle(decoding="sample", temperature=1.5)),
    "sample seed 0 -> 1 (T=1)": (
        ReportStyle(decoding="sample", seed=0),
        ReportStyle(decoding="sample", seed=1),
    ),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "decoding.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    index = json.loads((SAMPLES / "index.json").read_text())
    studies = [(s["id"], load_study_path(SAMPLES / s["image"], modality_hint=s["modality"])) for s in index]
    out: dict = {
        "protocol": {
            "samples": [i for i, _ in studies],
            "baseline": "greedy, standard detail, max_new_tokens=96 unless the comparison says otherwise",
            "changed": "share of samples whose report text differs between the two settings",
            "decode_ms": "median Predictor.predict decode stage over the samples, batch 1",
            "threads": args.threads,
            "machine": platform.processor() or platform.machine(),
        },
        "models": {},
    }
    for m in MODELS:
        p = Predictor.from_dir(m, m)
        cache: dict[ReportStyle, list] = {}

        def run(style: ReportStyle, p=p, cache=cache) -> list:
            if style not in cache:
                cache[style] = [p.predict(s, style=style) for _, s in studies]
            return cache[style]

        greedy = run(ReportStyle())
        probs = np.concatenate([np.asarray(g.token_probs) for g in greedy])
        block: dict = {
            "greedy_token_prob_mean": float(probs.mean()),
            "greedy_tokens_above_0.9": float((probs > 0.9).mean()),
            "controls": {},
        }
        for name, (a, b) in COMPARISONS.items():
            ra, rb = run(a), run(b)
            block["controls"][name] = {
                "changed": float(np.mean([x.report != y.report for x, y in zip(ra, rb, strict=True)])),
                "changed_ids": [i for (i, _), x, y in zip(studies, ra, rb, strict=True) if x.report != y.report],
                "mean_tokens": [float(np.mean([len(x.tokens) for x in r])) for r in (ra, rb)],
                "truncated": [int(sum(x.truncated for x in r)) for r in (ra, rb)],
                "decode_ms": [float(np.median([x.latency_ms["decode"] for x in r])) for r in (ra, rb)],
            }
        out["models"][m] = block
        print(m, json.dumps({k: v["changed"] for k, v in block["controls"].items()}), flush=True)
    student, teacher = out["models"]["student"], out["models"]["teacher"]
    out["ratios"] = {
        "beam3_decode_ms_student_over_teacher": student["controls"]["greedy -> beam 3"]["decode_ms"][1]
        / teacher["controls"]["greedy -> beam 3"]["decode_ms"][1],
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(out))
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    models = list(out["models"])
    lines = [
        "# Do the report controls change the reports? (shipped models, shipped samples)",
        "",
        "Share of the samples whose report changes; mean tokens before -> after in brackets. "
        "`.venv/bin/python benchmarks/bench_decoding.py`",
        "",
        "| Control | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for name in COMPARISONS:
        cells = []
        for m in models:
            c = out["models"][m]["controls"][name]
            cells.append(f"{c['changed']:.0%} ({c['mean_tokens'][0]:.1f} -> {c['mean_tokens'][1]:.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| mean greedy token probability | "
        + " | ".join(f"{out['models'][m]['greedy_token_prob_mean']:.3f}" for m in models)
        + " |"
    )
    lines.append(
        "| greedy tokens with p > 0.9 | "
        + " | ".join(f"{out['models'][m]['greedy_tokens_above_0.9']:.0%}" for m in models)
        + " |"
    )
    lines.append(
        "| median decode ms, greedy / beam 3 | "
        + " | ".join(
            "{:.0f} / {:.0f}".format(*out["models"][m]["controls"]["greedy -> beam 3"]["decode_ms"]) for m in models
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
