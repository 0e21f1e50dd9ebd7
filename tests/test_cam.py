"""Our class activation maps (model/explain/cam.py) against pytorch-grad-cam's on a tiny model.

The library stays a test dependency for exactly this comparison: the serving path no longer imports it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_training import tiny_model

from model.explain.cam import CAM_FUNCTIONS, activations_and_gradients, class_activation_map, normalise
from model.explain.gradcam import (
    LogitTarget,
    SentenceTarget,
    _ScoreModule,
    _sequence,
    explain,
    is_flat,
    sentence_spans,
)
from model.types import FINDINGS, PatientContext, Study

torch.set_num_threads(1)
TOKENS = ["the", "heart", "is", "enlarged", ".", "the", "lungs", "are", "clear", "."]


class _Tiny:
    """What model.explain needs from a predictor: .model and .tokenizer (no lock any more)."""

    def __init__(self, seed: int = 0, preset: str = "tiny-student"):
        from model.networks import build_tokenizer

        self.tokenizer = build_tokenizer(["The heart is enlarged. The lungs are clear."])
        self.model = tiny_model(preset, len(self.tokenizer), seed=seed)[0].eval()

    def predict(self, *a, **k):  # pragma: no cover - tokens are always given here
        raise AssertionError("tokens are passed explicitly")


def _images(seed: int, size: int = 48) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    px = rng.random((size, size), dtype=np.float32) * 0.2
    y, x = rng.integers(6, size - 14, 2)
    px[y : y + 10, x : x + 10] = 1.0
    return torch.from_numpy(px)[None, None]


def _wrapper_and_target(pred: _Tiny, kind: str, layer: str):
    ctx = torch.from_numpy(PatientContext().to_vector())[None]
    if kind == "finding":
        return _ScoreModule(pred.model, "findings", ctx, layer=layer), LogitTarget(FINDINGS.index("nodule"))
    study = Study(pixels=np.zeros((48, 48), np.float32), modality="CXR")
    ids, positions = _sequence(pred, study, TOKENS, "standard")
    a, b = sentence_spans(TOKENS)[1]
    return _ScoreModule(pred.model, "tokens", ctx, ids, positions, layer=layer), SentenceTarget(a, b)


def _library_map(method: str, wrapper, target, images) -> np.ndarray:
    pytest.importorskip("pytorch_grad_cam", reason="grad-cam is a test extra (pip install -e .[test])")
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM,
               "layercam": LayerCAM, "eigencam": EigenCAM}  # fmt: skip
    with classes[method](model=wrapper, target_layers=[wrapper.tap]) as cam:
        return cam(input_tensor=images, targets=[target])[0]


@pytest.mark.parametrize("method", sorted(CAM_FUNCTIONS))
@pytest.mark.parametrize(("kind", "layer", "seed"), [("finding", "blocks.3", 0), ("finding", "blocks.2", 1),
                                                     ("sentence", "blocks.3", 3)])  # fmt: skip
def test_maps_match_pytorch_grad_cam(method, kind, layer, seed):
    pred = _Tiny(seed)
    wrapper, target = _wrapper_and_target(pred, kind, layer)
    images = _images(seed)
    expected = _library_map(method, wrapper, target, images)  # (S, S)
    pred.model.zero_grad(set_to_none=True)  # the library's backward wrote .grad; ours must not
    acts, grads, _ = activations_and_gradients(wrapper, wrapper.tap, images, target, method != "eigencam")
    ours = class_activation_map(method, acts, grads, (48, 48))[0]
    assert ours.shape == expected.shape == (48, 48)
    assert expected.max() > 0.9, "the comparison needs a map with a peak, not a flat one"
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert all(p.grad is None for p in pred.model.parameters())


def test_explain_leaves_no_parameter_gradient_and_no_hook():
    pred = _Tiny(3)
    study = Study(pixels=_images(3)[0, 0].numpy(), modality="CXR", sha256="x")
    exp = explain(pred, study, "sentence:0", tokens=TOKENS)
    assert exp.heatmap.shape == (48, 48) and np.isfinite(exp.score)
    assert all(p.grad is None for p in pred.model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in pred.model.modules())
    assert not pred.model.training


def test_flat_maps_are_flagged():
    # uniform evidence: the min subtraction removes it, the map peaks at 0 -> flat
    acts = torch.ones(1, 4, 3, 3)
    grads = torch.full((1, 4, 3, 3), 0.5)
    for method in ("gradcam", "hirescam", "layercam"):
        assert is_flat(class_activation_map(method, acts, grads, (12, 12))[0])
    # negative evidence only: ReLU leaves zeros -> flat
    assert is_flat(class_activation_map("gradcam", acts, -grads, (12, 12))[0])
    # one positive cell: the map peaks at 1 near it, not flat
    grads = torch.zeros(1, 4, 3, 3)
    grads[0, :, 2, 0] = 1.0
    heat = class_activation_map("hirescam", acts, grads, (12, 12))[0]
    assert not is_flat(heat) and heat.max() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(heat.argmax(), heat.shape)[0] >= 8  # bottom-left cell
    # a score that ignores the layer: no gradient reaches it, the map is zero and flagged
    pred = _Tiny(4)
    with torch.no_grad():
        for p in pred.model.heads.parameters():
            p.zero_()
    study = Study(pixels=_images(4)[0, 0].numpy(), modality="CXR", sha256="y")
    exp = explain(pred, study, "finding:nodule")
    assert exp.flat and float(exp.heatmap.max()) == 0.0


def test_normalise_golden():
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    np.testing.assert_allclose(normalise(m).numpy(), [[[0.0, 0.5], [0.25, 1.0]]], atol=1e-6)
    with pytest.raises(ValueError):
        class_activation_map("magic", torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), (4, 4))
