"""Why do the shipped models miss effusion, pneumothorax and consolidation? (issue 10, "models that see")

For every chest X-ray finding of the shipped run's phantom test split (re-rendered in memory from its
seed, ``model.evaluate.phantom_cases``) this measures, at the models' actual input size (read from
the checkpoint) and at 224 / 256 px:

- lesion area: pixels of the finding's mask after the one resize rule (``to_model_input``);
- contrast: mean inside the mask minus mean of a ring around it (ring width = side / 32 px), in
  input units ([0, 1] pixels), in the trunk's normalised units (/ ImageNet std) and as a
  contrast-to-noise ratio (/ std of the ring);

and the recall of the shipped teacher / students per finding, by severity (``Finding.severity``;
nodules by ``size_mm``) and by lesion area at the input size, at the thresholds the evaluation uses
(validation max-F1, read from ``assets/eval/phantom_test.json``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_diagnosis.py            # ~2 min, 1 thread
    -> benchmarks/results/diagnosis.json + diagnosis.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_files import write_result  # noqa: E402

from model.data.imaging import to_model_input  # noqa: E402
from model.types import FINDINGS, ReportStyle  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EVAL_JSON = ROOT / "assets" / "eval" / "phantom_test.json"
MODELS = ("teacher", "student", "student_nokd")
EXTRA_SIZES = (224, 256)
AREA_BINS = (0, 16, 64, 256, 1024, 10**9)  # lesion pixels at the model's input size
NODULE_BINS_MM = (0, 10, 20, 30, 1000)
NORM_STD = 0.226  # mean ImageNet std: the trunks' input normalisation of a grey image


def lesion_stats(pixels: np.ndarray, mask: np.ndarray, size: int) -> dict:
    """Area (px) and mask-vs-ring contrast of one lesion at ``size`` x ``size`` model input."""
    img = to_model_input(pixels, size)
    m = to_model_input(mask.astype(np.float32), size) >= 0.5
    area = int(m.sum())
    if area == 0:
        return {"area_px": 0, "delta": None, "delta_norm": None, "cnr": None}
    width = max(2, round(size / 32))
    ring = ndimage.binary_dilation(m, iterations=width) & ~m
    inside, around = img[m], img[ring]
    delta = float(inside.mean() - around.mean()) if around.size else float("nan")
    noise = float(around.std()) if around.size > 1 else float("nan")
    return {
        "area_px": area,
        "delta": delta,
        "delta_norm": delta / NORM_STD,
        "cnr": delta / noise if noise > 0 else None,
    }


def _bin(value: float, edges: tuple, unit: str) -> str:
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if lo <= value < hi:
            return f"{lo}-{hi}{unit}" if hi < edges[-1] else f">={lo}{unit}"
    return f">={edges[-1]}{unit}"


def severity_of(finding) -> str:
    if finding.severity:
        return finding.severity
    if finding.size_mm is not None:
        return "size " + _bin(finding.size_mm, NODULE_BINS_MM, " mm")
    return "unspecified"


def _summary(values: list[float]) -> dict | None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not v.size:
        return None
    q = np.percentile(v, [10, 50, 90])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "p10": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
    }


def _recall(hits: list[bool]) -> dict:
    return {"n": len(hits), "recall": float(np.mean(hits)) if hits else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="CXR cases (default: the whole split, 240)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "diagnosis.json"))
    ap.add_argument(
        "--conditioning",
        choices=("probs", "labels"),
        default="probs",
        help="report decoder memory: the heads' probabilities (as the issue measured) or their calls",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    from model.evaluate.phantom_cases import SHIPPED_RUN, split_cases
    from model.inference import Predictor, shipped_checkpoint

    predictors = {m: Predictor.from_dir(shipped_checkpoint(m), m) for m in MODELS}
    for p in predictors.values():
        p.report_conditioning = args.conditioning
    sizes = {m: p.image_size for m, p in predictors.items()}
    input_size = sizes["teacher"]
    grids = {}
    for m, p in predictors.items():
        with torch.inference_mode():
            f = p.model.forward_features(torch.zeros(1, 1, p.image_size, p.image_size))
        grids[m] = list(f.shape[-2:])
    evaluation = json.loads(EVAL_JSON.read_text())
    thresholds = {m: evaluation["models"][m]["thresholds"]["findings"] for m in MODELS}

    cases = list(split_cases(args.split, "CXR", args.limit))
    from model.evaluate.clinical import default_labeler, to_binary

    label = default_labeler()
    style = ReportStyle(detail="standard", max_new_tokens=96)  # the evaluation's main reports
    probs = {m: [] for m in MODELS}
    said = {m: [] for m in MODELS}  # finding -> the report states it (labeler; uncertain = positive)
    for start in range(0, len(cases), 16):
        chunk = cases[start : start + 16]
        for m, p in predictors.items():
            preds = p.predict_batch([c.study for c in chunk], [c.truth.context for c in chunk], style)
            probs[m] += [pr.findings for pr in preds]
            said[m] += [dict(zip(FINDINGS, to_binary(label(pr.report), "positive", FINDINGS) > 0, strict=True))
                        for pr in preds]  # fmt: skip

    sizes_all = (input_size, *[s for s in EXTRA_SIZES if s != input_size])
    lesions: dict[str, list[dict]] = {n: [] for n in FINDINGS}
    negatives = {n: 0 for n in FINDINGS}
    false_pos = {m: {n: 0 for n in FINDINGS} for m in MODELS}
    for i, c in enumerate(cases):
        present = {f.name: f for f in c.truth.findings}
        for name in FINDINGS:
            if name not in present:
                negatives[name] += 1
                for m in MODELS:
                    false_pos[m][name] += probs[m][i][name] >= thresholds[m][name]
                continue
            mask = c.masks.get(name)
            rec = {"id": c.study.source, "severity": severity_of(present[name])}
            rec["stats"] = {
                str(s): lesion_stats(c.study.pixels, mask, s) if mask is not None else None for s in sizes_all
            }
            rec["hit"] = {m: bool(probs[m][i][name] >= thresholds[m][name]) for m in MODELS}
            rec["prob"] = {m: round(float(probs[m][i][name]), 4) for m in MODELS}
            rec["report_hit"] = {m: bool(said[m][i][name]) for m in MODELS}
            lesions[name].append(rec)

    findings = {}
    for name, recs in lesions.items():
        per_size = {}
        for s in sizes_all:
            st = [r["stats"][str(s)] for r in recs if r["stats"][str(s)]]
            per_size[str(s)] = {
                "area_px": _summary([x["area_px"] for x in st]),
                "share_under_16px": float(np.mean([x["area_px"] < 16 for x in st])) if st else None,
                "delta": _summary([x["delta"] for x in st]),
                "delta_norm": _summary([x["delta_norm"] for x in st]),
                "cnr": _summary([x["cnr"] for x in st]),
            }
        by_sev, by_area = {}, {}
        for r in recs:
            by_sev.setdefault(r["severity"], []).append(r)
            st = r["stats"][str(input_size)]
            area_key = _bin(st["area_px"], AREA_BINS, " px") if st else "no mask"
            by_area.setdefault(area_key, []).append(r)
        findings[name] = {
            "n_positive": len(recs),
            "n_negative": negatives[name],
            "lesion": per_size,
            "recall": {m: _recall([r["hit"][m] for r in recs]) for m in MODELS},
            "report_recall": {m: _recall([r["report_hit"][m] for r in recs]) for m in MODELS},
            "false_positive_rate": {
                m: (false_pos[m][name] / negatives[name]) if negatives[name] else None for m in MODELS
            },
            "recall_by_severity": {
                k: {m: _recall([r["hit"][m] for r in v]) for m in MODELS} for k, v in sorted(by_sev.items())
            },
            "recall_by_area": {
                k: {m: _recall([r["hit"][m] for r in v]) for m in MODELS}
                for k, v in sorted(
                    by_area.items(),
                    key=lambda kv: (
                        int(kv[0].split("-")[0].lstrip(">=").split()[0]) if kv[0] != "no mask" else -1
                    ),
                )
            },  # fmt: skip
            "median_prob_positive": {
                m: float(np.median([r["prob"][m] for r in recs])) if recs else None for m in MODELS
            },  # fmt: skip
        }

    result = {
        "command": " ".join(
            ["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_diagnosis.py", *(argv or sys.argv[1:])]
        ),
        "data": {
            "split": args.split,
            "n_cxr": len(cases),
            "run": SHIPPED_RUN,
            "origin": "shipped run's phantom split re-rendered from its seed (model.evaluate.phantom_cases)",
        },
        "input_size_px": sizes,
        "input_size_source": "checkpoint card training.data_config.image_size (Predictor.image_size)",
        "report_max_len_tokens": (predictors["teacher"].card.get("training") or {})
        .get("data_config", {})
        .get("max_len"),
        "feature_grid": grids,
        "thresholds": thresholds,
        "threshold_rule": "validation max-F1 per finding, as used by assets/eval/phantom_test.json",
        "report_recall_rule": "greedy standard report (96 tokens) through model.data.labeler; uncertain = positive",
        "report_conditioning": args.conditioning,
        "contrast_protocol": {
            "delta": "mean(input inside mask) - mean(ring), input in [0, 1] after to_model_input",
            "delta_norm": f"delta / {NORM_STD} (the trunk's ImageNet normalisation of a grey image)",
            "cnr": "delta / std(ring)",
            "ring": "mask dilated by max(2, round(side/32)) px, minus the mask",
            "mask_resize": "to_model_input on the float mask, >= 0.5",
        },
        "findings": findings,
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
    }
    write_result(args.out, result, to_markdown)
    return 0


def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def to_markdown(r: dict) -> str:
    s = r["input_size_px"]["teacher"]
    sizes = [k for k in r["findings"]["pleural_effusion"]["lesion"]]
    lines = [
        "# Diagnosis: lesion size, contrast and recall of the shipped models",
        "",
        f"`{r['command']}` ({r['wall_s']} s, {r['threads']} thread). {r['data']['n_cxr']} CXR phantoms of the "
        f"shipped run's {r['data']['split']} split.",
        "",
        f"Input size (from the checkpoints): {r['input_size_px']}; report cap {r['report_max_len_tokens']} tokens "
        f"(the '104' of the run is this, not pixels). Final feature grid: {r['feature_grid']}.",
        "",
        "## Lesions at the model input (median [p10, p90])",
        "",
        "| finding | n | " + " | ".join(f"area px @{z}" for z in sizes) + f" | <16 px @{s} | delta @{s} | "
        f"delta/std @{s} | CNR @{s} |",
        "|---|---|" + "---|" * (len(sizes) + 4),
    ]
    for name, f in r["findings"].items():
        les = f["lesion"]
        areas = []
        for z in sizes:
            a = les[z]["area_px"]
            areas.append(f"{a['median']:.0f} [{a['p10']:.0f}, {a['p90']:.0f}]" if a else "-")
        d, dn, c = les[str(s)]["delta"], les[str(s)]["delta_norm"], les[str(s)]["cnr"]
        lines.append(
            f"| {name} | {f['n_positive']} | "
            + " | ".join(areas)
            + f" | {_f(les[str(s)]['share_under_16px'])} | "
            f"{_f(d and d['median'], '{:+.3f}')} | {_f(dn and dn['median'], '{:+.2f}')} | "
            f"{_f(c and c['median'], '{:+.2f}')} |"
        )
    models = list(r["thresholds"])
    lines += [
        "",
        "## Recall: head at the evaluation thresholds, report through the labeler",
        "",
        "| finding | bin | n | " + " | ".join(models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    for name, f in r["findings"].items():
        rows = [("all (head)", f["recall"]), ("all (report)", f["report_recall"])] + [
            (f"severity {k}", v) for k, v in f["recall_by_severity"].items()
        ]
        rows += [(f"area {k}", v) for k, v in f["recall_by_area"].items()]
        for label, v in rows:
            n = next(iter(v.values()))["n"]
            lines.append(
                f"| {name} | {label} | {n} | " + " | ".join(_f(v[m]["recall"]) for m in models) + " |"
            )
    lines += ["", "False-positive rate on negatives: " + "; ".join(
        f"{name} " + "/".join(_f(f["false_positive_rate"][m]) for m in models) for name, f in r["findings"].items()
    ) + f" ({'/'.join(models)}).", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
