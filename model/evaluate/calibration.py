"""Calibration: expected calibration error (ECE) and reliability bins, per head.

- Binning: ``n_bins`` equal-width bins on [0, 1] (default 10), right-closed except the first
  ([0, 0.1], (0.1, 0.2], ...); ECE = sum_b (n_b / N) * |acc_b - conf_b| (Guo et al., 2017).
- Sigmoid heads (findings, treatments): every known (case, label) pair is one binary event;
  confidence = the predicted probability p, accuracy = the fraction of positives in the bin
  (calibration of the probability itself, pooled over labels).
- Softmax head (tumour): confidence = the top-class probability, accuracy = whether the top class
  is right (top-label ECE).
"""

from __future__ import annotations

import numpy as np

N_BINS = 10


def calibration_protocol(n_bins: int = N_BINS) -> dict:
    return {
        "ece": f"{n_bins} equal-width bins on [0,1]; sum_b n_b/N |acc_b - conf_b|",
        "sigmoid_heads": "pooled (case,label) events: confidence = p, accuracy = fraction positive",
        "softmax_heads": "top-label: confidence = max p, accuracy = top class correct",
        "n_bins": n_bins,
    }


def reliability(confidence, correct, n_bins: int = N_BINS) -> dict:
    """ECE and the bins: ``{"ece", "n", "bins": [{lo, hi, count, confidence, accuracy}]}``.

    ``confidence`` in [0, 1]; ``correct`` 0/1 (or the binary target for a sigmoid head); NaNs are
    dropped. Empty bins are kept with count 0 and null means, so the plot has a fixed x axis.
    """
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    corr = np.asarray(correct, dtype=np.float64).ravel()
    keep = ~(np.isnan(conf) | np.isnan(corr))
    conf, corr = np.clip(conf[keep], 0.0, 1.0), corr[keep]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins, the first also holds 0: index = ceil(p * n) - 1, clipped to [0, n-1]
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins, ece, n = [], 0.0, len(conf)
    for b in range(n_bins):
        m = idx == b
        count = int(m.sum())
        c_mean = float(conf[m].mean()) if count else None
        a_mean = float(corr[m].mean()) if count else None
        if count:
            ece += count / n * abs(a_mean - c_mean)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": c_mean, "accuracy": a_mean})  # fmt: skip
    return {"ece": float(ece) if n else float("nan"), "n": n, "bins": bins}


def ece(confidence, correct, n_bins: int = N_BINS) -> float:
    return reliability(confidence, correct, n_bins)["ece"]


def sigmoid_reliability(targets, probs, n_bins: int = N_BINS) -> dict:
    """Pooled reliability of a multi-label sigmoid head (NaN targets = unknown, dropped)."""
    return reliability(np.asarray(probs).ravel(), np.asarray(targets).ravel(), n_bins)


def softmax_reliability(y_true, probs, n_bins: int = N_BINS) -> dict:
    """Top-label reliability of a softmax head (``y_true`` -1 = unknown, dropped)."""
    y = np.asarray(y_true, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    if not keep.any():
        return reliability([], [], n_bins)
    p = probs[keep]
    return reliability(p.max(1), (p.argmax(1) == y[keep]).astype(float), n_bins)
