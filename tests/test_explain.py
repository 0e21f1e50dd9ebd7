"""Grad-CAM targets and overlay, per-token divergence (model/explain)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from model.explain.divergence import (
    align_distributions,
    js_divergence,
    next_token_distributions,
    soften,
    token_divergence,
)
from model.explain.gradcam import explain, list_targets, overlay, sentence_spans, sentence_texts
from model.types import CONTEXT_DIM, FINDINGS, TUMOUR_CLASSES, PatientContext, Prediction, Study

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------------------
# A tiny stand-in that honours the Predictor / ReportModel contract (docs/interfaces.md)

VOCAB = [
    "[PAD]",
    "[BOS]",
    "[EOS]",
    "[CXR]",
    "[CT]",
    "[STANDARD]",
    "the",
    "heart",
    "is",
    "large",
    "lungs",
    "clear",
    ".",
]


@dataclass
class _Heads:
    findings_logits: torch.Tensor
    tumour_logits: torch.Tensor


@dataclass
class _Out:
    findings_logits: torch.Tensor
    tumour_logits: torch.Tensor
    lm_logits: torch.Tensor


class _TinyReportModel(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.cam_layer = nn.Conv2d(8, 16, 3, padding=1)
        self.act = nn.ReLU()
        self.findings = nn.Linear(16 + CONTEXT_DIM, len(FINDINGS))
        self.tumour = nn.Linear(16 + CONTEXT_DIM, len(TUMOUR_CLASSES))
        self.embed = nn.Embedding(len(VOCAB), 16)
        self.lm = nn.Linear(16, len(VOCAB))

    def forward_features(self, images):
        return self.act(self.cam_layer(self.stem(images)))  # (B, 16, h, w)

    def forward_heads(self, features, context):
        pooled = torch.cat([features.mean((2, 3)), context], -1)
        return _Heads(self.findings(pooled), self.tumour(pooled))

    def forward(self, images, context, input_ids, attention_mask=None):
        feats = self.forward_features(images)
        heads = self.forward_heads(feats, context)
        # each position attends to the spatial map weighted by its embedding (image-conditioned LM)
        e = self.embed(input_ids)  # (B, L, 16)
        att = torch.einsum("bld,bdhw->blhw", e, feats).flatten(2).softmax(-1)  # (B, L, h*w)
        ctxv = torch.einsum("blp,bdp->bld", att, feats.flatten(2))  # (B, L, 16)
        return _Out(heads.findings_logits, heads.tumour_logits, self.lm(e + ctxv))


class _FakePredictor:
    def __init__(self, seed: int = 0, size: int = 32):
        self.model = _TinyReportModel(seed).eval()
        self.size = size
        self.lock = threading.Lock()
        self.tokenizer = {w: i for i, w in enumerate(VOCAB)}

    def image_tensor(self, study):
        from PIL import Image

        img = Image.fromarray((study.pixels * 255).astype(np.uint8)).resize((self.size, self.size))
        return torch.from_numpy(np.asarray(img, np.float32) / 255.0)[None, None]

    def encode_report(self, tokens, modality, detail):
        prompt = ["[BOS]", f"[{modality}]", f"[{detail.upper()}]"]
        ids = torch.tensor([[self.tokenizer[w] for w in prompt + list(tokens)]])
        return ids, torch.arange(len(prompt), len(prompt) + len(tokens))

    def teacher_forced_probs(self, study, tokens, context, detail):
        ids, pos = self.encode_report(tokens, study.modality, detail)
        ctx = torch.from_numpy((context or PatientContext()).to_vector())[None]
        with torch.no_grad():
            out = self.model(self.image_tensor(study), ctx, ids)
        return out.lm_logits[0, pos - 1].softmax(-1).numpy()

    def predict(self, study, context=None, style=None):
        tokens = ["the", "heart", "is", "large", ".", "lungs", "clear", "."]
        return Prediction(
            "fake", study.modality, {}, {}, [], " ".join(tokens), tokens, [1.0] * 8, {}, 0.0, False
        )


def _study(seed: int, size: int = 48) -> Study:
    rng = np.random.default_rng(seed)
    px = np.zeros((size, size), np.float32)
    y, x = rng.integers(8, size - 8, 2)
    px[y - 6 : y + 6, x - 6 : x + 6] = 1.0
    px += rng.random((size, size), dtype=np.float32) * 0.1
    return Study(pixels=np.clip(px, 0, 1), modality="CXR", sha256=str(seed))


TOKENS = ["the", "heart", "is", "large", ".", "lungs", "clear", "."]

# ----------------------------------------------------------------------------------------------
# Grad-CAM


@pytest.mark.parametrize(
    "target", ["finding:cardiomegaly", "finding:nodule", "tumour:malignant", "sentence:0", "sentence:1"]
)
def test_heatmap_shape_range_and_score(target):
    pred, study = _FakePredictor(), _study(1)
    exp = explain(pred, study, target, tokens=TOKENS)
    assert exp.heatmap.shape == study.pixels.shape
    assert exp.heatmap.dtype == np.float32
    assert 0.0 <= exp.heatmap.min() and exp.heatmap.max() <= 1.0
    assert np.isfinite(exp.score)
    assert exp.target == target
    if target.startswith("sentence"):
        assert exp.score <= 0.0  # a sum of log-probabilities


def test_sentence_target_generates_tokens_when_missing():
    exp = explain(_FakePredictor(), _study(2), "sentence:1")
    assert exp.heatmap.shape == (48, 48)


def test_gradcam_plus_plus_and_bad_targets():
    pred, study = _FakePredictor(), _study(3)
    assert explain(pred, study, "finding:edema", method="gradcam++").heatmap.shape == (48, 48)
    for bad in ["finding:unicorn", "tumour:huge", "sentence:9", "nonsense"]:
        with pytest.raises(ValueError):
            explain(pred, study, bad, tokens=TOKENS)
    with pytest.raises(ValueError):
        explain(pred, study, "finding:edema", method="magic")


def test_different_targets_give_different_maps():
    pred, study = _FakePredictor(), _study(4)
    a = explain(pred, study, "finding:cardiomegaly").heatmap
    b = explain(pred, study, "sentence:0", tokens=TOKENS).heatmap
    assert not np.allclose(a, b)


def test_concurrent_cams_do_not_cross_talk():
    """Two threads, two images, one shared model: each result equals the sequential one."""
    pred = _FakePredictor()
    studies = [_study(10), _study(11)]
    targets = ["finding:nodule", "sentence:0"]
    sequential = [explain(pred, s, t, tokens=TOKENS).heatmap for s, t in zip(studies, targets, strict=True)]
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        for _ in range(4):
            results[i].append(explain(pred, studies[i], targets[i], tokens=TOKENS).heatmap)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for h in results[i]:
            np.testing.assert_allclose(h, sequential[i], atol=1e-6)
    assert not np.allclose(sequential[0], sequential[1])


def test_cam_releases_hooks_and_keeps_eval_mode():
    pred = _FakePredictor()
    explain(pred, _study(5), "finding:nodule")
    assert not pred.model.cam_layer._forward_hooks
    assert not pred.model.training
    with torch.inference_mode():  # callers inside inference mode still get gradients
        assert explain(pred, _study(5), "finding:nodule").heatmap.max() >= 0


def test_overlay_pure_numpy():
    px = np.linspace(0, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    heat = np.zeros((24, 24), np.float32)
    heat[:12] = 1
    rgb = overlay(px, heat, 0.5)
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(overlay(px, heat, 0.0)[..., 0], overlay(px, heat, 0.0)[..., 2])  # grey
    assert rgb[0, 0, 0] > rgb[0, 0, 2]  # hot = red
    assert rgb[-1, -1, 2] >= rgb[-1, -1, 0]  # cold = blue-ish


def test_sentences_and_targets():
    assert sentence_spans(TOKENS) == [(0, 5), (5, 8)]
    assert sentence_spans(["no", "end"]) == [(0, 2)]
    assert sentence_texts(TOKENS) == ["the heart is large.", "lungs clear."]
    assert list_targets("CXR", TOKENS)[-2:] == ["sentence:0", "sentence:1"]
    assert "tumour:benign" in list_targets("CT")


# ----------------------------------------------------------------------------------------------
# Divergence


def test_js_golden_values():
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert js_divergence(p, q) == pytest.approx(1.0)
    assert js_divergence(p, p) == pytest.approx(0.0)
    # JS([.5,.5],[1,0]) = H(m) - (H(p)+H(q))/2 with m = [.75,.25]
    h = lambda x: -sum(v * np.log2(v) for v in x if v > 0)  # noqa: E731
    want = h([0.75, 0.25]) - 0.5 * (h([0.5, 0.5]) + 0)
    assert js_divergence(np.array([0.5, 0.5]), p) == pytest.approx(want)
    assert js_divergence(np.ones((3, 4)) / 4, np.ones((3, 4)) / 4).shape == (3,)


def test_soften():
    p = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(soften(p, 1.0), p)
    assert soften(p, 5.0).max() < p.max()  # flatter
    assert soften(p, 0.1).max() > 0.99  # sharper
    np.testing.assert_allclose(soften(p, 3.0).sum(), 1.0)


def test_align_distributions_across_vocabularies():
    p = np.array([[0.5, 0.5, 0.0]])
    q = np.array([[1.0, 0.0]])
    pa, qa, words = align_distributions(p, {"a": 0, "b": 1, "c": 2}, q, {"b": 0, "a": 1})
    assert words == ["a", "b", "c"]
    np.testing.assert_allclose(pa, [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(qa, [[0.0, 1.0, 0.0]])


def test_token_divergence_same_model_is_zero_and_differs_otherwise():
    study = _study(6)
    same = token_divergence(_FakePredictor(0), _FakePredictor(0), study, TOKENS)
    assert same.tokens == TOKENS and same.divergence.shape == (8,)
    np.testing.assert_allclose(same.divergence, 0.0, atol=1e-6)
    diff = token_divergence(_FakePredictor(0), _FakePredictor(1), study, TOKENS)
    assert (diff.divergence > 0).all() and (diff.divergence <= 1).all()
    assert len(diff.teacher_top) == 8 and 0 <= diff.student_prob.min()
    nt = next_token_distributions(_FakePredictor(0), _FakePredictor(1), study, TOKENS, 3, temperature=4.0)
    assert nt.teacher.shape == (len(VOCAB),) and nt.teacher.sum() == pytest.approx(1.0)
    assert nt.kl_teacher_student >= 0 and 0 <= nt.divergence <= 1
