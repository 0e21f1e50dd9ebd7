"""Writing an evaluation result: JSON-safe values, retention ratios and the markdown summary."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1

#: metric paths (prefixes, "group.metric") where a smaller number is better
LOWER_IS_BETTER: tuple[str, ...] = (
    "calibration.",
    "efficiency.",
    "speed.",
)

#: the headline rows of the markdown table: (label, group, metric, format)
HEADLINE: tuple[tuple[str, str, str, str], ...] = (
    ("Finding macro-AUROC", "findings", "macro_auroc", "{:.3f}"),
    ("Finding macro-F1", "findings", "macro_f1", "{:.3f}"),
    ("Tumour accuracy", "tumour", "accuracy", "{:.3f}"),
    ("Treatment macro-F1", "treatment", "macro_f1", "{:.3f}"),
    ("BLEU-4", "report", "bleu_4", "{:.3f}"),
    ("ROUGE-L", "report", "rouge_l", "{:.3f}"),
    ("CIDEr-D", "report", "cider_d", "{:.3f}"),
    ("METEOR", "report", "meteor", "{:.3f}"),
    ("Semantic similarity", "report", "semantic", "{:.3f}"),
    ("Clinical-efficacy F1 (micro)", "clinical", "micro_f1", "{:.3f}"),
    ("Clinical-efficacy F1 (example)", "clinical", "example_f1", "{:.3f}"),
    ("Findings ECE", "calibration", "findings_ece", "{:.3f}"),
    ("Pointing game", "localization", "pointing_game", "{:.3f}"),
    ("Heat-map IoU", "localization", "iou", "{:.3f}"),
    ("Parameters (M)", "efficiency", "parameters", "M"),
    ("Checkpoint (MB)", "efficiency", "checkpoint_mb", "{:.1f}"),
    ("GFLOPs encode+heads", "efficiency", "flops_encode_heads", "G"),
    ("Median latency (ms)", "efficiency", "latency_median_ms", "{:.1f}"),
    ("Peak RSS (MB)", "efficiency", "peak_rss_mb", "{:.0f}"),
    ("Model RSS (MB)", "efficiency", "model_rss_mb", "{:.0f}"),
)


def to_jsonable(x):
    """numpy -> Python, NaN / inf -> None, tuples -> lists, sets -> sorted lists, recursively."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, set):
        return sorted(to_jsonable(v) for v in x)
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return round(v, 6) if math.isfinite(v) else None
    return x


