"""The "lesion" explanation method: the model's own lesion map (``gradcam.lesion_map``), issue 10."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from model.explain.gradcam import CAM_METHODS, LESION_METHOD, explain, lesion_map, methods_for
from model.types import LESION_CHANNELS, Prediction, Study

torch.set_num_threads(1)


class _FixedMap(nn.Module):
    """Stands in for the 1x1 lesion conv: logit ``high`` in one cell of one channel, -8 elsewhere."""

    def __init__(self, channel: str, cell: tuple[int, int], high: float = 6.0):
        super().__init__()
        self.k, self.cell, self.high = LESION_CHANNELS.index(channel), cell, high

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        out = torch.full((b, len(LESION_CHANNELS), h, w), -8.0)
        out[:, self.k, self.cell[0], self.cell[1]] = self.high
        return out + 0 * features[:, :1]  # keeps the graph shape-honest


class _Predictor:
    def __init__(self, head_pool: str = "lesion", tokens=("small", "left", "pleural", "effusion", ".")):
        from model.networks import TINY_PRESETS, build_model, build_tokenizer

        self.tokenizer = build_tokenizer(["Small left pleural effusion. The heart is normal."])
        torch.manual_seed(0)
        cfg = replace(TINY_PRESETS["tiny-teacher"], vocab_size=len(self.tokenizer), head_pool=head_pool)
        self.model = build_model(cfg).eval()
        self.lock = threading.Lock()
        self.tokens = list(tokens)

    def predict(self, study, context=None, style=None):
        return Prediction("tiny", study.modality, {}, {}, [], " ".join(self.tokens), self.tokens,
                          [1.0] * len(self.tokens), {}, 0.0, False)  # fmt: skip


def _study(modality: str = "CXR", size: int = 64) -> Study:
    px = np.random.default_rng(0).random((size, size), dtype=np.float32) * 0.2
    return Study(pixels=px, modality=modality, sha256="x")


def _grid(p: _Predictor, study: Study) -> tuple[int, int]:
    from model.data.imaging import to_model_input

    x = torch.from_numpy(to_model_input(study.pixels, p.model.cfg.image_size))[None, None]
    with torch.no_grad():
        return tuple(p.model.forward_features(x).shape[-2:])


def test_the_map_peaks_where_the_models_lesion_map_does():
    p, study = _Predictor(), _study()
    h, w = _grid(p, study)
    p.model.lesion = _FixedMap("pleural_effusion", (h - 1, 0))  # bottom-left cell
    e = explain(p, study, "finding:pleural_effusion", method=LESION_METHOD)
    assert e.method == LESION_METHOD and not e.flat and e.score > 0.9
    assert e.heatmap.shape == study.pixels.shape and e.heatmap.max() == pytest.approx(1.0, abs=1e-5)
    y, x = np.unravel_index(int(e.heatmap.argmax()), e.heatmap.shape)
    assert y >= study.pixels.shape[0] * (h - 1) / h - 2 and x <= study.pixels.shape[1] / w + 2
    # another finding's channel holds nothing: flat, all zero, peak probability as the score
    other = explain(p, study, "finding:pneumothorax", method=LESION_METHOD)
    assert other.flat and other.heatmap.max() == 0 and other.score < 0.01


def test_tumour_targets_use_the_tumour_channel_and_none_is_flat():
    p, study = _Predictor(), _study("CT")
    p.model.lesion = _FixedMap("tumour", (0, 0))
    for cls in ("benign", "malignant"):
        e = lesion_map(p, study, f"tumour:{cls}")
        assert not e.flat and e.heatmap[0, 0] > 0.9
    assert lesion_map(p, study, "tumour:none").flat


def test_a_sentence_is_mapped_to_the_finding_it_states():
    p, study = (
        _Predictor(tokens=("small", "left", "pleural", "effusion", ".", "the", "heart", "is", "normal", ".")),
        _study(),
    )
    p.model.lesion = _FixedMap("pleural_effusion", (0, 0))
    assert not lesion_map(p, study, "sentence:0").flat  # states an effusion
    assert lesion_map(p, study, "sentence:1").flat  # states no finding
    with pytest.raises(ValueError, match="sentence"):
        lesion_map(p, study, "sentence:5")


def test_a_low_probability_map_is_flat():
    p, study = _Predictor(), _study()
    p.model.lesion = _FixedMap("nodule", (0, 0), high=-4.0)  # sigmoid(-4) = 0.018 < LESION_FLAT_P
    e = lesion_map(p, study, "finding:nodule")
    assert e.flat and not e.heatmap.any()


def test_models_without_a_lesion_head_do_not_offer_it():
    p = _Predictor(head_pool="avg")
    assert LESION_METHOD not in methods_for(p.model)
    assert LESION_METHOD in methods_for(_Predictor().model) and set(methods_for(_Predictor().model)) == set(
        CAM_METHODS
    )
    with pytest.raises(ValueError, match="no lesion map"):
        explain(p, _study(), "finding:nodule", method=LESION_METHOD)


def test_the_untouched_model_gives_a_valid_map():
    p, study = _Predictor(), _study()
    e = explain(p, study, "finding:cardiomegaly", method=LESION_METHOD)
    assert e.heatmap.shape == study.pixels.shape and np.isfinite(e.heatmap).all()
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0


def test_after_a_prediction_the_map_reuses_the_trunk_output(tmp_path, monkeypatch):
    """A real Predictor on a saved lesion-head checkpoint: the map costs the heads only after predict."""
    from model.checkpoints import save_checkpoint
    from model.inference import Predictor

    p = _Predictor()
    d = save_checkpoint(tmp_path / "ckpt", p.model, p.tokenizer, {"model_id": "teacher"}, {})
    pred = Predictor.from_dir(d, "teacher")
    study = _study()
    pred.predict(study)
    calls = []
    trunk = pred.model.forward_features
    monkeypatch.setattr(pred.model, "forward_features", lambda x: calls.append(1) or trunk(x))
    e = explain(pred, study, "finding:nodule", method=LESION_METHOD)
    assert calls == [] and e.heatmap.shape == study.pixels.shape
    explain(pred, _study(size=80), "finding:nodule", method=LESION_METHOD)  # another image: computed
    assert calls == [1]
