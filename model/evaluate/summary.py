"""Writing an evaluation result: JSON-safe values, retention ratios and the markdown summary."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

SCHEMA_VERSION = 1

#: metric paths (prefixes, "group.metric") where a smaller number is better
LOWER_IS_BETTER: tuple[str, ...] = (
    "calibration.",
    "efficiency.",
    "speed.",
)

class Headline(NamedTuple):
    """One headline metric: the markdown summary and the dashboard's scorecard both list these."""

    key: str  # "group.metric" in a model's ``metrics``
    label: str  # the row's name
    higher: bool  # higher is better
    fmt: str  # markdown format: a format string, or "M" / "G" for millions / billions


HEADLINE: tuple[Headline, ...] = (
    Headline("findings.macro_auroc", "Finding macro-AUROC", True, "{:.3f}"),
    Headline("findings.macro_f1", "Finding macro-F1", True, "{:.3f}"),
    Headline("tumour.accuracy", "Tumour accuracy", True, "{:.3f}"),
    Headline("subtype.accuracy", "Tumour subtype accuracy", True, "{:.3f}"),  # real CT sets with subtypes
    Headline("treatment.macro_f1", "Treatment macro-F1", True, "{:.3f}"),
    Headline("report.bleu_4", "BLEU-4", True, "{:.3f}"),
    Headline("report.rouge_l", "ROUGE-L", True, "{:.3f}"),
    Headline("report.cider_d", "CIDEr-D", True, "{:.3f}"),
    Headline("report.meteor", "METEOR", True, "{:.3f}"),
    Headline("report.semantic", "Semantic similarity", True, "{:.3f}"),
    Headline("clinical.micro_f1", "Clinical-efficacy F1 (micro)", True, "{:.3f}"),
    Headline("clinical.example_f1", "Clinical-efficacy F1 (example)", True, "{:.3f}"),
    Headline("calibration.findings_ece", "Findings ECE", False, "{:.3f}"),
    Headline("localization.pointing_game", "Pointing game", True, "{:.3f}"),
    Headline("localization.iou", "Heat-map IoU", True, "{:.3f}"),
    Headline("efficiency.parameters", "Parameters", False, "M"),
    Headline("efficiency.checkpoint_mb", "Checkpoint (MB)", False, "{:.1f}"),
    Headline("efficiency.flops_encode_heads", "GFLOPs encode+heads", False, "G"),
    Headline("efficiency.latency_median_ms", "Median latency (ms)", False, "{:.1f}"),
    Headline("efficiency.peak_rss_mb", "Peak RSS (MB)", False, "{:.0f}"),
    Headline("efficiency.model_rss_mb", "Model RSS (MB)", False, "{:.0f}"),
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
    for h in HEADLINE:
        group, metric = h.key.split(".")
        vals = [(models[n].get("metrics", {}).get(group) or {}).get(metric) for n in order]
        if all(v is None for v in vals):
            continue
        row = [h.label + (" (M)" if h.fmt == "M" else ""), *[_fmt(v, h.fmt) for v in vals]]
        for o in others:
            r = ((ratios or {}).get("ratios", {}).get(o) or {}).get(h.key)
            row.append(_fmt(r, "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def grade_table(models: Mapping[str, Mapping], order: list[str]) -> list[str]:
    """Markdown lines: finding recall per severity and subtle / not subtle ("recall (n)"); [] without."""
    from model.evaluate.scoring import GRADES

    rows = []
    for m in order:
        for finding, per in ((models[m].get("per_finding") or {}).get("findings_by_grade") or {}).items():
            cells = [f"{per[g]['recall']:.2f} ({per[g]['n']})" if g in per else "-" for g in GRADES]
            rows.append(f"| {m} | {finding} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = "| model | finding | " + " | ".join(g.replace("_", " ") for g in GRADES) + " |"
    return ["## Finding recall by severity (validation thresholds)", "", head, "|---|---|" + "---|" * len(GRADES),
            *rows, ""]  # fmt: skip


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
    out += grade_table(result["models"], order)
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
