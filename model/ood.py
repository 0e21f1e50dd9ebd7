"""Mahalanobis out-of-distribution statistics stored with every checkpoint (``extras.safetensors``).

The training recipes fit them (``fit_ood_stats``) on validation images; the Predictor scores served
images with them (``ood_scores``) when the input guard has no probe for its weights; the install checks
measure a checkpoint's own OOD rate with them. They live here, not in the serving module, so training does
not depend on ``model/inference.py``.

Score: Mahalanobis-type distance of the pooled image features to the validation statistics, in a
probabilistic-PCA form (top-k principal directions with shrunk variances + one isotropic variance for the
rest), divided by the feature dimension so that in-distribution images score about 1. The flag threshold
is the 99th percentile of held-out validation scores, so about 1% of in-distribution images are flagged.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

#: the extras a checkpoint needs for its own OOD score
OOD_KEYS: tuple[str, ...] = ("ood_mean", "ood_components", "ood_eigvals", "ood_residual_var", "ood_threshold")


@torch.inference_mode()
def pooled_features(
    model, images: torch.Tensor | Iterable, context: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """(N, C) pooled features of images given as one (N, 1, S, S) tensor or an iterable of batches
    (tensors, or dicts with an "images" key)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if isinstance(images, torch.Tensor):
        images = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    out = []
    for b in images:
        x = b["images"] if isinstance(b, dict) else b
        out.append(model.forward_features(x.float().to(device)).mean((2, 3)).double().cpu())
    model.train(was_training)
    return torch.cat(out)


def fit_ood_stats(
    model,
    images: torch.Tensor | Iterable,
    context: torch.Tensor | None = None,
    max_components: int = 64,
    shrinkage: float = 0.1,
    quantile: float = 0.99,
) -> dict[str, torch.Tensor]:
    """Mahalanobis statistics of pooled features on validation images, for ``extras.safetensors``.

    The statistics are fitted on half of the images (even indices) and the threshold is the
    ``quantile`` of the scores of the other half, so it is calibrated on images the statistics have
    not seen (fewer than 4 images: both on all). ``context`` is accepted for the trainer's call
    signature; the score depends on the image only.
    """
    x = pooled_features(model, images)  # (N, C) float64
    n = x.shape[0]
    if n < 2:
        raise ValueError("fit_ood_stats needs at least two images")
    fit, calib = (x[0::2], x[1::2]) if n >= 4 else (x, x)
    mean = fit.mean(0)
    xc = fit - mean  # (n_fit, C)
    c = x.shape[1]
    # keep at most half of the fitted sample's directions, so the residual variance is estimated
    # from real spread and not from the numerical floor (small validation sets)
    k = max(1, min(max_components, (fit.shape[0] - 1) // 2, c - 1))
    _, s, vt = torch.linalg.svd(xc / max(1, fit.shape[0] - 1) ** 0.5, full_matrices=False)
    eig = s[:k] ** 2  # (k,) variances along the principal directions
    total = float((s**2).sum())
    avg = max(total / c, 1e-12)  # mean variance per dimension
    residual = max((total - float(eig.sum())) / max(1, c - k), 1e-3 * avg)
    eig = (1 - shrinkage) * eig + shrinkage * avg  # shrink towards the average (Ledoit-Wolf style)
    stats = {
        "ood_mean": mean.float(),
        "ood_components": vt[:k].float().contiguous(),  # (k, C)
        "ood_eigvals": eig.float(),
        "ood_residual_var": torch.tensor([residual], dtype=torch.float32),
    }
    scores = ood_scores(calib.float(), stats)
    stats["ood_threshold"] = torch.tensor([float(np.quantile(scores.numpy(), quantile))], dtype=torch.float32)
    stats["ood_n"] = torch.tensor([n], dtype=torch.float32)
    return stats


def ood_scores(pooled: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) sqrt(d^2 / C): d^2 = sum_k z_k^2 / lambda_k + ||residual||^2 / sigma^2 (probabilistic PCA)."""
    xc = pooled.float() - stats["ood_mean"]  # (N, C)
    z = xc @ stats["ood_components"].t()  # (N, k)
    resid = xc - z @ stats["ood_components"]  # (N, C)
    d2 = (z**2 / stats["ood_eigvals"]).sum(1) + (resid**2).sum(1) / stats["ood_residual_var"]
    return (d2 / xc.shape[1]).sqrt()
