"""Classification metrics for the heads: AUROC, average precision, F1, accuracy, confusion matrices.

Pure numpy / scipy, so every number can be pinned by a hand-computed test.

- AUROC: the Mann-Whitney U statistic with mid-ranks, so tied scores count 1/2
  (= the trapezoidal area under the ROC curve). Undefined (NaN) when only one class is present.
- Average precision: sum over distinct thresholds of (R_k - R_{k-1}) * P_k (step-wise, no
  interpolation; the scikit-learn definition). NaN without positives.
- Thresholds for F1 / accuracy / confusion: per label, the score threshold maximising F1 on the
  validation split (predict positive when p >= t; ties broken toward the higher threshold),
  falling back to 0.5 when there is no validation positive.
- Multi-label heads (findings, treatments): unknown targets (NaN) are left out per label; macro =
  unweighted mean over labels where the metric is defined; micro F1 pools TP/FP/FN.
- Tumour (softmax): accuracy and confusion of the argmax; per-class one-vs-rest AUROC / AP / F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

DEFAULT_THRESHOLD = 0.5
CURVE_POINTS = 101  # curves are thinned to at most this many points for the JSON


def _clean(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"targets {y.shape} and scores {s.shape} differ")
    keep = ~(np.isnan(y) | np.isnan(s))
    return (y[keep] > 0.5).astype(np.int64), s[keep]


def auroc(y, s) -> float:
    """Area under the ROC curve from mid-ranks (ties count 1/2); NaN with one class only."""
    y, s = _clean(y, s)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _counts_by_threshold(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) and cumulative TP / FP when predicting s >= threshold."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]  # last index of each tie group
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    return s_sorted[last], tp.astype(np.float64), fp.astype(np.float64)


def roc_curve(y, s) -> dict:
    """ROC points from (0, 0) to (1, 1): ``{"fpr", "tpr", "thresholds"}`` (lists)."""
    y, s = _clean(y, s)
    n_pos, n_neg = y.sum(), (1 - y).sum()
    if n_pos == 0 or n_neg == 0 or len(s) == 0:
        return {"fpr": [], "tpr": [], "thresholds": []}
    thr, tp, fp = _counts_by_threshold(y, s)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thr = np.r_[np.inf, thr]
    return _thin({"fpr": fpr, "tpr": tpr, "thresholds": thr})


def precision_recall_curve(y, s) -> dict:
    """PR points by decreasing threshold: ``{"precision", "recall", "thresholds"}``."""
    y, s = _clean(y, s)
    if y.sum() == 0:
        return {"precision": [], "recall": [], "thresholds": []}
    thr, tp, fp = _counts_by_threshold(y, s)
    return _thin({"precision": tp / (tp + fp), "recall": tp / y.sum(), "thresholds": thr})


def _thin(curve: dict, n: int = CURVE_POINTS) -> dict:
    k = len(next(iter(curve.values())))
    idx = np.unique(np.linspace(0, k - 1, n).round().astype(int)) if k > n else np.arange(k)
    return {key: [None if not np.isfinite(x) else round(float(x), 6) for x in np.asarray(v)[idx]]
            for key, v in curve.items()}  # fmt: skip


def average_precision(y, s) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds; NaN without positives."""
    y, s = _clean(y, s)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    _, tp, fp = _counts_by_threshold(y, s)
    precision, recall = tp / (tp + fp), tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(y, s, default: float = DEFAULT_THRESHOLD) -> float:
    """The score threshold (predict s >= t) with the highest F1; ``default`` without positives."""
    y, s = _clean(y, s)
    if y.sum() == 0 or len(s) == 0:
        return float(default)
    thr, tp, fp = _counts_by_threshold(y, s)
    f1 = 2 * tp / (tp + fp + y.sum())  # 2TP / (2TP + FP + FN), FN = P - TP
    return float(thr[int(np.argmax(f1))])  # argmax takes the first: the highest threshold among ties


def binary_metrics(y, s, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """AUROC, AP and the thresholded metrics + confusion [[TN, FP], [FN, TP]] for one label."""
    y, s = _clean(y, s)
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    n = len(y)
    nan = float("nan")
    return {
        "auroc": auroc(y, s),
        "ap": average_precision(y, s),
        "threshold": float(threshold),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "accuracy": (tp + tn) / n if n else nan,
        "support": tp + fn,
        "n": n,
        "prevalence": (tp + fn) / n if n else nan,
        "confusion": [[tn, fp], [fn, tp]],
    }


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def multilabel_metrics(
    targets: np.ndarray,
    probs: np.ndarray,
    names: Sequence[str],
    thresholds: Mapping[str, float] | None = None,
) -> dict:
    """Per-label binary metrics + macro means and micro F1 for a sigmoid head.

    ``targets`` (N, L) with NaN = unknown; ``probs`` (N, L). Returns ``{"summary", "per_label",
    "roc", "pr"}``.
    """
    targets, probs = np.asarray(targets, np.float64), np.asarray(probs, np.float64)
    thresholds = thresholds or {}
    per_label, roc, pr = {}, {}, {}
    tp = fp = fn = 0
    for j, name in enumerate(names):
        m = binary_metrics(targets[:, j], probs[:, j], thresholds.get(name, DEFAULT_THRESHOLD))
        per_label[name] = m
        (_, f), (n_, t) = m["confusion"]
        tp, fp, fn = tp + t, fp + f, fn + n_
        roc[name] = roc_curve(targets[:, j], probs[:, j])
        pr[name] = precision_recall_curve(targets[:, j], probs[:, j])
    known = [m for m in per_label.values() if m["n"] > 0]
    summary = {
        "macro_auroc": _nanmean(m["auroc"] for m in known),
        "macro_ap": _nanmean(m["ap"] for m in known),
        "macro_f1": _nanmean(m["f1"] for m in known),
        "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "macro_accuracy": _nanmean(m["accuracy"] for m in known),
        "n_cases": int((~np.isnan(targets)).any(1).sum()) if targets.size else 0,
    }
    return {"summary": summary, "per_label": per_label, "roc": roc, "pr": pr}


def choose_thresholds(targets: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Max-F1 threshold per label (run on the validation split)."""
    targets, probs = np.asarray(targets, np.float64), np.asarray(probs, np.float64)
    return {name: best_f1_threshold(targets[:, j], probs[:, j]) for j, name in enumerate(names)}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = truth, columns = prediction."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def multiclass_metrics(y_true, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, macro one-vs-rest AUROC and confusion of a softmax head.

    ``y_true`` holds class indices (-1 = unknown, left out); ``probs`` (N, C).
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    y, probs = y[keep], probs[keep]
    n_classes = len(classes)
    pred = probs.argmax(1) if len(y) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y, pred, n_classes)
    per_class, roc = {}, {}
    for c, name in enumerate(classes):
        onehot = (y == c).astype(np.float64)
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        per_class[name] = {
            "auroc": auroc(onehot, probs[:, c]) if len(y) else float("nan"),
            "ap": average_precision(onehot, probs[:, c]) if len(y) else float("nan"),
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else float("nan"),
            "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan"),
            "support": int(cm[c, :].sum()),
        }
        roc[name] = roc_curve(onehot, probs[:, c]) if len(y) else roc_curve([], [])
    present = [m for m in per_class.values() if m["support"] > 0]
    summary = {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": _nanmean(m["f1"] for m in present),
        "macro_auroc": _nanmean(m["auroc"] for m in present),
        "n_cases": int(len(y)),
    }
    return {
        "summary": summary,
        "per_label": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.tolist()},
        "roc": roc,
    }
