"""Honest figures on real data and on location: what the shipped models get wrong, measured.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_real.py            # shipped checkpoints
    .venv/bin/python benchmarks/bench_real.py --phantoms 100 --swap-limit 50   # quicker

Writes benchmarks/results/real.json + real.md:

1. **Intensity swap** (``model.evaluate.counterfactual``) on ../shared/data/chest_ct (tumour head)
   and nih1000 (finding head): held-out images (valid/test) and all images (training ones
   included: the question is what the head reacts to, not generalisation).
2. **Location agreement** (``model.evaluate.location``) on fresh phantoms (seeds never used by
   ``generate-data``): side / zone stated in each model's standard report vs the truth, plus the
   reference reports themselves (the parser's ceiling, expected 1.0).
3. **Real-set reports**: how often a real abnormal chest X-ray is reported as normal, and which
   locations the reports name on real CT (one lobe for every slice = location not learnt).

Skips a real set cleanly when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.evaluate.run import DEFAULT_REAL_DIR, load_predictors, load_sample_study  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PHANTOM_SEED0 = 900_000_000  # far from generate-data's seeds: cases no model trained on


def _predict(predictors, studies, contexts, style, batch_size=16) -> dict[str, list]:
    out = {n: [] for n in predictors}
    for name, p in predictors.items():
        for i in range(0, len(studies), batch_size):
            out[name] += p.predict_batch(studies[i : i + batch_size], contexts[i : i + batch_size], style)
    return out


def swap_figures(predictors, real_dir: Path, limit: int, seed: int) -> dict:
    from model.data.sources import build_sources
    from model.evaluate.counterfactual import intensity_swap

    out = {}
    for source in build_sources(None, real_dir):
        held_out = source.samples("val") + source.samples("test")
        out[source.name] = {
            "held_out": intensity_swap(predictors, held_out, load_sample_study, limit=limit, seed=seed),
            "all": intensity_swap(
                predictors, source.all_samples(), load_sample_study, limit=limit, seed=seed
            ),
        }
    return out


def location_figures(predictors, n: int, size: int) -> dict:
    from model.data.phantom import make_case
    from model.data.reports import write_report
    from model.evaluate.location import location_agreement
    from model.types import ReportStyle, Study

    truths, studies, contexts, refs = [], [], [], []
    for i in range(n):
        modality = "CXR" if i % 2 == 0 else "CT"
        case = make_case(PHANTOM_SEED0 + i, modality, size=size)
        pixels = np.round(case.image * 255.0) / 255.0  # as the 8-bit PNGs of generate-data
        truths.append(case.truth)
        studies.append(Study(pixels=pixels.astype(np.float32), modality=modality, source=case.truth.case_id))
        contexts.append(case.truth.context)
        refs.append(write_report(case.truth, "standard", np.random.default_rng(i)))
    preds = _predict(predictors, studies, contexts, ReportStyle(detail="standard", max_new_tokens=96))
    out = {"reference_reports": location_agreement(truths, refs)}
    for name, ps in preds.items():
        out[name] = location_agreement(truths, [p.report for p in ps])
        ct = [p.report for p, t in zip(ps, truths, strict=True) if t.modality == "CT"]
        out[name]["tumour"]["stated_locations"] = _stated_counts(ct, "CT")
    return out


def _stated_counts(reports: list[str], modality: str) -> dict[str, int]:
    from model.evaluate.location import stated_locations

    c = Counter()
    for r in reports:
        for s in stated_locations(r, modality):
            c[f"{s.side or '?'} {s.zone or '?'}"] += 1
    return dict(c.most_common())


def real_report_figures(predictors, real_dir: Path, limit: int) -> dict:
    from model.data.labeler import label_report
    from model.data.sources import build_sources
    from model.evaluate.counterfactual import is_abnormal_sample
    from model.types import ReportStyle

    out = {}
    for source in build_sources(None, real_dir):
        samples = (source.samples("val") + source.samples("test"))[:limit]
        studies = [load_sample_study(s) for s in samples]
        preds = _predict(predictors, studies, [s.context for s in samples], ReportStyle(detail="standard"))
        block = {}
        for name, ps in preds.items():
            abnormal = [p for p, s in zip(ps, samples, strict=True) if is_abnormal_sample(s)]
            called_normal = [label_report(p.report).get("normal") == "positive" for p in abnormal]
            entry = {
                "n_abnormal": len(abnormal),
                "abnormal_reported_normal": float(np.mean(called_normal)) if abnormal else None,
                "top_impressions": dict(Counter(p.report.split(". ")[-1].strip() for p in ps).most_common(3)),
            }
            if samples and samples[0].modality == "CT":
                counts = _stated_counts([p.report for p in ps], "CT")
                total = sum(counts.values())
                entry["stated_locations"] = counts
                entry["top_location_share"] = max(counts.values()) / total if total else None
            block[name] = entry
        out[source.name] = block
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def markdown(res: dict) -> str:
    lines = ["# Real data and location: honest figures", "", f"Command: `{res['command']}`", ""]
    for set_name, blocks in res.get("intensity_swap", {}).items():
        for part, r in blocks.items():
            if "skipped" in r:
                continue
            lines += [f"## Intensity swap: {set_name} ({part}; {r['n_normal']} normal, {r['n_abnormal']} abnormal, "
                      f"{r['head']} head)", "",
                      "| model | normal->abnormal hist: called abnormal (of those not before) | flip rate | "
                      "abnormal->normal hist: called normal | flip rate |", "|---|---|---|---|---|"]  # fmt: skip
            for m, b in r["models"].items():
                a, z = b["normal_to_abnormal"], b["abnormal_to_normal"]
                lines.append(f"| {m} | {_fmt(a['to_other_class'])} (n={a['n_not_other_before']}) | "
                             f"{_fmt(a['flip_rate'])} | {_fmt(z['to_other_class'])} | {_fmt(z['flip_rate'])} |")  # fmt: skip
            lines.append("")
    loc = res.get("location")
    if loc:
        lines += [f"## Location agreement on {res['phantoms']} fresh phantoms (standard reports)", "",
                  "| reports | findings side | findings zone | findings invented | tumour side | tumour lobe | "
                  "tumour invented | side baseline (tumour) | zone baseline (tumour) |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for m, b in loc.items():
            f, t = b["findings"], b["tumour"]
            lines.append(
                f"| {m} | {_fmt(f['side_agreement'])} ({f['side_stated']}/{f['n_truth']} stated) | "
                f"{_fmt(f['zone_agreement'])} | {_fmt(f['invented_rate'])} | {_fmt(t['side_agreement'])} "
                f"({t['side_stated']}/{t['n_truth']}) | {_fmt(t['zone_agreement'])} | {_fmt(t['invented_rate'])} | "
                f"{_fmt(t['side_majority_baseline'])} | {_fmt(t['zone_majority_baseline'])} |"
            )
        lines.append("")
    for set_name, block in res.get("real_reports", {}).items():
        lines += [f"## Reports on real {set_name} (held-out)", ""]
        for m, e in block.items():
            lines.append(f"- {m}: abnormal reported normal {_fmt(e['abnormal_reported_normal'])} "
                         f"(n={e['n_abnormal']}); top location share {_fmt(e.get('top_location_share'))}; "
                         f"locations {e.get('stated_locations', {})}")  # fmt: skip
        lines.append("")
    lines.append(f"Wall time {res['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", metavar="NAME=DIR", help="default: shipped checkpoints")
    p.add_argument("--real-dir", default=str(DEFAULT_REAL_DIR))
    p.add_argument("--phantoms", type=int, default=200, help="fresh phantom cases (half CXR, half CT)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--swap-limit", type=int, default=150, help="cases per class in the intensity swap")
    p.add_argument("--report-limit", type=int, default=200, help="held-out real cases for report figures")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="real", help="results name: benchmarks/results/OUT.json + OUT.md")
    p.add_argument(
        "--no-ground-locations",
        action="store_true",
        help="serve the decoder's own side / zone words (Predictor.ground_locations off)",
    )
    args = p.parse_args(argv)

    from model.commands.evaluate import parse_checkpoints

    torch.set_num_threads(args.threads)
    checkpoints = parse_checkpoints(args.checkpoints)
    if not checkpoints:
        print("no checkpoints: pass --checkpoints NAME=DIR ...", file=sys.stderr)
        return 2
    predictors = load_predictors(checkpoints)
    for predictor in predictors.values():
        predictor.ground_locations = not args.no_ground_locations
    t0 = time.perf_counter()
    cmd = "python benchmarks/bench_real.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res: dict = {"command": cmd.strip(), "checkpoints": {k: str(v) for k, v in checkpoints.items()},
                 "phantoms": args.phantoms, "phantom_seed0": PHANTOM_SEED0,
                 "locations_grounded": {k: p.grounds_locations() for k, p in predictors.items()}}  # fmt: skip
    real = Path(args.real_dir)
    if real.is_dir():
        res["intensity_swap"] = swap_figures(predictors, real, args.swap_limit, args.seed)
        print(f"intensity swap done ({time.perf_counter() - t0:.0f} s)", flush=True)
        res["real_reports"] = real_report_figures(predictors, real, args.report_limit)
        print(f"real-set reports done ({time.perf_counter() - t0:.0f} s)", flush=True)
    else:
        res["skipped_real"] = f"{real} not found"
    if args.phantoms:
        res["location"] = location_figures(predictors, args.phantoms, args.size)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    from model.evaluate.summary import to_jsonable

    (RESULTS / f"{args.out}.json").write_text(json.dumps(to_jsonable(res), indent=1, allow_nan=False) + "\n")
    md = markdown(res)
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
