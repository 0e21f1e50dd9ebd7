"""Collapse checks a checkpoint must pass before the pipeline installs it (issue 10).

The no-KD student of the shipped run stopped after 407 steps with near-constant outputs (std <= 0.0023
across images), one fixed report and OOD statistics that flag every image; nothing stopped it from
being installed. Three checks on the checkpoint's own validation phantoms now do:

- ``collapse``: the head outputs vary across images (largest std over images of any finding / tumour
  probability >= ``min_output_std``) and the reports do too (more than one distinct report per
  modality);
- ``ood``: the checkpoint's own OOD statistics (``extras``: Mahalanobis mean/components/threshold)
  flag at most ``max_ood_rate`` of its validation images (they were calibrated to flag ~1 %);
- ``baseline``: it beats trivial baselines by ``margin``: findings macro-AUROC vs 0.5 (any constant
  score), tumour accuracy vs the majority class, and the micro-F1 of its reports' stated findings vs
  the best constant report (stating no finding, any one finding, or all of them).

``run_checks`` returns a record for the model card (``card["checks"]``): every check with its value,
threshold and verdict, and the validation max-F1 thresholds (``thresholds``) the Predictor uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.types import FINDINGS, TUMOUR_CLASSES, CaseTruth, PatientContext, ReportStyle, Study


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the install checks (echoed into the card)."""

    min_output_std: float = 0.01  # a collapsed head: every output's std over images below this
    max_ood_rate: float = 0.05  # share of own validation images the OOD statistics may flag
    margin: float = 0.02  # how far above a trivial baseline a model must be
    detail: str = "standard"  # report detail level checked
    max_new_tokens: int = 96
    batch_size: int = 16


@dataclass
class ValCase:
    """One validation case: the study, its patient and its truth (phantoms: exact)."""

    study: Study
    context: PatientContext
    truth: CaseTruth


def cases_from_phantom_dir(data_dir, limit: int | None = None) -> list[ValCase]:
    """Validation phantoms of a ``meddistill generate-data`` folder."""
    from model.data.sources import PhantomSource
    from model.evaluate.run import load_sample_study, stable_subset

    samples = stable_subset(PhantomSource(data_dir).samples("val"), limit)
    return [ValCase(load_sample_study(s), s.context, s.truth) for s in samples if s.truth is not None]


def cases_from_split(limit: int | None = None, run: dict | None = None) -> list[ValCase]:
    """Validation phantoms of a run re-rendered from its seed (default: the shipped run), ``limit`` per modality."""
    from model.evaluate.phantom_cases import split_cases

    return [
        ValCase(c.study, c.truth.context, c.truth)
        for modality in ("CXR", "CT")
        for c in split_cases("val", modality, limit, run)
    ]


def _predict(predictor, cases: Sequence[ValCase], cfg: CheckConfig) -> list:
    style = ReportStyle(detail=cfg.detail, max_new_tokens=cfg.max_new_tokens)
    out = []
    for start in range(0, len(cases), cfg.batch_size):
        chunk = cases[start : start + cfg.batch_size]
        out += predictor.predict_batch([c.study for c in chunk], [c.context for c in chunk], style)
    return out


def _check(name: str, passed: bool, value, threshold, detail: str, **extra) -> dict:
    return {"check": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail,
            **extra}  # fmt: skip


def collapse_check(preds, cases, cfg: CheckConfig) -> dict:
    cxr = [i for i, c in enumerate(cases) if c.study.modality == "CXR"]
    ct = [i for i, c in enumerate(cases) if c.study.modality == "CT"]
    stds = {}
    if len(cxr) > 1:
        f = np.array([[preds[i].findings[n] for n in FINDINGS] for i in cxr])
        stds.update({f"finding:{n}": float(s) for n, s in zip(FINDINGS, f.std(0), strict=True)})
    if len(ct) > 1:
        t = np.array([[preds[i].tumour[c] for c in TUMOUR_CLASSES] for i in ct])
        stds.update({f"tumour:{c}": float(s) for c, s in zip(TUMOUR_CLASSES, t.std(0), strict=True)})
    top = max(stds.values()) if stds else 0.0
    distinct = {m: len({preds[i].report for i in idx}) for m, idx in (("CXR", cxr), ("CT", ct)) if idx}
    fixed = [m for m, k in distinct.items() if k <= 1 and len(cxr if m == "CXR" else ct) > 1]
    passed = top >= cfg.min_output_std and not fixed
    why = f"largest output std over images {top:.4f} (needs >= {cfg.min_output_std})" + (
        f"; one fixed report for every {', '.join(fixed)} image" if fixed else ""
    )
    return _check("collapse", passed, round(top, 6), cfg.min_output_std, why,
                  output_std=stds, distinct_reports=distinct)  # fmt: skip


def ood_check(predictor, cases, cfg: CheckConfig) -> dict:
    from model.ood import OOD_KEYS, ood_scores, pooled_features

    extras = getattr(predictor, "extras", {}) or {}
    if not all(k in extras for k in OOD_KEYS):
        return _check("ood", False, None, cfg.max_ood_rate, "the checkpoint has no OOD statistics")
    images = torch.cat([predictor.image_tensor(c.study) for c in cases])
    pooled = pooled_features(predictor.model, images)
    stats = {k: extras[k].float().cpu() for k in OOD_KEYS}
    flagged = (ood_scores(pooled.float(), stats) > float(stats["ood_threshold"][0])).float()
    rate = float(flagged.mean())
    return _check(
        "ood", rate <= cfg.max_ood_rate, round(rate, 4), cfg.max_ood_rate,
        f"its own OOD statistics flag {rate:.1%} of {len(cases)} validation images (at most "
        f"{cfg.max_ood_rate:.0%} allowed)",
    )  # fmt: skip


