"""Teacher stage 0 (issue 10): the phantom stream, its mask targets, a resumable loop, loadable weights."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from model.distill.pretrain import (
    SEG_CHANNELS,
    PretrainConfig,
    PretrainModule,
    load_pretrained,
    mask_targets,
    pretrain,
    stream_case,
)
from model.networks import TEACHER_PRESETS, build_model
from model.types import FINDINGS


def test_stream_is_deterministic_distinct_and_labelled():
    a, b = stream_case(3, 0, 0.3, 32), stream_case(3, 0, 0.3, 32)
    assert torch.equal(a["image"], b["image"]) and int(a["seed"]) == int(b["seed"])
    seeds = {int(stream_case(i, 0, 0.3, 32)["seed"]) for i in range(12)}
    assert len(seeds) == 12  # every index a different case
    val = {int(stream_case(i, 0, 0.3, 32, split="val")["seed"]) for i in range(12)}
    assert not seeds & val  # the held-out stream shares no case with the training stream
    for i in range(12):
        c = stream_case(i, 0, 0.3, 32)
        if bool(c["is_cxr"]):
            # a present finding has a mask in its channel; an absent one has none
            for k, name in enumerate(FINDINGS):
                assert bool(c["masks"][k].any()) == bool(c["findings"][k]), name
        else:
            assert bool(c["masks"][SEG_CHANNELS.index("tumour")].any()) == (int(c["tumour"]) != 0)


def test_stream_seeds_are_apart_from_generated_sets():
    from model.data.generate import case_seed

    stream = {int(stream_case(i, 0, 0.3, 32)["seed"]) for i in range(20)}
    dataset = {case_seed(s, m, i) for s in range(3) for m in ("CXR", "CT") for i in range(200)}
    assert not stream & dataset


def test_mask_targets_keep_a_one_pixel_lesion():
    masks = torch.zeros(1, 2, 256, 256, dtype=torch.bool)
    masks[0, 1, 200, 17] = True
    t = mask_targets(masks, (8, 8))
    assert t.shape == (1, 2, 8, 8) and t[0, 1, 6, 0] == 1 and t.sum() == 1


@pytest.mark.slow
def test_pretrain_learns_resumes_and_loads(tmp_path):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TEACHER_PRESETS["resnet50-4l"], image_size=32, input_norm="per_image")
    model = build_model(cfg)
    pc = PretrainConfig(n_images=16, image_size=32, batch_size=8, n_val=8, workers=0, save_every=1)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    rec = pretrain(model, pc, tmp_path, resume=False, show_progress=False)
    assert rec["steps"] == 2 and rec["images_seen"] == 16
    assert any(not torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    doc = json.loads((tmp_path / "pretrain.json").read_text())
    assert set(doc["validation"]) >= {"findings_auroc", "tumour_accuracy", "mask_pointing_game"}
    # resuming a finished run does not train again
    rec2 = pretrain(build_model(cfg), pc, tmp_path, resume=True, show_progress=False)
    assert rec2["steps"] == 2
    # the weights load into a model of another input size; the decoder starts fresh
    big = build_model(dataclasses.replace(cfg, image_size=64))
    info = load_pretrained(big, tmp_path / "pretrain.safetensors")
    assert set(info["missing_trained_fresh"]) == {"decoder", "memory"}
    torch.testing.assert_close(big.encoder.state_dict()["trunk.conv1.weight"], model.encoder.state_dict()["trunk.conv1.weight"])
    # the mask head reads layer3: its output grid is the stride-16 grid
    heads, seg = PretrainModule(big)(torch.rand(2, 1, 64, 64))
    assert seg.shape == (2, len(SEG_CHANNELS), 4, 4) and np.isfinite(seg.detach().numpy()).all()
