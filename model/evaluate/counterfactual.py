"""Counterfactual intensity swap: does a head read the anatomy, or the brightness of the film?

Each image of one class gets the intensity histogram of a random image of the other class
(histogram matching: every pixel keeps its rank, takes the template's value at that rank), so the
anatomy, the tumour and every edge stay where they were and only the grey-level distribution moves.
The models predict again; a head that learnt the lesion keeps its answer, a head that learnt the
acquisition (``../shared/data/chest_ct``: normal slices are much brighter than cancer slices)
flips. Reported per model and per direction:

- ``flip_rate``: cases whose decision changed (CT: tumour present = argmax not "none";
  CXR: any finding at or above its threshold);
- ``to_other_class``: cases now called the *other* class (a normal called "tumour" after it took a
  cancer slice's histogram) out of the cases not called it before;
- ``positive_before`` / ``positive_after``: share of cases called abnormal before / after;
- ``mean_shift``: mean change of P(abnormal) (CT: 1 - P(none); CXR: the largest finding probability).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from model.types import FINDINGS, ReportStyle, Study


def match_histogram(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``source`` with the grey-level distribution of ``template`` (sizes may differ); float32.

    Classic CDF matching: each distinct source value goes to the template value at the same
    quantile (linear interpolation between template quantiles).
    """
    src = np.asarray(source, dtype=np.float64)
    values, inverse, counts = np.unique(src.ravel(), return_inverse=True, return_counts=True)
    t_values, t_counts = np.unique(np.asarray(template, dtype=np.float64).ravel(), return_counts=True)
    s_q = np.cumsum(counts) / src.size  # (n_src_values,)
    t_q = np.cumsum(t_counts) / t_counts.sum()  # (n_tmpl_values,)
    mapped = np.interp(s_q, t_q, t_values)
    return mapped[inverse].reshape(src.shape).astype(np.float32)


def is_abnormal_sample(sample) -> bool | None:
    """True / False when the source knows the sample is abnormal / normal; None when unsure."""
    if sample.modality == "CT":
        return None if sample.tumour_target < 0 else sample.tumour_target > 0
    t = np.asarray(sample.finding_targets, dtype=np.float64)
    if (t == 1.0).any():
        return True
    return False if (t == 0.0).all() else None


def _abnormal_score(pred, thresholds: Mapping[str, float] | None) -> tuple[bool, float]:
    """(decision, score) of one prediction: is the study called abnormal, and how strongly."""
    if pred.modality == "CT":
        p_none = float(pred.tumour.get("none", 0.0))
        top = max(pred.tumour, key=pred.tumour.get)
        return top != "none", 1.0 - p_none
    thr = thresholds or {}
    decision = any(pred.findings[n] >= thr.get(n, 0.5) for n in FINDINGS)
    return decision, max(pred.findings.values())


def _heads(predictor, studies: Sequence[Study], contexts, batch_size: int) -> list:
    style = ReportStyle(max_new_tokens=1)  # the heads are what is tested; no report needed
    out = []
    for i in range(0, len(studies), batch_size):
        out += predictor.predict_batch(studies[i : i + batch_size], contexts[i : i + batch_size], style)
    return out


def intensity_swap(
    predictors: Mapping[str, object],
    samples: Sequence,
    load: Callable[[object], Study],
    *,
    seed: int = 0,
    limit: int | None = 100,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    batch_size: int = 16,
    predict: Callable | None = None,
) -> dict:
    """Swap histograms between the normal and abnormal samples and count flipped decisions.

    ``load(sample) -> Study``; ``thresholds[model]`` = finding thresholds (CXR; default 0.5);
    ``predict(predictor, studies, contexts, batch_size) -> [Prediction]`` defaults to the batched
    heads-only path of the evaluation.
    Returns ``{"n_normal", "n_abnormal", "seed", "models": {NAME: {"normal_to_abnormal": {...},
    "abnormal_to_normal": {...}}}}`` (``normal_to_abnormal``: normal images given an abnormal
    image's histogram). Needs at least one case of each class; else ``{"skipped": reason}``.
    """
    rng = np.random.default_rng(seed)
    groups = {True: [], False: []}
    for s in samples:
        label = is_abnormal_sample(s)
        if label is not None:
            groups[label].append(s)
    for label in groups:
        if limit is not None and len(groups[label]) > limit:
            pick = sorted(rng.choice(len(groups[label]), size=limit, replace=False).tolist())
            groups[label] = [groups[label][i] for i in pick]
    if not groups[True] or not groups[False]:
        return {"skipped": "needs at least one normal and one abnormal case with known labels"}
    studies = {k: [load(s) for s in v] for k, v in groups.items()}
    contexts = {k: [s.context for s in v] for k, v in groups.items()}
    swapped = {}
    for label, own in studies.items():
        other = studies[not label]
        partners = rng.integers(0, len(other), size=len(own))
        swapped[label] = [
            Study(
                pixels=np.clip(match_histogram(st.pixels, other[j].pixels), 0.0, 1.0),
                modality=st.modality,
                source=st.source + " (histogram swapped)",
            )
            for st, j in zip(own, partners.tolist(), strict=True)
        ]
    predict = predict or _heads
    models = {}
    for name, predictor in predictors.items():
        thr = (thresholds or {}).get(name)
        block = {}
        for label, key in ((False, "normal_to_abnormal"), (True, "abnormal_to_normal")):
            before = [_abnormal_score(p, thr) for p in predict(predictor, studies[label], contexts[label],
                                                               batch_size)]  # fmt: skip
            after = [_abnormal_score(p, thr) for p in predict(predictor, swapped[label], contexts[label],
                                                              batch_size)]  # fmt: skip
            block[key] = _flip_block(before, after, other_is_abnormal=not label)
        models[name] = block
    return {
        "n_normal": len(groups[False]),
        "n_abnormal": len(groups[True]),
        "seed": seed,
        "head": "tumour" if samples and samples[0].modality == "CT" else "findings",
        "models": models,
    }


def _flip_block(
    before: list[tuple[bool, float]], after: list[tuple[bool, float]], other_is_abnormal: bool
) -> dict:
    b = np.asarray([d for d, _ in before])
    a = np.asarray([d for d, _ in after])
    not_other_before = (~b) if other_is_abnormal else b  # cases not yet called the other class
    now_other = a if other_is_abnormal else ~a
    n_base = int(not_other_before.sum())
    return {
        "n": len(b),
        "flip_rate": float((a != b).mean()),
        "to_other_class": float((not_other_before & now_other).sum() / n_base) if n_base else None,
        "n_not_other_before": n_base,
        "positive_before": float(b.mean()),
        "positive_after": float(a.mean()),
        "mean_shift": float(np.mean([s2 - s1 for (_, s1), (_, s2) in zip(before, after, strict=True)])),
    }


def counterfactual_protocol() -> dict:
    return {
        "swap": "histogram matching (CDF) of each image to a random image of the other class, seeded",
        "decision": "CT: tumour argmax != none; CXR: any finding >= its threshold (validation max-F1, else 0.5)",
        "flip_rate": "cases whose decision changed / cases",
        "to_other_class": "cases called the other class after the swap / cases not called it before",
        "mean_shift": "mean change of P(abnormal): CT 1 - P(none); CXR max finding probability",
        "reading": "a head that reads the lesion keeps its answer (flip_rate near 0); one that reads "
        "brightness follows the histogram",
    }
