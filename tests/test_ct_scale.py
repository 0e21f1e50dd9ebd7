"""CT input scale (``ModelConfig.ct_scale``): a CT study fills a centred share of the model input (issue 10)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.data.imaging import scale_window, to_model_input


def test_to_model_input_centres_a_scaled_image_on_black():
    img = np.full((100, 100), 0.8, np.float32)
    x = to_model_input(img, 56, 0.5)
    offset, side = scale_window(56, 0.5)
    assert (offset, side) == (14, 28)
    assert np.allclose(x[offset : offset + side, offset : offset + side], 0.8)
    inside = np.zeros_like(x, bool)
    inside[offset : offset + side, offset : offset + side] = True
    assert np.all(x[~inside] == 0)
    assert np.array_equal(to_model_input(img, 56), to_model_input(img, 56, 1.0))  # scale 1: the plain rule
    with pytest.raises(ValueError, match="scale"):
        to_model_input(img, 56, 0.0)


def test_dataset_scales_ct_only(tmp_path):
    from model.data.dataset import load_model_image
    from model.data.sources import Sample

    def sample(modality):
        return Sample(
            id=modality, split="train", modality=modality, source="t", image_path=None,
            loader=lambda: np.ones((64, 64), np.float32),
        )  # fmt: skip

    ct = load_model_image(sample("CT"), 32, 0.5)
    cxr = load_model_image(sample("CXR"), 32, 0.5)
    assert ct[0, 0] == 0 and ct[16, 16] == 255 and (ct > 0).sum() == 16 * 16
    assert (cxr == 255).all()


def test_lesion_grid_places_the_ct_mask_like_its_image(tmp_path):
    from PIL import Image

    from model.distill.recipes import lesion_grid
    from model.types import LESION_CHANNELS, LESION_GRID

    m = np.zeros((256, 256), np.uint8)
    m[:32, :32] = 1  # top-left corner of the CT slice: bit 0 = tumour
    Image.fromarray(m).save(tmp_path / "m.png")
    full = lesion_grid(tmp_path / "m.png", "CT")[LESION_CHANNELS.index("tumour")]
    half = lesion_grid(tmp_path / "m.png", "CT", 0.5)[LESION_CHANNELS.index("tumour")]
    assert full[0, 0] and full[:4, :4].all() and not full[5:, 5:].any()
    off, side = scale_window(LESION_GRID, 0.5)
    assert not half[0, 0] and half[off, off] and not half[off + 3 :, :].any()


def test_predictor_and_gradcam_use_the_scale(tmp_path):
    from model.explain.gradcam import explain
    from model.inference import Predictor
    from model.networks import TINY_PRESETS, build_model, build_tokenizer
    from model.types import Study

    tok = build_tokenizer(["normal study", "no effusion"])
    torch.manual_seed(0)
    cfg = TINY_PRESETS["tiny-teacher"]
    model = build_model(replace(cfg, ct_scale=0.5, vocab_size=len(tok))).eval()
    p = Predictor(model, tok, {"model_id": "t"}, {}, "t")
    pix = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    ct = p.image_tensor(Study(pixels=pix, modality="CT"))[0, 0].numpy()
    cxr = p.image_tensor(Study(pixels=pix, modality="CXR"))[0, 0].numpy()
    s = cfg.image_size
    off, side = scale_window(s, 0.5)
    assert ct[0, 0] == 0 and np.allclose(ct[off : off + side, off : off + side], to_model_input(pix, side))
    assert np.allclose(cxr, to_model_input(pix, s))
    e = explain(p, Study(pixels=pix, modality="CT"), "tumour:malignant")
    assert e.heatmap.shape == pix.shape  # the CT window's map, in the study's frame
    assert e.flat or abs(float(e.heatmap.max()) - 1.0) < 1e-5
