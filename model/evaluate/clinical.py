"""Clinical efficacy (CE): does the generated report state the same findings as the reference?

Both reports go through the same rule-based labeler (``model.data.labeler.label_report``); the
labels of the generated report are scored against those of the reference report. Published CE
numbers are not comparable without the protocol, so :func:`ce_protocol` is written into every
result:

- labels: the CXR findings plus ``tumour_benign`` / ``tumour_malignant`` ("normal" is derived from
  the others and left out);
- "not mentioned" (None) -> negative;
- "uncertain" -> positive by default ("U-ones", Irvin et al., CheXpert 2019), or "negative"
  ("U-zeros"), or "ignore" (a case/label pair where either side is uncertain is left out of the
  counts);
- averaging:
  * micro: TP/FP/FN pooled over every case and label;
  * macro: unweighted mean of per-label P/R/F1 over labels that occur (support or predicted
    positives > 0; the rest are undefined and left out);
  * example-based: per-case set precision |G∩R|/|G|, recall |G∩R|/|R|, F1 2|G∩R|/(|G|+|R|),
    averaged over cases; a case where both sets are empty scores 1 (both say normal), an empty
    generated set against a non-empty reference scores precision 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from model.types import FINDINGS

CE_LABELS: tuple[str, ...] = (*FINDINGS, "tumour_benign", "tumour_malignant")
UNCERTAIN_POLICIES: tuple[str, ...] = ("positive", "negative", "ignore")

Labels = Mapping[str, str | None]  # label -> "positive" | "negative" | "uncertain" | None


def ce_protocol(uncertain: str = "positive", labels: Sequence[str] = CE_LABELS) -> dict:
    """The clinical-efficacy protocol, as written into every result."""
    return {
        "labeler": "model.data.labeler.label_report",
        "labeler_version": _labeler_version(),
        "labels": list(labels),
        "uncertain": uncertain,
        "uncertain_policies": {
            "positive": "uncertain -> positive (CheXpert U-ones)",
            "negative": "uncertain -> negative (U-zeros)",
            "ignore": "pairs where either side is uncertain are left out",
        },
        "not_mentioned": "negative",
        "averaging": {
            "micro": "TP/FP/FN pooled over cases and labels",
            "macro": "mean of per-label scores over labels with support or predicted positives",
            "example": "per-case set P/R/F1 averaged over cases; both empty = 1",
        },
    }


def _labeler_version() -> str:
    """The labeler's declared version, else the sha256 prefix of its source (changes when rules do)."""
    try:
        from model.data import labeler
    except ImportError:
        return "unavailable"
    declared = getattr(labeler, "LABELER_VERSION", getattr(labeler, "__version__", None))
    if declared:
        return str(declared)
    return "sha256:" + hashlib.sha256(Path(labeler.__file__).read_bytes()).hexdigest()[:12]


def default_labeler() -> Callable[[str], Labels]:
    from model.data.labeler import label_report

    return label_report


def to_binary(labels: Labels, uncertain: str = "positive", names: Sequence[str] = CE_LABELS) -> np.ndarray:
    """Label dict -> float vector over ``names``: 1 positive, 0 negative, NaN ignored."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, not {uncertain!r}")
    u = {"positive": 1.0, "negative": 0.0, "ignore": np.nan}[uncertain]
    table = {"positive": 1.0, "negative": 0.0, None: 0.0, "uncertain": u}
    return np.asarray([table.get(labels.get(n), 0.0) for n in names], dtype=np.float64)


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return p, r, f


def ce_scores(
    generated: Sequence[Labels],
    reference: Sequence[Labels],
    *,
    uncertain: str = "positive",
    names: Sequence[str] = CE_LABELS,
) -> dict:
    """Micro, macro and example-based precision / recall / F1 of generated vs reference labels.

    Returns ``{"micro": {precision, recall, f1}, "macro": {...}, "example": {...},
    "per_label": {label: {precision, recall, f1, support, predicted}}, "per_case_f1": [...],
    "protocol": ce_protocol(...)}``.
    """
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated but {len(reference)} reference label sets")
    g = (
        np.stack([to_binary(x, uncertain, names) for x in generated])
        if generated
        else np.zeros((0, len(names)))
    )
    r = (
        np.stack([to_binary(x, uncertain, names) for x in reference])
        if reference
        else np.zeros((0, len(names)))
    )
    valid = ~(np.isnan(g) | np.isnan(r))  # (N, L)
    gv, rv = np.where(valid, g, 0.0) == 1.0, np.where(valid, r, 0.0) == 1.0
    tp = (gv & rv).sum(0).astype(float)  # (L,)
    fp = (gv & ~rv).sum(0).astype(float)
    fn = (~gv & rv).sum(0).astype(float)

    micro = dict(zip(("precision", "recall", "f1"), _prf(tp.sum(), fp.sum(), fn.sum()), strict=True))
    per_label, macro_rows = {}, []
    for j, name in enumerate(names):
        p, rc, f = _prf(tp[j], fp[j], fn[j])
        support, predicted = int(tp[j] + fn[j]), int(tp[j] + fp[j])
        per_label[name] = {"precision": p, "recall": rc, "f1": f, "support": support, "predicted": predicted}
        if support or predicted:
            macro_rows.append((p, rc, f))
    macro_arr = np.asarray(macro_rows) if macro_rows else np.full((1, 3), np.nan)
    macro = dict(zip(("precision", "recall", "f1"), (float(x) for x in macro_arr.mean(0)), strict=True))

    ex_p, ex_r, ex_f = [], [], []
    for i in range(len(g)):
        inter = float((gv[i] & rv[i]).sum())
        n_g, n_r = float(gv[i].sum()), float(rv[i].sum())
        if n_g == 0 and n_r == 0:
            ex_p.append(1.0), ex_r.append(1.0), ex_f.append(1.0)
            continue
        ex_p.append(inter / n_g if n_g else 0.0)
        ex_r.append(inter / n_r if n_r else 0.0)
        ex_f.append(2 * inter / (n_g + n_r))
    nan = float("nan")
    example = {
        "precision": float(np.mean(ex_p)) if ex_p else nan,
        "recall": float(np.mean(ex_r)) if ex_r else nan,
        "f1": float(np.mean(ex_f)) if ex_f else nan,
    }
    return {
        "micro": {k: float(v) for k, v in micro.items()},
        "macro": macro,
        "example": example,
        "per_label": per_label,
        "per_case_f1": ex_f,
        "protocol": ce_protocol(uncertain, names),
    }


def clinical_efficacy(
    generated_reports: Sequence[str],
    reference_reports: Sequence[str],
    *,
    uncertain: str = "positive",
    labeler: Callable[[str], Labels] | None = None,
) -> dict:
    """Label both report lists with the labeler and score them (see :func:`ce_scores`).

    Also returns the label dicts (``generated_labels``, ``reference_labels``) for per-case records.
    """
    label = labeler or default_labeler()
    gen = [dict(label(t or "")) for t in generated_reports]
    ref = [dict(label(t or "")) for t in reference_reports]
    out = ce_scores(gen, ref, uncertain=uncertain)
    out["generated_labels"], out["reference_labels"] = gen, ref
    return out


def positive_labels(
    labels: Labels, uncertain: str = "positive", names: Sequence[str] = CE_LABELS
) -> list[str]:
    """Names counted positive under the protocol (for error-analysis records)."""
    v = to_binary(labels, uncertain, names)
    return [n for n, x in zip(names, v, strict=True) if x == 1.0]
