"""Localisation of heat maps on phantoms (exact masks) and teacher-student heat-map agreement.

- Pointing game (Zhang et al., 2016): a hit when the heat map's maximum lies inside the ground
  truth mask grown by ``tolerance`` pixels (square dilation; default 3% of the image side, the
  usual 15 px at 500 px). Ties at the maximum: the first in row-major order (numpy argmax).
- IoU of the thresholded map with the mask. Threshold rules (declared in every result):
  ``"rel:0.5"`` keeps pixels >= 0.5 x the map's maximum (default; Grad-CAM maps are min-max
  normalised, so this is >= 0.5), ``"top:0.15"`` keeps the top 15% of pixels.
- Agreement of two maps (teacher vs student) on the same target: Pearson correlation of the
  flattened maps, and IoU of their thresholded regions under the same rule.
Masks of a different size than the heat map are resized by nearest neighbour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_RULE = "rel:0.5"
DEFAULT_TOLERANCE_FRAC = 0.03


def localization_protocol(rule: str = DEFAULT_RULE, tolerance_frac: float = DEFAULT_TOLERANCE_FRAC) -> dict:
    return {
        "pointing_game": f"hit when argmax of the heat map is inside the mask dilated by "
        f"{tolerance_frac:.0%} of the image side",
        "iou_threshold": rule,
        "iou_rules": {"rel:X": "pixels >= X * max", "top:Q": "top Q fraction of pixels"},
        "agreement": "Pearson r of flattened maps; IoU of thresholded regions (same rule)",
        "targets": "per case: the present finding with the largest mask (CXR), the true tumour class (CT)",
        "tolerance_frac": tolerance_frac,
    }


def _fit(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask).astype(bool)
    if mask.shape == tuple(shape):
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * mask.shape[1] / shape[1]).astype(int)
    return mask[np.ix_(rows, cols)]


def argmax_location(heatmap: np.ndarray) -> tuple[int, int]:
    """(row, col) of the heat map's maximum (first in row-major order among ties)."""
    h = np.asarray(heatmap)
    r, c = np.unravel_index(int(np.argmax(h)), h.shape)
    return int(r), int(c)


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance_px: int | None = None) -> bool:
    """True when the heat map's maximum falls inside the (dilated) mask."""
    h = np.asarray(heatmap, dtype=np.float64)
    m = _fit(mask, h.shape)
    tol = round(DEFAULT_TOLERANCE_FRAC * max(h.shape)) if tolerance_px is None else int(tolerance_px)
    if tol > 0 and m.any():
        m = ndimage.binary_dilation(m, structure=np.ones((2 * tol + 1, 2 * tol + 1), bool))
    r, c = argmax_location(h)
    return bool(m[r, c])


def threshold_map(heatmap: np.ndarray, rule: str = DEFAULT_RULE) -> np.ndarray:
    """Boolean region of a heat map under a declared rule ("rel:X" or "top:Q")."""
    h = np.asarray(heatmap, dtype=np.float64)
    kind, _, value = rule.partition(":")
    x = float(value)
    if kind == "rel":
        top = h.max()
        return h >= x * top if top > 0 else np.zeros(h.shape, bool)
    if kind == "top":
        k = max(1, int(round(x * h.size)))
        cut = np.partition(h.ravel(), h.size - k)[h.size - k]
        return h >= cut
    raise ValueError(f"unknown threshold rule {rule!r}; use 'rel:X' or 'top:Q'")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def mask_iou(heatmap: np.ndarray, mask: np.ndarray, rule: str = DEFAULT_RULE) -> float:
    """IoU of the thresholded heat map with the ground-truth mask."""
    region = threshold_map(heatmap, rule)
    return iou(region, _fit(mask, region.shape))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (NaN when either is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.shape} vs {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def map_agreement(a: np.ndarray, b: np.ndarray, rule: str = DEFAULT_RULE) -> dict:
    """Teacher-student agreement of two heat maps on the same target."""
    return {"pearson": pearson(a, b), "iou": iou(threshold_map(a, rule), threshold_map(b, rule))}


def heatmap_summary(heatmap: np.ndarray, mask: np.ndarray | None, rule: str = DEFAULT_RULE) -> dict:
    """Per-case record: argmax (row, col as fractions of the side), pointing hit and IoU (None without a mask)."""
    h = np.asarray(heatmap)
    r, c = argmax_location(h)
    has_mask = mask is not None and np.asarray(mask).any()
    return {
        "argmax": [round(r / h.shape[0], 4), round(c / h.shape[1], 4)],
        "hit": pointing_hit(h, mask) if has_mask else None,
        "iou": mask_iou(h, mask, rule) if has_mask else None,
    }