def _stated(report_labels, modality: str) -> set[str]:
    from model.evaluate.consistency import report_calls

    return {n for n, v in report_calls(modality, report_labels).items() if v == "present"}


def _truth_set(truth: CaseTruth) -> set[str]:
    if truth.modality == "CT":
        return {f"tumour_{truth.tumour}"} if truth.tumour in ("benign", "malignant") else set()
    return {f.name for f in truth.findings}


def _micro_f1(pairs: Sequence[tuple[set, set]]) -> float:
    tp = sum(len(t & s) for t, s in pairs)
    fp = sum(len(s - t) for t, s in pairs)
    fn = sum(len(t - s) for t, s in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def baseline_check(preds, cases, cfg: CheckConfig) -> dict:
    from model.evaluate.classification import auroc
    from model.evaluate.clinical import default_labeler
    from model.evaluate.consistency import CONSISTENCY_LABELS

    out = {}
    cxr = [i for i, c in enumerate(cases) if c.study.modality == "CXR"]
    if cxr:
        y = np.array([cases[i].truth.finding_vector() for i in cxr])
        s = np.array([[preds[i].findings[n] for n in FINDINGS] for i in cxr])
        aucs = [auroc(y[:, j], s[:, j]) for j in range(len(FINDINGS))]
        macro = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
        out["findings_macro_auroc"] = {"model": round(macro, 4), "baseline": 0.5}
    ct = [i for i, c in enumerate(cases) if c.study.modality == "CT" and c.truth.tumour in TUMOUR_CLASSES]
    if ct:
        truth = [TUMOUR_CLASSES.index(cases[i].truth.tumour) for i in ct]
        pred = [int(np.argmax([preds[i].tumour[c] for c in TUMOUR_CLASSES])) for i in ct]
        acc = float(np.mean(np.array(truth) == np.array(pred)))
        majority = float(np.bincount(truth, minlength=len(TUMOUR_CLASSES)).max() / len(truth))
        out["tumour_accuracy"] = {"model": round(acc, 4), "baseline": round(majority, 4)}
    label = default_labeler()
    pairs = [
        (_truth_set(c.truth), _stated(label(p.report), c.study.modality))
        for p, c in zip(preds, cases, strict=True)
    ]
    labels = [n for m in ("CXR", "CT") for n in CONSISTENCY_LABELS[m]]
    constants = [set(), set(labels)] + [{n} for n in labels]
    best = max(
        _micro_f1(
            [
                (t, k & set(CONSISTENCY_LABELS[c.study.modality]))
                for (t, _), c in zip(pairs, cases, strict=True)
            ]
        )
        for k in constants
    )  # a constant report states the same findings on every image of a modality
    out["report_micro_f1"] = {"model": round(_micro_f1(pairs), 4), "baseline": round(best, 4)}
    failed = [k for k, v in out.items() if not (v["model"] > v["baseline"] + cfg.margin)]
    detail = "; ".join(f"{k} {v['model']:.3f} vs trivial {v['baseline']:.3f}" for k, v in out.items())
    return _check("baseline", not failed, out, cfg.margin,
                  (f"no better than a trivial baseline on {', '.join(failed)}: " if failed else "") + detail,
                  failed=failed)  # fmt: skip


def validation_thresholds(preds, cases) -> dict:
    """Max-F1 threshold per finding on these validation cases (what the Predictor reads from the card)."""
    from model.evaluate.classification import choose_thresholds

    cxr = [i for i, c in enumerate(cases) if c.study.modality == "CXR"]
    y = np.array([cases[i].truth.finding_vector() for i in cxr])
    s = np.array([[preds[i].findings[n] for n in FINDINGS] for i in cxr])
    return {
        "findings": choose_thresholds(y, s, FINDINGS) if cxr else {},
        "rule": "max-F1 per finding on the validation phantoms (p >= t)",
        "n_val": len(cxr),
    }


def run_checks(predictor, cases: Sequence[ValCase], cfg: CheckConfig | None = None) -> dict:
    """Every install check of one checkpoint on its validation cases -> the card's ``checks`` record."""
    cfg = cfg or CheckConfig()
    if not cases:
        raise ValueError("the install checks need validation cases; the run has none")
    preds = _predict(predictor, cases, cfg)
    checks = [
        collapse_check(preds, cases, cfg),
        ood_check(predictor, cases, cfg),
        baseline_check(preds, cases, cfg),
    ]
    return {
        "passed": all(c["passed"] for c in checks),
        "checks": {c["check"]: c for c in checks},
        "n_val": len(cases),
        "n_val_cxr": sum(c.study.modality == "CXR" for c in cases),
        "n_val_ct": sum(c.study.modality == "CT" for c in cases),
        "config": asdict(cfg),
        "thresholds": validation_thresholds(preds, cases),
        "report_conditioning": getattr(predictor, "report_conditioning", None),
    }


def failure_message(name: str, record: dict) -> str:
    """One user-facing sentence: which checkpoint, which checks failed, what to do."""
    failed = [c for c in record["checks"].values() if not c["passed"]]
    whys = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    return (
        f"Not installing the {name} checkpoint: it failed the install checks ({whys}). Train it longer or "
        "with another recipe and run the pipeline again; the checkpoint already in assets/checkpoints/ stays."
    )
