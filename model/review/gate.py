"""The update gate: score the current and the candidate version on the same cases, then decide.

Three kinds of evidence (issue 14, Deliver 3):

- **reviewed cases the candidate did not train on** (``score_labelled``): for each label a reviewer set
  (a finding present or absent, the tumour class), is the model's head call right, and does its report
  say the same (the report labeler)? Accuracy over those labels.
- **the fixed phantom test split** (``score_phantom_test``): the first cases of the shipped run's test
  split, re-rendered from seeds; clinical-efficacy micro F1 of the reports (labeler on generated vs
  reference report), macro F1 of the finding heads, accuracy of the tumour head.
- **the real sets** when present (``real_cases`` + ``score_labelled``): head accuracy on their known labels.

``decide`` compares the two versions metric by metric against the tolerances of ``GateConfig`` and
returns one :class:`Check` per comparison with a sentence saying what passed or failed and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from model.types import FINDINGS, TUMOUR_CLASSES, Study

PRESENT = ("positive", "uncertain")  # a report "states" a finding when the labeler finds it so (U-ones)


@dataclass(frozen=True)
class GateConfig:
    """What the candidate must show to be promoted (differences are candidate - current, in [0, 1])."""

    min_review_gain: float = 0.0  # held-out reviews: accuracy may not fall (> 0: it must rise this much)
    max_f1_drop: float = 0.01  # phantom test: clinical-efficacy F1 may drop at most 1 point
    max_head_drop: float = 0.02  # phantom test: finding-head macro F1 / tumour accuracy may drop 2 points
    max_real_drop: float = 0.02  # real sets: head accuracy may drop 2 points
    phantom_test_n: int = 160  # phantom test cases scored (half CXR, half CT; the first of the split)
    real_n: int = 80  # cases per real set scored (a stable subset of its test split)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabelledCase:
    """A study with the labels someone vouches for (a reviewer, a real set, a phantom's truth)."""

    case_id: str
    study: Study
    findings: dict[str, bool] = field(default_factory=dict)  # finding -> present (CXR); absent = unknown
    tumour: str | None = None  # tumour class (CT); None = unknown


@dataclass(frozen=True)
class Check:
    """One comparison of the gate."""

    name: str  # e.g. "teacher: held-out reviews, report accuracy"
    current: float
    candidate: float
    allowed_drop: float  # the candidate may be this much worse (negative: it must be better by -value)
    passed: bool

    @property
    def delta(self) -> float:
        return self.candidate - self.current

    def sentence(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        if self.allowed_drop > 0:
            need = f"may drop at most {100 * self.allowed_drop:.1f} points"
        elif self.allowed_drop == 0:
            need = "may not drop"
        else:
            need = f"must rise at least {-100 * self.allowed_drop:.1f} points"
        return (
            f"{self.name}: {100 * self.current:.1f} -> {100 * self.candidate:.1f} "
            f"({100 * self.delta:+.1f} points; {need}): {verdict}"
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"delta": self.delta, "sentence": self.sentence()}


# ----------------------------------------------------------------------------------------------
# Calls


def head_calls(pred, thresholds: dict[str, float]) -> tuple[dict[str, bool], str]:
    """(finding -> present at the model's thresholds, tumour class by argmax) of a Prediction."""
    findings = {n: float(pred.findings.get(n, 0.0)) >= thresholds.get(n, 0.5) for n in FINDINGS}
    tumour = max(pred.tumour, key=pred.tumour.get) if pred.tumour else "none"
    return findings, tumour


def report_calls(report: str, labeler=None) -> tuple[dict[str, bool], str]:
    """(finding -> stated present, tumour class stated) of a report text, through the labeler."""
    from model.evaluate.clinical import default_labeler

    labels = (labeler or default_labeler())(report or "")
    findings = {n: labels.get(n) in PRESENT for n in FINDINGS}
    if labels.get("tumour_malignant") in PRESENT:
        tumour = "malignant"
    elif labels.get("tumour_benign") in PRESENT:
        tumour = "benign"
    else:
        tumour = "none"
    return findings, tumour


def case_errors(case: LabelledCase, pred, thresholds: dict[str, float]) -> dict[str, list[str]]:
    """The labels of ``case`` the heads and the report get wrong: {"head": [...], "report": [...], "labels": [...]}."""
    head_f, head_t = head_calls(pred, thresholds)
    rep_f, rep_t = report_calls(pred.report)
    out = {"head": [], "report": [], "labels": []}
    for name, present in sorted(case.findings.items()):
        out["labels"].append(name)
        if head_f.get(name, False) != present:
            out["head"].append(name)
        if rep_f.get(name, False) != present:
            out["report"].append(name)
    if case.tumour in TUMOUR_CLASSES:
        out["labels"].append("tumour")
        if head_t != case.tumour:
            out["head"].append("tumour")
        if rep_t != case.tumour:
            out["report"].append("tumour")
    return out


def predict_cases(
    predictor, cases: Sequence[LabelledCase], batch_size: int = 16, desc: str | None = None
) -> list:
    """Predictions of one model for every case (standard detail, default decoding); a progress bar when
    ``desc`` is given."""
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(cases), desc=desc, unit="case", disable=desc is None, leave=False) as bar:
        for start in range(0, len(cases), batch_size):
            chunk = cases[start : start + batch_size]
            out += predictor.predict_batch([c.study for c in chunk])
            bar.update(len(chunk))
    return out


def score_labelled(
    predictor, cases: Sequence[LabelledCase], preds: Sequence | None = None, desc: str | None = None
) -> dict:
    """Head and report accuracy over every vouched-for label of ``cases``, with the per-case errors."""
    preds = list(preds) if preds is not None else predict_cases(predictor, cases, desc=desc)
    n = head_ok = report_ok = 0
    records = []
    for case, pred in zip(cases, preds, strict=True):
        err = case_errors(case, pred, predictor.finding_thresholds)
        n += len(err["labels"])
        head_ok += len(err["labels"]) - len(err["head"])
        report_ok += len(err["labels"]) - len(err["report"])
        records.append(
            {
                "id": case.case_id,
                "head_wrong": err["head"],
                "report_wrong": err["report"],
                "report": pred.report,
            }
        )
    return {
        "n_cases": len(cases),
        "n_labels": n,
        "head_accuracy": head_ok / n if n else float("nan"),
        "report_accuracy": report_ok / n if n else float("nan"),
        "cases": records,
    }


# ----------------------------------------------------------------------------------------------
# The fixed phantom test split and the real sets


@dataclass
class PhantomTestCase:
    case: LabelledCase
    reference: str  # the standard-detail reference report generate-data wrote for it


def phantom_test_cases(n: int) -> list[PhantomTestCase]:
    """The first ``n // 2`` CXR and ``n - n // 2`` CT cases of the shipped run's test split (fixed)."""
    from model.data.reports import write_reports
    from model.evaluate.phantom_cases import split_cases, split_jobs

    out = []
    for modality, k in (("CXR", n // 2), ("CT", n - n // 2)):
        seeds = {j.case_id: j.seed for j in split_jobs("test", modality)}
        for sc in split_cases("test", modality, limit=k):
            truth = sc.truth
            present = {f.name for f in truth.findings}
            case = LabelledCase(
                case_id=truth.case_id,
                study=sc.study,
                findings={f: f in present for f in FINDINGS} if modality == "CXR" else {},
                tumour=truth.tumour if modality == "CT" else None,
            )
            reports = write_reports(truth, np.random.default_rng([seeds[truth.case_id], 1]))
            out.append(PhantomTestCase(case, reports["standard"]))
    return out


def score_phantom_test(predictor, cases: Sequence[PhantomTestCase], desc: str | None = None) -> dict:
    """Clinical-efficacy micro F1 of the reports, finding-head macro F1 and tumour-head accuracy."""
    from model.evaluate.clinical import clinical_efficacy

    preds = predict_cases(predictor, [c.case for c in cases], desc=desc)
    ce = clinical_efficacy([p.report for p in preds], [c.reference for c in cases])
    f1s = []
    for name in FINDINGS:
        rows = [(c.case.findings[name], head_calls(p, predictor.finding_thresholds)[0][name])
                for c, p in zip(cases, preds, strict=True) if name in c.case.findings]  # fmt: skip
        tp = sum(t and q for t, q in rows)
        fp = sum(q and not t for t, q in rows)
        fn = sum(t and not q for t, q in rows)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    ct = [(c.case.tumour, head_calls(p, {})[1]) for c, p in zip(cases, preds, strict=True) if c.case.tumour]
    return {
        "n_cases": len(cases),
        "ce_f1": ce["micro"]["f1"],
        "ce_example_f1": ce["example"]["f1"],
        "findings_macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "tumour_accuracy": float(np.mean([a == b for a, b in ct])) if ct else float("nan"),
    }


def real_cases(real_root: str | None, n: int) -> dict[str, list[LabelledCase]]:
    """Set name -> a stable subset of its test split with the labels it knows (none when absent)."""
    if not real_root:
        return {}
    from model.data.sources import build_sources
    from model.evaluate.sections import load_sample_study, stable_subset

    out = {}
    for source in build_sources(None, real_root):
        cases = []
        for s in stable_subset(source.samples("test"), n):
            findings = {
                name: bool(v) for name, v in zip(FINDINGS, s.finding_targets, strict=True) if not np.isnan(v)
            }
            tumour = TUMOUR_CLASSES[s.tumour_target] if s.tumour_target >= 0 else None
            if findings or tumour:
                cases.append(
                    LabelledCase(s.id, load_sample_study(s), findings if s.modality == "CXR" else {}, tumour)
                )
        if cases:
            out[source.name] = cases
    return out


# ----------------------------------------------------------------------------------------------
# The decision


def decide(current: dict, candidate: dict, cfg: GateConfig) -> list[Check]:
    """One Check per metric both versions have (see ``update.gate_metrics`` for the layout)."""
    checks = []
    for role in sorted(set(current) & set(candidate)):
        cur, cand = current[role], candidate[role]
        for key, label in (("head_accuracy", "head accuracy"), ("report_accuracy", "report accuracy")):
            a, b = (cur.get("reviews") or {}).get(key), (cand.get("reviews") or {}).get(key)
            if _finite(a, b):
                checks.append(_check(f"{role}: held-out reviews, {label}", a, b, -cfg.min_review_gain))
        for key, label, allowed in (
            ("ce_f1", "clinical-efficacy F1", cfg.max_f1_drop),
            ("findings_macro_f1", "finding-head macro F1", cfg.max_head_drop),
            ("tumour_accuracy", "tumour-head accuracy", cfg.max_head_drop),
        ):
            a, b = (cur.get("phantom_test") or {}).get(key), (cand.get("phantom_test") or {}).get(key)
            if _finite(a, b):
                checks.append(_check(f"{role}: phantom test, {label}", a, b, allowed))
        for name in sorted(set(cur.get("real") or {}) & set(cand.get("real") or {})):
            a, b = cur["real"][name].get("head_accuracy"), cand["real"][name].get("head_accuracy")
            if _finite(a, b):
                checks.append(_check(f"{role}: real set {name}, head accuracy", a, b, cfg.max_real_drop))
    return checks


def _check(name: str, current: float, candidate: float, allowed_drop: float) -> Check:
    passed = candidate - current >= -allowed_drop - 1e-9
    return Check(name, float(current), float(candidate), float(allowed_drop), bool(passed))


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and np.isfinite(x) for x in xs)
