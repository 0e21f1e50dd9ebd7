"""Validation during training: hard-label losses (no KD, so teacher and students are scored alike) and quick
head metrics (macro AUROC of the findings, tumour accuracy), overall and per source."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from model.distill.config import DistillConfig
from model.distill.losses import IGNORE_INDEX, TERMS, distillation_loss
from model.distill.tensorset import TensorSet
from model.evaluate.classification import auroc


@torch.no_grad()
def validate(
    model: nn.Module, data: TensorSet, dcfg: DistillConfig, batch_size: int = 64
) -> dict[str, float]:
    """Hard-label losses (no KD, so teacher and students are scored alike) + quick head metrics."""
    was_training = model.training
    model.eval()
    sup = dcfg.without_kd()
    sums: dict[str, float] = {}
    n_batches = 0
    f_scores, f_labels, t_pred, t_true = [], [], [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        b = data.batch(idx)
        out = model(b["images"], b["context"], b["input_ids"], b["attention_mask"], features=b.get("features"))
        terms = distillation_loss(out, None, b, sup)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n_batches += 1
        f_scores.append(torch.sigmoid(out.findings_logits).numpy())
        f_labels.append(b["findings"].numpy())
        t_pred.append(out.tumour_logits.argmax(-1).numpy())
        t_true.append(b["tumour"].numpy())
    model.train(was_training)
    metrics = {f"val_{k}": v / max(1, n_batches) for k, v in sums.items() if k in TERMS or k == "total"}
    scores, labels = np.concatenate(f_scores), np.concatenate(f_labels)
    pred, true = np.concatenate(t_pred), np.concatenate(t_true)
    sources = np.asarray(data.sources)
    groups = {"": np.ones(len(data), dtype=bool)}
    for name in sorted(set(data.sources)):  # per source too: phantoms and real sets differ a lot
        groups["_" + name] = sources == name
    for suffix, rows in groups.items():
        auc = _macro_auroc(scores[rows], labels[rows])
        if not (suffix and math.isnan(auc)):
            metrics[f"val_findings_macro_auroc{suffix}"] = auc
        known = rows & (true != IGNORE_INDEX)
        if known.any() or not suffix:
            acc = float((pred[known] == true[known]).mean()) if known.any() else float("nan")
            metrics[f"val_tumour_accuracy{suffix}"] = acc
    return metrics


def _macro_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean AUROC over findings with both classes among the known labels (NaN when none)."""
    aucs = []
    for c in range(scores.shape[1]):
        known = ~np.isnan(labels[:, c])
        a = auroc(labels[known, c], scores[known, c]) if known.any() else float("nan")
        if not math.isnan(a):
            aucs.append(a)
    return float(np.mean(aucs)) if aucs else float("nan")
