"""Grad-CAM targets and overlay, per-token divergence (model/explain)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from tiny_training import tiny_model

from model.explain.divergence import (
    align_distributions,
    js_divergence,
    next_token_distributions,
    soften,
    token_divergence,
)
from model.explain.gradcam import explain, list_targets, overlay, sentence_spans, sentence_texts
from model.types import PatientContext, Prediction, Study

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------------------
# A tiny random-weight ReportModel behind a minimal Predictor-shaped wrapper (docs/interfaces.md)

TOKENS = ["the", "heart", "is", "enlarged", ".", "the", "lungs", "are", "clear", "."]


def _tokenizer():
    from model.networks import build_tokenizer

    return build_tokenizer(["The heart is enlarged. The lungs are clear. Small left effusion."])


class _TinyPredictor:
    """Just what model.explain needs: .model, .tokenizer, .lock, teacher_forced_probs, predict."""

    def __init__(self, seed: int = 0, preset: str = "tiny-student"):
        self.tokenizer = _tokenizer()
        self.model = tiny_model(preset, len(self.tokenizer), seed=seed)[0].eval()
        self.lock = threading.Lock()

    def _inputs(self, study, context):
        from model.data.imaging import to_model_input

        x = torch.from_numpy(to_model_input(study.pixels, self.model.cfg.image_size))[None, None]
        return x, torch.from_numpy((context or PatientContext()).to_vector())[None]

    def teacher_forced_probs(self, study, tokens, context, detail):
        from model.networks import encode_report

        ids, plen = encode_report(self.tokenizer, list(tokens), detail, study.modality)
        x, ctx = self._inputs(study, context)
        with torch.no_grad(), self.lock:
            out = self.model(x, ctx, torch.tensor([ids]))
        return out.lm_logits[0, plen - 1 : plen - 1 + len(tokens)].softmax(-1).numpy()

    def predict(self, study, context=None, style=None):
        return Prediction(
            "tiny", study.modality, {}, {}, [], " ".join(TOKENS), TOKENS, [1.0] * 10, {}, 0.0, False
        )


def _study(seed: int, size: int = 48) -> Study:
    rng = np.random.default_rng(seed)
    px = np.zeros((size, size), np.float32)
    y, x = rng.integers(8, size - 8, 2)
    px[y - 6 : y + 6, x - 6 : x + 6] = 1.0
    px += rng.random((size, size), dtype=np.float32) * 0.1
    return Study(pixels=np.clip(px, 0, 1), modality="CXR", sha256=str(seed))


# ----------------------------------------------------------------------------------------------
# Grad-CAM


@pytest.mark.parametrize(
    "target", ["finding:cardiomegaly", "finding:nodule", "tumour:malignant", "sentence:0", "sentence:1"]
)
def test_heatmap_shape_range_and_score(target):
    pred, study = _TinyPredictor(), _study(1)
    exp = explain(pred, study, target, tokens=TOKENS)
    assert exp.heatmap.shape == study.pixels.shape
    assert exp.heatmap.dtype == np.float32
    assert 0.0 <= exp.heatmap.min() and exp.heatmap.max() <= 1.0
    assert np.isfinite(exp.score)
    assert exp.target == target
    if target.startswith("sentence"):
        assert exp.score <= 0.0  # a sum of log-probabilities


def test_sentence_target_generates_tokens_when_missing():
    exp = explain(_TinyPredictor(), _study(2), "sentence:1")
    assert exp.heatmap.shape == (48, 48)


def test_gradcam_plus_plus_and_bad_targets():
    pred, study = _TinyPredictor(), _study(3)
    assert explain(pred, study, "finding:edema", method="gradcam++").heatmap.shape == (48, 48)
    for bad in ["finding:unicorn", "tumour:huge", "sentence:9", "nonsense"]:
        with pytest.raises(ValueError):
            explain(pred, study, bad, tokens=TOKENS)
    with pytest.raises(ValueError):
        explain(pred, study, "finding:edema", method="magic")


def test_different_targets_give_different_maps():
    pred, study = _TinyPredictor(), _study(4)
    a = explain(pred, study, "finding:cardiomegaly").heatmap
    b = explain(pred, study, "sentence:0", tokens=TOKENS).heatmap
    assert not np.allclose(a, b)


def test_concurrent_cams_do_not_cross_talk():
    """Two threads, two images, one shared model: each result equals the sequential one."""
    pred = _TinyPredictor()
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


def test_cam_hooks_only_its_own_tap_and_keeps_eval_mode(monkeypatch):
    """Hooks go on a per-call tap, never on a module of the shared model, and are all released."""
    pred = _TinyPredictor()
    shared = {id(m) for m in pred.model.modules()}
    hooked = []
    register = torch.nn.Module.register_forward_hook

    def spy(module, *args, **kwargs):
        hooked.append(module)
        return register(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "register_forward_hook", spy)
    explain(pred, _study(5), "finding:nodule")
    assert hooked, "pytorch-grad-cam registered no hook: the spy no longer sees it"
    assert not [m for m in hooked if id(m) in shared]  # the shared model is never hooked
    assert all(not m._forward_hooks for m in hooked)  # released after the call
    assert not any(m._forward_hooks or m._backward_hooks for m in pred.model.modules())
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
    assert sentence_spans(TOKENS) == [(0, 5), (5, 10)]
    assert sentence_spans(["no", "end"]) == [(0, 2)]
    assert sentence_texts(TOKENS) == ["the heart is enlarged.", "the lungs are clear."]
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
    same = token_divergence(_TinyPredictor(0), _TinyPredictor(0), study, TOKENS)
    assert same.tokens == TOKENS and same.divergence.shape == (10,)
    np.testing.assert_allclose(same.divergence, 0.0, atol=1e-6)
    diff = token_divergence(_TinyPredictor(0), _TinyPredictor(1), study, TOKENS)
    assert (diff.divergence > 0).all() and (diff.divergence <= 1).all()
    assert len(diff.teacher_top) == 10 and 0 <= diff.student_prob.min()
    nt = next_token_distributions(_TinyPredictor(0), _TinyPredictor(1), study, TOKENS, 3, temperature=4.0)
    assert nt.teacher.shape == (len(_tokenizer().get_vocab()),) and nt.teacher.sum() == pytest.approx(1.0)
    assert nt.kl_teacher_student >= 0 and 0 <= nt.divergence <= 1


# ----------------------------------------------------------------------------------------------
# With the real Predictor (model.inference) on tiny checkpoints


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    from model.demo import build_demo_checkpoints
    from model.inference import Predictor

    dirs = build_demo_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return {m: Predictor.from_dir(d, m) for m, d in dirs.items()}


def test_real_predictor_targets_and_sentences(predictors):
    p = predictors["teacher"]
    study = _study(20, size=64)
    pred = p.predict(study)
    for target in ("finding:pneumothorax", "tumour:benign", "sentence:0"):
        exp = explain(p, study, target, tokens=pred.tokens)
        assert exp.heatmap.shape == (64, 64) and 0 <= exp.heatmap.min() <= exp.heatmap.max() <= 1
    assert all(q.grad is None for q in p.model.parameters())  # no gradients left on the shared model


def test_cam_unaffected_by_concurrent_predict_on_the_shared_model(predictors):
    """predict() does not take the lock; CAM hooks sit on a per-call tap, so it cannot pollute them."""
    p = predictors["student"]
    a, b = _study(30, size=64), _study(31, size=64)
    want = explain(p, a, "finding:nodule").heatmap
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            p.predict(b)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        got = [explain(p, a, "finding:nodule").heatmap for _ in range(5)]
    finally:
        stop.set()
        t.join()
    for h in got:
        np.testing.assert_allclose(h, want, atol=1e-6)


def test_real_divergence_between_teacher_and_student(predictors):
    study = _study(40, size=64)
    tokens = predictors["student"].predict(study).tokens[:12]
    d = token_divergence(predictors["teacher"], predictors["student"], study, tokens)
    assert d.divergence.shape == (len(tokens),) and (d.divergence >= 0).all() and (d.divergence <= 1).all()


# ----------------------------------------------------------------------------------------------
# CAM layers and flat maps (issue 10)


@pytest.mark.parametrize("preset,norm", [("tiny-teacher", "none"), ("tiny-teacher", "per_image"),
                                         ("resnet50-4l", "none"), ("mobilenet-1l", "none")])  # fmt: skip
def test_trunk_split_at_every_cam_layer_reproduces_the_features(preset, norm):
    """before(x) -> after(...) equals forward_features(x) at every CAM layer a trunk offers."""
    from model.explain.gradcam import _split_trunk, cam_layers, default_cam_layer
    from model.networks import ALL_PRESETS, build_model

    torch.manual_seed(0)
    cfg = dataclasses.replace(ALL_PRESETS[preset], image_size=64, input_norm=norm)
    model = build_model(cfg).eval()
    x = torch.rand(2, 1, 64, 64)
    layers = cam_layers(model)
    assert default_cam_layer(model) in layers and len(layers) == 2
    with torch.no_grad():
        want = model.forward_features(x)
        for layer, stride in layers.items():
            before, after = _split_trunk(model, layer)
            mid = before(x)
            assert mid.shape[-1] == 64 // stride  # the stage really has the declared stride
            torch.testing.assert_close(after(mid), want)
    with pytest.raises(ValueError):
        _split_trunk(model, "layer9")


def test_cam_layer_choice_changes_the_map_and_is_recorded():
    pred, study = _TinyPredictor(preset="tiny-teacher"), _study(6)
    a = explain(pred, study, "finding:nodule", layer="blocks.3")
    b = explain(pred, study, "finding:nodule", layer="blocks.2")
    assert (a.layer, b.layer) == ("blocks.3", "blocks.2")
    assert a.heatmap.shape == b.heatmap.shape == study.pixels.shape
    assert not np.allclose(a.heatmap, b.heatmap)
    assert explain(pred, study, "finding:nodule").layer == "blocks.3"  # the tiny trunk's default
    with pytest.raises(ValueError):
        explain(pred, study, "finding:nodule", layer="layer3")  # a ResNet layer on a tiny trunk


def test_flat_maps_are_flagged_and_zero():
    from model.explain.gradcam import is_flat

    assert is_flat(np.zeros((4, 4)))  # no positive evidence (or uniform, removed by min subtraction)
    assert is_flat(np.full((4, 4), 0.3))  # raw range at pytorch-grad-cam's 1e-7 epsilon: not a location
    assert is_flat(np.array([[np.nan, 1.0]]))
    peak = np.zeros((4, 4))
    peak[1, 2] = 1.0
    assert not is_flat(peak)
    # a target whose logit does not depend on the image at all gives a flat map: zero its head weights
    pred, study = _TinyPredictor(), _study(7)
    with torch.no_grad():
        for p in pred.model.heads.parameters():
            p.zero_()
    exp = explain(pred, study, "finding:nodule")
    assert exp.flat and float(exp.heatmap.max()) == 0.0


class _SumHeads(torch.nn.Module):
    """Every logit = the sum of the pooled features: d(score)/d(feature) is the same positive number
    everywhere, so a correct Grad-CAM is the (ReLU'd) feature map itself."""

    def forward(self, pooled, context, head_in=None, lesion_logits=None):
        from model.networks import HeadOutput

        s = pooled.sum(1, keepdim=True)  # (B, 1)
        return HeadOutput(s.expand(-1, 7), s.expand(-1, 3), s.expand(-1, 3), s.expand(-1, 7), pooled)


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
@pytest.mark.parametrize("corner", [(8, 8), (8, 44), (44, 20)])
def test_golden_localisation_a_bright_square_is_where_the_map_peaks(method, corner):
    """A model whose answer is known: positive all-ones convolutions (BatchNorm = identity) make features
    that are positive only where the image is brighter than the normaliser's mean, and the heads sum them.
    The map must peak inside the one bright square, wherever it is, and be ~0 far from it."""
    from model.explain.gradcam import explain
    from model.networks import TINY_PRESETS, build_model

    pred = _TinyPredictor()
    pred.model = build_model(
        dataclasses.replace(TINY_PRESETS["tiny-student"], vocab_size=len(pred.tokenizer), image_size=64)
    ).eval()
    with torch.no_grad():
        for m in pred.model.encoder.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())  # average of the inputs
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()
    pred.model.heads = _SumHeads()
    px = np.zeros((64, 64), np.float32)
    y, x = corner
    px[y : y + 12, x : x + 12] = 1.0
    study = Study(pixels=px, modality="CXR", sha256="golden")
    heat = explain(pred, study, "finding:nodule", method, layer="blocks.2")  # stride 8: an 8 x 8 grid
    hy, hx = np.unravel_index(np.argmax(heat.heatmap), heat.heatmap.shape)
    assert y - 4 <= hy < y + 16 and x - 4 <= hx < x + 16, (corner, (hy, hx))  # a CAM cell is 8 px
    far = np.ones_like(px, bool)
    far[max(0, y - 16) : y + 28, max(0, x - 16) : x + 28] = False
    assert heat.heatmap[far].max() < 0.05 and not heat.flat
