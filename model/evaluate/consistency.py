"""Report / head consistency: does a model's report contradict its own heads? (issue 10)

The shipped models' heads found effusions the reports then denied ("... Normal study."): the report
recall of effusion was 0.04 where the head's was 0.48 (``benchmarks/results/diagnosis.md``). This
module measures that gap on any set of predictions, per case and label:

- what the head calls present: a finding whose probability is >= its threshold (CXR); the argmax
  tumour class (CT: ``tumour_benign`` / ``tumour_malignant``, "none" = neither);
- what the report says, through the same labeler as clinical efficacy: "present" (positive or
  uncertain, CheXpert U-ones as in ``clinical``), "denied" (negative, or a report the labeler reads as
  normal), "silent" (not mentioned in a report that is not normal);
- a *denial*: the head calls it present and the report denies it; an *assertion*: the head calls it
  absent and the report states it; both are contradictions. An *omission* (head present, report
  silent) is counted apart: it is not a contradiction but it is not agreement either.

Rates: share of cases with at least one contradiction, and per (case, label) pair the denial rate
among head-present pairs, the assertion rate among head-absent pairs and the omission rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from model.types import FINDINGS, TUMOUR_CLASSES

#: the labels checked per modality (report labels of ``model.data.labeler``)
CONSISTENCY_LABELS: dict[str, tuple[str, ...]] = {
    "CXR": FINDINGS,
    "CT": ("tumour_benign", "tumour_malignant"),
}
_TUMOUR_LABEL = {"benign": "tumour_benign", "malignant": "tumour_malignant"}


def consistency_protocol() -> dict:
    return {
        "head_present": "CXR: finding probability >= its threshold; CT: argmax tumour class (none = neither)",
        "report": "model.data.labeler.label_report: positive/uncertain = present; negative or a report the "
        "labeler reads as normal = denied; else silent",
        "denial": "head present, report denies",
        "assertion": "head absent, report states present",
        "omission": "head present, report silent (not a contradiction; counted apart)",
        "contradiction_rate": "share of cases with at least one denial or assertion",
        "labels": {m: list(v) for m, v in CONSISTENCY_LABELS.items()},
    }


def head_calls(
    modality: str, findings: Mapping[str, float], tumour: Mapping[str, float], thresholds: Mapping[str, float]
) -> dict[str, bool]:
    """Label -> the head calls it present (findings at their thresholds; CT: the argmax tumour class)."""
    if modality == "CT":
        top = max(TUMOUR_CLASSES, key=lambda c: tumour.get(c, float("-inf")))
        return {label: _TUMOUR_LABEL.get(top) == label for label in CONSISTENCY_LABELS["CT"]}
    return {n: bool(findings.get(n, 0.0) >= thresholds.get(n, 0.5)) for n in FINDINGS}


def report_calls(modality: str, labels: Mapping[str, str | None]) -> dict[str, str]:
    """Label -> "present" | "denied" | "silent" as the report states it."""
    normal = labels.get("normal") == "positive"
    out = {}
    for name in CONSISTENCY_LABELS[modality]:
        value = labels.get(name)
        if value in ("positive", "uncertain"):
            out[name] = "present"
        elif value == "negative" or normal:
            out[name] = "denied"
        else:
            out[name] = "silent"
    return out


def case_consistency(head: Mapping[str, bool], report: Mapping[str, str]) -> dict[str, list[str]]:
    """Labels the report denies / asserts / omits against the head, for one case."""
    return {
        "denied": sorted(n for n, present in head.items() if present and report[n] == "denied"),
        "asserted": sorted(n for n, present in head.items() if not present and report[n] == "present"),
        "omitted": sorted(n for n, present in head.items() if present and report[n] == "silent"),
        "n_head_present": sum(bool(v) for v in head.values()),
        "n_head_absent": sum(not v for v in head.values()),
    }


def consistency_scores(cases: Sequence[Mapping]) -> dict:
    """Rates over cases (``case_consistency`` records); None where a rate has no denominator."""
    n = len(cases)
    present = sum(c["n_head_present"] for c in cases)
    absent = sum(c["n_head_absent"] for c in cases)
    denied = sum(len(c["denied"]) for c in cases)
    asserted = sum(len(c["asserted"]) for c in cases)
    omitted = sum(len(c["omitted"]) for c in cases)
    per_label: dict[str, dict[str, int]] = {}
    for c in cases:
        for kind in ("denied", "asserted", "omitted"):
            for name in c[kind]:
                per_label.setdefault(name, {"denied": 0, "asserted": 0, "omitted": 0})[kind] += 1
    return {
        "contradiction_rate": (sum(bool(c["denied"] or c["asserted"]) for c in cases) / n) if n else None,
        "denial_rate": denied / present if present else None,
        "assertion_rate": asserted / absent if absent else None,
        "omission_rate": omitted / present if present else None,
        "n_cases": n,
        "n_head_present": present,
        "n_head_absent": absent,
        "per_label": dict(sorted(per_label.items())),
    }


def measure(
    predictions: Sequence,
    thresholds: Mapping[str, float] | None = None,
    labeler: Callable[[str], Mapping[str, str | None]] | None = None,
) -> dict:
    """Consistency of ``Prediction``s (their heads vs their own reports) at ``thresholds`` (0.5 default)."""
    if labeler is None:
        from model.evaluate.clinical import default_labeler

        labeler = default_labeler()
    thresholds = thresholds or {}
    cases = []
    for p in predictions:
        head = head_calls(p.modality, p.findings, p.tumour, thresholds)
        cases.append(case_consistency(head, report_calls(p.modality, labeler(p.report))))
    out = consistency_scores(cases)
    out["cases"] = cases
    return out


def from_run(
    modalities: Sequence[str],
    findings: Sequence[Sequence[float]],
    tumour: Sequence[Sequence[float]],
    report_labels: Sequence[Mapping[str, str | None] | None],
    thresholds: Mapping[str, Mapping[str, float]],
) -> dict:
    """Consistency of an evaluation's per-case arrays (``scoring.ModelRun`` + the reports' labels), at
    each named set of finding thresholds (e.g. ``{"served": ..., "evaluation": ...}``)."""
    out = {}
    for key, thr in thresholds.items():
        cases = []
        for m, f, t, labels in zip(modalities, findings, tumour, report_labels, strict=True):
            if labels is None:
                continue
            head = head_calls(
                m, dict(zip(FINDINGS, f, strict=True)), dict(zip(TUMOUR_CLASSES, t, strict=True)), thr
            )
            cases.append(case_consistency(head, report_calls(m, labels)))
        out[key] = consistency_scores(cases)
    return out
