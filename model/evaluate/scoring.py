"""Predictions of one model on one set of cases -> every metric block of the evaluation JSON.

``run.py`` collects :class:`ModelRun` records (what a model said about each case) and calls
:func:`score_model` per model and section; this module never touches a model or a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.evaluate import calibration, classification, clinical, nlg
from model.types import FINDINGS, TREATMENTS, TUMOUR_CLASSES, TUMOUR_SUBTYPES, Prediction


@dataclass
class ModelRun:
    """What one model said about each case of a section, in case order."""

    reports: list[str] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    findings: list[np.ndarray] = field(default_factory=list)  # (7,) each
    tumour: list[np.ndarray] = field(default_factory=list)  # (3,)
    subtype: list[np.ndarray] = field(default_factory=list)  # (3,), NaN when the model has no head
    treatments: list[np.ndarray] = field(default_factory=list)  # (7,)
    ood: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # wall clock of predict()
    #: the raw decoder's contradictions of its heads per case, before the report was made to follow them
    decoder_conflicts: list[list[str]] = field(default_factory=list)
    edited: list[bool] = field(default_factory=list)  # following the heads changed the report

    def add(self, pred: Prediction, wall_ms: float) -> None:
        self.reports.append(pred.report)
        self.tokens.append(list(pred.tokens))
        self.findings.append(np.asarray([pred.findings.get(n, np.nan) for n in FINDINGS], np.float64))
        self.tumour.append(np.asarray([pred.tumour.get(c, np.nan) for c in TUMOUR_CLASSES], np.float64))
        sub = pred.tumour_subtype or {}
        self.subtype.append(np.asarray([sub.get(c, np.nan) for c in TUMOUR_SUBTYPES], np.float64))
        given = {t.name: t.probability for t in pred.treatments}
        self.treatments.append(np.asarray([given.get(n, np.nan) for n in TREATMENTS], np.float64))
        self.ood.append(float(pred.ood_score))
        self.latency_ms.append(float(wall_ms))
        self.decoder_conflicts.append(list(getattr(pred, "decoder_conflicts", []) or []))
        self.edited.append(bool(getattr(pred, "report_edits", "")))

    def array(self, name: str) -> np.ndarray:
        rows = getattr(self, name)
        width = {"findings": len(FINDINGS), "tumour": len(TUMOUR_CLASSES), "subtype": len(TUMOUR_SUBTYPES),
                 "treatments": len(TREATMENTS)}[name]  # fmt: skip
        return np.stack(rows) if rows else np.zeros((0, width))


@dataclass
class Targets:
    """What the source knows about each case (NaN / -1 = unknown)."""

    findings: np.ndarray  # (N, 7)
    tumour: np.ndarray  # (N,) int
    subtype: np.ndarray  # (N,) int
    treatments: np.ndarray  # (N, 7)
    references: list[str]  # reference reports ("" when none)

    @classmethod
    def from_samples(cls, samples: Sequence, detail: str = "standard") -> Targets:
        n = len(samples)
        return cls(
            findings=np.stack([s.finding_targets for s in samples]).astype(np.float64)
            if n
            else np.zeros((0, len(FINDINGS))),
            tumour=np.asarray([s.tumour_target for s in samples], dtype=np.int64),
            subtype=np.asarray([s.subtype_target for s in samples], dtype=np.int64),
            treatments=np.stack([s.treatment_targets for s in samples]).astype(np.float64)
            if n
            else np.zeros((0, len(TREATMENTS))),
            references=[(s.reports or {}).get(detail) or s.report or "" for s in samples],
        )


def thresholds_from_validation(run: ModelRun, targets: Targets) -> dict:
    """Max-F1 thresholds per finding and treatment, chosen on validation predictions."""
    return {
        "findings": classification.choose_thresholds(targets.findings, run.array("findings"), FINDINGS),
        "treatments": classification.choose_thresholds(
            targets.treatments, run.array("treatments"), TREATMENTS
        ),
        "rule": "max-F1 on the validation split (p >= t); 0.5 where validation has no positive",
        "n_val": len(run.reports),
    }


def default_thresholds() -> dict:
    return {
        "findings": dict.fromkeys(FINDINGS, classification.DEFAULT_THRESHOLD),
        "treatments": dict.fromkeys(TREATMENTS, classification.DEFAULT_THRESHOLD),
        "rule": "fixed 0.5 (no validation split)",
        "n_val": 0,
    }


def _has(values: np.ndarray) -> bool:
    return bool(values.size) and bool((~np.isnan(values)).any())


def score_model(
    run: ModelRun,
    targets: Targets,
    thresholds: Mapping,
    reference_labels: Sequence[Mapping],
    *,
    uncertain: str = "positive",
    labeler=None,
    meteor: bool | None = None,
    semantic: bool | None = None,
    report_metrics: bool = True,
) -> dict:
    """Every accuracy-type block for one model on one section.

    Returns ``{"metrics", "per_finding", "confusion", "roc", "pr", "reliability", "thresholds",
    "per_case", "skipped"}`` (efficiency and localisation are added by the caller).
    """
    metrics: dict[str, dict] = {}
    per_finding: dict[str, dict] = {}
    roc: dict[str, dict] = {}
    pr: dict[str, dict] = {}
    reliability: dict[str, dict] = {}
    confusion: dict[str, dict] = {}
    per_case: dict[str, list] = {}
    skipped: dict[str, str] = {}

    has_refs = any(targets.references)
    if report_metrics and has_refs:
        idx = [i for i, r in enumerate(targets.references) if r]
        hyps = [run.reports[i] for i in idx]
        refs = [targets.references[i] for i in idx]
        nl = nlg.report_metrics(hyps, refs, meteor_enabled=meteor, semantic_enabled=semantic)
        metrics["report"] = nl["scores"]
        skipped.update({f"report.{k}": v for k, v in nl["skipped"].items()})
        for k, v in nl["per_case"].items():
            full = [None] * len(run.reports)
            for j, i in enumerate(idx):
                full[i] = v[j]
            per_case[k] = full

        label = labeler or clinical.default_labeler()
        gen_labels = [dict(label(run.reports[i] or "")) for i in idx]
        ce = clinical.ce_scores(gen_labels, [reference_labels[i] for i in idx], uncertain=uncertain)
        metrics["clinical"] = {f"{avg}_{k}": ce[avg][k] for avg in ("micro", "macro", "example")
                               for k in ("precision", "recall", "f1")}  # fmt: skip
        metrics["clinical"]["f1"] = ce["micro"]["f1"]  # the headline CE number (declared: micro)
        per_finding["clinical"] = ce["per_label"]
        labels_full: list = [None] * len(run.reports)
        f1_full: list = [None] * len(run.reports)
        for j, i in enumerate(idx):
            labels_full[i], f1_full[i] = gen_labels[j], ce["per_case_f1"][j]
        per_case["labels"], per_case["clinical_f1"] = labels_full, f1_full
    elif not has_refs:
        skipped["report"] = "no reference reports in this set"

    if _has(targets.findings):
        ml = classification.multilabel_metrics(
            targets.findings, run.array("findings"), FINDINGS, thresholds.get("findings")
        )
        metrics["findings"], per_finding["findings"] = ml["summary"], ml["per_label"]
        roc["findings"], pr["findings"] = ml["roc"], ml["pr"]
        reliability["findings"] = calibration.sigmoid_reliability(targets.findings, run.array("findings"))
    if (targets.tumour >= 0).any():
        mc = classification.multiclass_metrics(targets.tumour, run.array("tumour"), TUMOUR_CLASSES)
        metrics["tumour"], per_finding["tumour"] = mc["summary"], mc["per_label"]
        confusion["tumour"], roc["tumour"] = mc["confusion"], mc["roc"]
        reliability["tumour"] = calibration.softmax_reliability(targets.tumour, run.array("tumour"))
    sub = run.array("subtype")
    if (targets.subtype >= 0).any() and _has(sub):
        keep = (targets.subtype >= 0) & ~np.isnan(sub).any(1)
        mc = classification.multiclass_metrics(targets.subtype[keep], sub[keep], TUMOUR_SUBTYPES)
        metrics["subtype"], per_finding["subtype"] = mc["summary"], mc["per_label"]
        confusion["subtype"] = mc["confusion"]
    if _has(targets.treatments):
        ml = classification.multilabel_metrics(
            targets.treatments, run.array("treatments"), TREATMENTS, thresholds.get("treatments")
        )
        metrics["treatment"], per_finding["treatment"] = ml["summary"], ml["per_label"]
        roc["treatment"], pr["treatment"] = ml["roc"], ml["pr"]
        reliability["treatment"] = calibration.sigmoid_reliability(
            targets.treatments, run.array("treatments")
        )
    metrics["calibration"] = {f"{head}_ece": r["ece"] for head, r in reliability.items()}
    return {
        "metrics": metrics,
        "per_finding": per_finding,
        "confusion": confusion,
        "roc": roc,
        "pr": pr,
        "reliability": reliability,
        "thresholds": dict(thresholds),
        "per_case": per_case,
        "skipped": skipped,
    }


def predicted_sets(run: ModelRun, thresholds: Mapping) -> tuple[list[set], list[int]]:
    """Per case: findings at or above their threshold, and the tumour argmax."""
    f = run.array("findings")
    th = np.asarray([thresholds["findings"].get(n, 0.5) for n in FINDINGS])
    sets = [{n for n, on in zip(FINDINGS, row >= th, strict=True) if on} for row in f]
    t = run.array("tumour")
    return sets, [int(np.nanargmax(r)) if not np.isnan(r).all() else -1 for r in t]


#: the strata of :func:`recall_by_grade`: the three severities, then subtle against the rest
GRADES = ("mild", "moderate", "severe", "subtle", "not_subtle")


def recall_by_grade(truths: Sequence, run: ModelRun, thresholds: Mapping) -> dict:
    """Finding recall per severity and for subtle vs not subtle cases (issue 10: recall by severity).

    A present finding counts as detected when its head is at or above its threshold (as in
    :func:`predicted_sets`). ``truths`` are the cases' ``CaseTruth`` (None for a real case, skipped);
    a finding without a severity or ``subtle`` flag counts in no stratum of that kind. Returns
    ``{FINDING: {GRADE: {"n", "detected", "recall"}}}`` with the strata that have cases only.
    """
    sets, _ = predicted_sets(run, thresholds)
    counts: dict[str, dict[str, list[int]]] = {}
    for truth, said in zip(truths, sets, strict=True):
        for f in truth.findings if truth is not None else ():
            if f.name not in FINDINGS:
                continue
            grades = [f.severity] if f.severity else []
            if f.subtle is not None:
                grades.append("subtle" if f.subtle else "not_subtle")
            for g in grades:
                n_hit = counts.setdefault(f.name, {}).setdefault(g, [0, 0])
                n_hit[0] += 1
                n_hit[1] += f.name in said
    out: dict[str, dict] = {}
    for name in (n for n in FINDINGS if n in counts):
        per = counts[name]
        out[name] = {g: {"n": per[g][0], "detected": per[g][1], "recall": per[g][1] / per[g][0]}
                     for g in GRADES if g in per}  # fmt: skip
    return out


def agreement(
    ref: ModelRun,
    other: ModelRun,
    ref_thr: Mapping,
    other_thr: Mapping,
    targets: Targets,
    ref_labels,
    other_labels,
) -> dict:
    """How often a model says what the reference model (the teacher) says."""
    cxr = ~np.isnan(targets.findings).all(1) if targets.findings.size else np.zeros(0, bool)
    ct = targets.tumour >= 0
    s_ref, t_ref = predicted_sets(ref, ref_thr)
    s_oth, t_oth = predicted_sets(other, other_thr)
    out: dict[str, float | None] = {
        "findings_exact": float(np.mean([a == b for a, b, m in zip(s_ref, s_oth, cxr, strict=True) if m]))
        if cxr.any()
        else None,
        "tumour": float(np.mean([a == b for a, b, m in zip(t_ref, t_oth, ct, strict=True) if m]))
        if ct.any()
        else None,
    }
    pairs = [
        (a, b)
        for a, b in zip(ref_labels or [], other_labels or [], strict=False)
        if a is not None and b is not None
    ]
    if pairs:
        same = [
            clinical.positive_labels(a) == clinical.positive_labels(b) for a, b in pairs
        ]  # identical positive sets
        out["report_labels_exact"] = float(np.mean(same))
    return out
