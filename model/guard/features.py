"""What the guard's classifier sees of a Study: a small square image plus a few statistics.

The image goes through the same resize rule as the models (``imaging.to_model_input``), so train and serve
agree. The statistics carry what that small grayscale square loses: colour (recorded by the loader before
its grayscale conversion), the source's size and aspect ratio, and how many grey levels it uses (drawings,
documents and flat fields use few).
"""

from __future__ import annotations

import numpy as np

from model.types import Study

#: names of the statistics, in the order of the feature vector
STAT_NAMES: tuple[str, ...] = (
    "colourfulness",  # Hasler-Suesstrunk / 100 (0 for gray sources)
    "colour_source",  # 1 when the file was colour (RGB, palette, YBR), before any conversion
    "log_aspect",  # log(width / height), clipped to [-3, 3]
    "log_min_side",  # log10(min(H, W)) / 3
    "log_max_side",  # log10(max(H, W)) / 3
    "mean",  # pixel mean
    "std",  # pixel standard deviation
    "dark_frac",  # fraction of pixels < 0.02
    "bright_frac",  # fraction of pixels > 0.98
    "entropy",  # entropy of a 64-bin histogram / log(64)
    "levels",  # distinct 8-bit levels / 256
    "edge",  # mean absolute gradient of the input square (x 2)
)
N_STATS = len(STAT_NAMES)


def guard_image(study: Study, size: int) -> np.ndarray:
    """(size, size) float32 [0, 1]: the classifier's view, by the models' own resize rule."""
    from model.data.imaging import to_model_input

    return to_model_input(study.pixels, size)


def guard_stats(study: Study, image: np.ndarray | None = None, size: int = 64) -> np.ndarray:
    """(N_STATS,) float32 statistics of a study (see STAT_NAMES)."""
    px = np.asarray(study.pixels, dtype=np.float32)
    h, w = px.shape
    stats = study.image_stats or {}
    h = float(stats.get("height", h))
    w = float(stats.get("width", w))
    sample = px[:: _stride(px.shape[0]), :: _stride(px.shape[1])]  # about 256 x 256 samples at most
    sample = np.nan_to_num(sample, nan=0.0)
    # = np.histogram(sample, 64, (0, 1)) and len(np.unique(round(255 v))), by bincount (faster; exact,
    # since v * 64 is exact in binary floating point)
    flat = np.clip(sample.ravel(), 0.0, 1.0)
    hist = np.bincount(np.minimum((flat * 64).astype(np.int64), 63), minlength=64)
    p = hist / max(1, hist.sum())
    entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum() / np.log(64))
    levels = np.count_nonzero(np.bincount(np.round(flat * 255).astype(np.int64), minlength=256)) / 256.0
    img = guard_image(study, size) if image is None else image
    edge = float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean()) * 2.0
    v = [
        float(stats.get("colourfulness", 0.0)) / 100.0,
        float(stats.get("colour_source", 0.0)),
        float(np.clip(np.log(max(w, 1.0) / max(h, 1.0)), -3.0, 3.0)),
        float(np.log10(max(1.0, min(h, w)))) / 3.0,
        float(np.log10(max(1.0, max(h, w)))) / 3.0,
        float(sample.mean()),
        float(sample.std()),
        float((sample < 0.02).mean()),
        float((sample > 0.98).mean()),
        entropy,
        levels,
        edge,
    ]
    return np.asarray(v, dtype=np.float32)


def _stride(n: int) -> int:
    """Stride that keeps about 256 samples along an axis of length n."""
    return max(1, n // 256)
