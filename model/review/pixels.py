"""Reviewed images on disk: 16-bit PNGs named by the sha256 of their pixels.

A study's de-identified float pixels in [0, 1] are stored as 16-bit values (``round(p * 65535)``): the
exact values a stored image decodes back to. Their sha256 (of those values as float32, C order) names the
file, so the same image saved twice is one file, and any copy of the pixels (the page's study, a reloaded
PNG, an exported image) gives the same name. The PNG carries no text chunk: no name, no header field.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from model.data.limits import MAX_PIXELS

#: Largest value of a stored pixel (16-bit PNG).
PIXEL_SCALE = 65535
#: Smallest side of an image worth reviewing.
MIN_SIDE = 8
#: Values this far outside [0, 1] are rounding noise and are clipped; further out is refused.
RANGE_TOLERANCE = 1e-4


def check_pixels(pixels: np.ndarray) -> str | None:
    """Why ``pixels`` cannot be stored (a sentence), or None when they can."""
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        return f"the image must be one grey-level H x W array, got shape {arr.shape}"
    if min(arr.shape) < MIN_SIDE:
        return (
            f"the image is {arr.shape[0]} x {arr.shape[1]} pixels; at least {MIN_SIDE} x {MIN_SIDE} is needed"
        )
    if arr.size > MAX_PIXELS:
        return f"the image has {arr.size} pixels, over the limit of {MAX_PIXELS}"
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        return f"the image must hold numbers, got {arr.dtype}"
    if not np.isfinite(arr).all():
        return "the image has NaN or infinite pixels"
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        return f"pixels must be de-identified values in [0, 1] (got {lo:.3g} .. {hi:.3g})"
    return None


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] -> the 16-bit values a stored image holds."""
    arr = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    return np.rint(arr * PIXEL_SCALE).astype(np.uint16)


def from_uint16(values: np.ndarray) -> np.ndarray:
    """Stored 16-bit values -> float32 pixels in [0, 1]."""
    return (np.asarray(values, dtype=np.float32) / np.float32(PIXEL_SCALE)).astype(np.float32)


def pixel_sha256(pixels: np.ndarray) -> str:
    """The content address of an image: sha256 of its stored values as float32, C order."""
    stored = from_uint16(to_uint16(pixels))
    return hashlib.sha256(np.ascontiguousarray(stored).tobytes()).hexdigest()


def image_path(images_dir: Path, sha256: str) -> Path:
    return Path(images_dir) / f"{sha256}.png"


def write_png(images_dir: Path, pixels: np.ndarray, sha256: str) -> Path:
    """Write the image once (atomic: a temporary file, fsync, rename); an existing file is kept."""
    from PIL import Image

    path = image_path(images_dir, sha256)
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=images_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(to_uint16(pixels)).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(images_dir)
    return path


def read_png(path: Path) -> np.ndarray:
    """A stored image -> float32 pixels in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        return from_uint16(np.asarray(img))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
