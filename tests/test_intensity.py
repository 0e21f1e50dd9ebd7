"""model.data.intensity: the pure window steps (golden values, presets, the percentile window)."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.errors import ImageLoadError
from model.data.intensity import WINDOW_PRESETS, auto_window, resolve_window, window_pixels


def test_window_pixels_golden_values():
    raw = np.asarray([-1000.0, 49.5, 50.0, 224.0, 1000.0], np.float32)
    out = window_pixels(raw, 50.0, 350.0)
    np.testing.assert_allclose(out, [0.0, 0.5, 0.5 + 0.5 / 349.0, 0.5 + 174.5 / 349.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(window_pixels(raw, 50.0, 350.0, invert=True), 1.0 - out)


def test_window_pixels_tiny_width_is_a_plain_ramp_and_nan_is_black():
    raw = np.asarray([0.0, 0.25, 0.5, np.nan], np.float32)
    np.testing.assert_allclose(window_pixels(raw, 0.25, 0.5), [0.0, 0.5, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("name", list(WINDOW_PRESETS))
def test_resolve_window_presets_and_spellings(name):
    assert resolve_window(name) == WINDOW_PRESETS[name]
    assert resolve_window(" " + name.upper().replace("_", " ") + " ") == WINDOW_PRESETS[name]


def test_resolve_window_rejects_bad_windows_with_a_sentence():
    for bad, phrase in [("brain-ish", "Unknown window preset"), ((0.0, 0.0), "positive"), ("x1", "Unknown"),
                        ((1.0,), r"preset name or \(centre, width\)"), ((0.0, float("inf")), "finite")]:  # fmt: skip
        with pytest.raises(ImageLoadError, match=phrase):
            resolve_window(bad)
    with pytest.raises(ImageLoadError, match="Unknown window preset"):
        resolve_window("auto")  # "auto" needs raw values


def test_auto_window_spans_the_percentiles_and_survives_flat_and_empty_input():
    raw = np.arange(1001, dtype=np.float32)  # 0..1000: 0.5-99.5 percentiles = 5..995
    centre, width = resolve_window("auto", raw)
    assert (centre, width) == pytest.approx((500.0, 990.0))
    assert auto_window(np.full((4, 4), 7.0)) == pytest.approx((7.0, 1e-6))
    assert auto_window(np.asarray([np.nan, np.inf])) == (0.0, 1.0)
