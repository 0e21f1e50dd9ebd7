"""Counterfactual intensity swap: histogram matching and flip counting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_training import tiny_checkpoint

from model.data.sources import Sample
from model.evaluate.counterfactual import intensity_swap, is_abnormal_sample, match_histogram
from model.types import FINDINGS, TUMOUR_CLASSES, Prediction, Study

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_match_histogram_takes_the_template_values_and_keeps_ranks():
    rng = np.random.default_rng(0)
    src = rng.random((20, 30)).astype(np.float32) * 0.3  # dark
    tmpl = 0.5 + 0.5 * rng.random((20, 30)).astype(np.float32)  # bright, same size
    out = match_histogram(src, tmpl)
    np.testing.assert_allclose(np.sort(out.ravel()), np.sort(tmpl.ravel()), atol=1e-6)
    order = np.argsort(src.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-7)  # rank order kept: anatomy unchanged
    other = match_histogram(src, tmpl[:7, :11])  # sizes may differ
    assert other.shape == src.shape
    assert np.quantile(other, 0.5) == pytest.approx(np.quantile(tmpl[:7, :11], 0.5), abs=0.05)


def _ct_sample(i: int, tumour: int) -> Sample:
    return Sample(
        id=f"ct{i}", split="test", modality="CT", source="toy", image_path=None, tumour_target=tumour
    )


def _toy_study(sample) -> Study:
    """Tumour slices: dark with a bright blob; normal slices: bright everywhere, no blob."""
    rng = np.random.default_rng(int(sample.id[2:]))
    abnormal = sample.tumour_target > 0
    px = (0.1 if abnormal else 0.5) + 0.1 * rng.random((32, 32))
    if abnormal:
        px[10:16, 10:16] = 0.95
    return Study(pixels=px.astype(np.float32), modality="CT", source=sample.id)


def _fake_predict(rule):
    def predict(_predictor, studies, contexts, _bs):
        out = []
        for st in studies:
            p_tumour = rule(st.pixels)
            probs = dict(zip(TUMOUR_CLASSES, (1 - p_tumour, 0.0, p_tumour), strict=True))
            out.append(
                Prediction("m", "CT", dict.fromkeys(FINDINGS, 0.0), probs, [], "", [], [], {}, 0.0, False)
            )
        return out

    return predict


def _compact_bright_spot(px: np.ndarray) -> float:
    """1.0 when the 36 brightest pixels fit in an 8x8 box (a rank-only rule: no absolute level)."""
    rows, cols = np.divmod(np.argsort(px.ravel(), kind="stable")[-36:], px.shape[1])
    return float((np.ptp(rows) + 1) * (np.ptp(cols) + 1) <= 64)


def test_brightness_reader_flips_and_lesion_reader_does_not():
    samples = [_ct_sample(i, 2 if i % 3 else 0) for i in range(30)]
    brightness = _fake_predict(lambda px: float(px.mean() < 0.3))  # "dark film = cancer"
    lesion = _fake_predict(_compact_bright_spot)  # "a compact group of the brightest pixels = lesion"
    r = intensity_swap({"shortcut": None}, samples, _toy_study, predict=brightness, seed=1)
    assert r["n_normal"] == 10 and r["n_abnormal"] == 20 and r["head"] == "tumour"
    block = r["models"]["shortcut"]["normal_to_abnormal"]
    assert block["positive_before"] == 0.0 and block["to_other_class"] == 1.0 and block["flip_rate"] == 1.0
    assert r["models"]["shortcut"]["abnormal_to_normal"]["flip_rate"] == 1.0
    r = intensity_swap({"reader": None}, samples, _toy_study, predict=lesion, seed=1)
    assert r["models"]["reader"]["normal_to_abnormal"]["flip_rate"] == 0.0
    assert r["models"]["reader"]["abnormal_to_normal"]["flip_rate"] == 0.0


def test_labels_and_skip():
    assert is_abnormal_sample(_ct_sample(0, 0)) is False and is_abnormal_sample(_ct_sample(0, 1)) is True
    cxr = Sample(id="x", split="test", modality="CXR", source="t", image_path=None)
    assert is_abnormal_sample(cxr) is None  # unknown findings: neither group
    only_normal = [_ct_sample(i, 0) for i in range(3)]
    assert "skipped" in intensity_swap(
        {"m": None}, only_normal, _toy_study, predict=_fake_predict(lambda px: 0.0)
    )


def tiny_predictor(tmp_path):
    """A random-weight tiny checkpoint, loaded the way the evaluation loads models."""
    from model.inference import Predictor
    from model.networks import build_tokenizer

    tok = build_tokenizer(["no nodule or mass.", "a spiculated mass in the right lower lobe."])
    return Predictor.from_dir(tiny_checkpoint(tmp_path / "tiny", tok, "tiny-student", "tiny"), "tiny")


@pytest.mark.skipif(not (SHARED / "chest_ct").is_dir(), reason="../shared/data/chest_ct not present")
def test_real_ct_swap_runs_on_a_tiny_model(tmp_path):
    from model.data.sources import ClassFolderSource
    from model.evaluate.run import load_sample_study

    samples = ClassFolderSource(SHARED / "chest_ct").samples("test")
    r = intensity_swap({"tiny": tiny_predictor(tmp_path)}, samples, load_sample_study, limit=3)
    block = r["models"]["tiny"]["normal_to_abnormal"]
    assert block["n"] == r["n_normal"] == 3 and 0.0 <= block["flip_rate"] <= 1.0