def _leaves(d: Mapping, prefix: str = ""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _leaves(v, path + ".")
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            yield path, float(v)


def retention(models: Mapping[str, Mapping], reference: str) -> dict:
    """``{model: {"group.metric": model / reference}}`` for every numeric metric of every other model.

    A ratio is None where the reference value is 0, missing or not finite. Ratios of lower-is-better
    metrics (listed under ``lower_is_better``) above 1 mean worse.
    """
    if reference not in models:
        return {}
    ref = dict(_leaves(models[reference].get("metrics", {})))
    out: dict = {"reference": reference, "lower_is_better": list(LOWER_IS_BETTER), "ratios": {}}
    for name, m in models.items():
        if name == reference:
            continue
        ratios = {}
        for path, v in _leaves(m.get("metrics", {})):
            r = ref.get(path)
            ok = r is not None and math.isfinite(r) and abs(r) > 1e-9 and math.isfinite(v)
            ratios[path] = v / r if ok else None
        out["ratios"][name] = ratios
    return out


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if fmt == "M":
        return f"{value / 1e6:.2f}"
    if fmt == "G":
        return f"{value / 1e9:.3f}"
    return fmt.format(value)


def metrics_table(models: Mapping[str, Mapping], order: list[str], ratios: Mapping | None = None) -> str:
    """Markdown table: one row per headline metric, one column per model (+ ratios to the reference)."""
    others = order[1:] if ratios else []
    head = ["Metric", *order, *[f"{o} / {order[0]}" for o in others]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, group, metric, fmt in HEADLINE:
        vals = [(models[n].get("metrics", {}).get(group) or {}).get(metric) for n in order]
        if all(v is None for v in vals):
            continue
        row = [label, *[_fmt(v, fmt) for v in vals]]
        for o in others:
            r = ((ratios or {}).get("ratios", {}).get(o) or {}).get(f"{group}.{metric}")
            row.append(_fmt(r, "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_summary(result: Mapping) -> str:
    order = result.get("model_order") or list(result["models"])
    data = result.get("data", {})
    out = [
        f"# Evaluation: {result.get('name')}",
        "",
        f"_{result.get('disclaimer', '')}_",
        "",
        f"Created {result.get('created')}; {data.get('n_cases')} {data.get('split')} cases "
        f"({data.get('n_cxr')} CXR, {data.get('n_ct')} CT) from `{data.get('dir')}`; "
        f"thresholds from {data.get('n_val')} validation cases. "
        f"Evaluation took {result.get('timing', {}).get('total_s')} s.",
        "",
        metrics_table(result["models"], order, result.get("retention")),
        "",
    ]
    proto = result.get("protocol", {})
    ce = proto.get("clinical", {})
    out += [
        "## Protocol",
        "",
        f"- Report metrics: {proto.get('report', {}).get('tokenizer')}; METEOR: "
        f"{proto.get('report', {}).get('meteor')}; semantic: {proto.get('report', {}).get('semantic')}.",
        f"- Clinical efficacy: labeler `{ce.get('labeler')}` ({ce.get('labeler_version')}), uncertain -> "
        f"{ce.get('uncertain')}, not mentioned -> {ce.get('not_mentioned')}, headline F1 = {ce.get('headline_f1')}.",
        f"- Thresholds: {proto.get('classification', {}).get('threshold')}.",
        f"- Calibration: {proto.get('calibration', {}).get('ece')}.",
        f"- Localisation: {proto.get('localization', {}).get('pointing_game')}; IoU rule "
        f"{proto.get('localization', {}).get('iou_threshold')}.",
        f"- Latency: {proto.get('efficiency', {}).get('latency')}.",
        "",
    ]
    for name, section in (result.get("real") or {}).items():
        d = section.get("data", {})
        out += [
            f"## Real set: {name}",
            "",
            f"{d.get('n_cases')} cases ({', '.join(d.get('sources', []))}; reports {', '.join(d.get('report_origin', []))}).",
            "",
            metrics_table(
                section["models"], [n for n in order if n in section["models"]], section.get("retention")
            ),
            "",
        ]
    trade = result.get("tradeoff")
    if trade:
        keys = ["clinical_f1", "statement_recall", "bleu_4"]  # statement_recall: results since it exists
        keys = [k for k in keys if all(k in c for per in trade["curves"].values() for c in per.values())]
        names = {"clinical_f1": "clinical F1 micro", "statement_recall": "statement recall", "bleu_4": "BLEU-4"}
        out += [f"## Length / detail trade-off ({' / '.join(names[k] for k in keys)})", ""]
        caps = trade["max_new_tokens"]
        out.append("| model | detail | " + " | ".join(str(c) for c in caps) + " |")
        out.append("|---|---|" + "---|" * len(caps))
        for model, per_detail in trade["curves"].items():
            for detail, c in per_detail.items():
                columns = zip(*(c[k] for k in keys), strict=True)  # one tuple of values per cap
                cells = [" / ".join(_fmt(v, "{:.2f}") for v in vals) for vals in columns]
                out.append(f"| {model} | {detail} | " + " | ".join(cells) + " |")
        out += ["", "Clinical F1 counts positive findings only and reports state them first, so it barely "
                "moves with the cap; statement recall counts negations too (docs/eval_schema.md).", ""]  # fmt: skip
    timing = result.get("timing", {})
    out += ["## Timing", "", *[f"- {k}: {v}" for k, v in timing.items()], ""]
    return "\n".join(out)


def write_outputs(result: Mapping, out_json: str | Path) -> tuple[Path, Path]:
    """Write the JSON and the markdown summary (same stem, ``.md``); returns both paths."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    clean = to_jsonable(result)
    out_json.write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    md = out_json.with_suffix(".md")
    md.write_text(markdown_summary(clean))
    return out_json, md
