"""Intensity steps shared by the DICOM reader and re-windowing: small pure functions (MONAI-style).

raw values (modality LUT output, HU on CT) -> window (a preset, the file's, or percentiles)
-> linear window to [0, 1] (optionally inverted for MONOCHROME1).
"""

from __future__ import annotations

import numpy as np

from model.data.errors import ImageLoadError

#: (centre, width) in Hounsfield units for CT.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "soft_tissue": (40.0, 400.0),
}
DEFAULT_CT_WINDOW = "lung"  # see module docstring
AUTO_WINDOW = "auto"  # apply_window name for the percentile window
AUTO_PERCENTILES = (0.5, 99.5)


def resolve_window(window: str | tuple[float, float], raw: np.ndarray | None = None) -> tuple[float, float]:
    """A preset name, "auto" (needs raw) or (centre, width) -> validated (centre, width)."""
    if isinstance(window, str):
        key = window.strip().lower().replace(" ", "_")
        if key == AUTO_WINDOW and raw is not None:
            return auto_window(raw)
        if key not in WINDOW_PRESETS:
            names = ", ".join([*WINDOW_PRESETS, AUTO_WINDOW])
            raise ImageLoadError(f"Unknown window preset '{window}'. Choose one of: {names}.")
        return WINDOW_PRESETS[key]
    try:
        centre, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ImageLoadError(f"A window is a preset name or (centre, width), not '{window}'.") from None
    if not (np.isfinite(centre) and np.isfinite(width) and width > 0):
        raise ImageLoadError(f"Window width must be positive and finite, got centre {centre}, width {width}.")
    return centre, width


def auto_window(raw: np.ndarray) -> tuple[float, float]:
    """(centre, width) spanning the 0.5-99.5 percentiles: a robust default when the file names none."""
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, AUTO_PERCENTILES))
    if hi <= lo:  # flat image
        lo, hi = float(finite.min()), float(finite.max())
    width = max(hi - lo, 1e-6)
    return lo + width / 2.0, width


def window_pixels(raw: np.ndarray, centre: float, width: float, invert: bool = False) -> np.ndarray:
    """Linear window (DICOM PS3.3 C.11.2.1.2.1) of raw values to float32 [0, 1]; optional inversion."""
    if width > 1.0:  # the standard's LINEAR form, with its half-unit offsets
        out = ((raw - (centre - 0.5)) / (width - 1.0)) + 0.5
    else:  # tiny widths (e.g. auto on [0, 1] data): plain linear ramp
        out = (raw - (centre - width / 2.0)) / width
    out = np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)
    return 1.0 - out if invert else out
