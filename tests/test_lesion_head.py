"""The lesion head (``ModelConfig.head_pool == "lesion"``): maps on the feature grid supervised by phantom masks,
read by the task heads (issue 10: the CT tumour class was invisible to a globally pooled 224 px trunk)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.distill.config import DistillConfig
from model.distill.losses import distillation_loss, lesion_bce
from model.types import LESION_CHANNELS, LESION_GRID
from tests.tiny_training import tiny_model, tiny_tensorset


def lesion_model(vocab: int = 32):
    from model.networks import TINY_PRESETS, build_model

    torch.manual_seed(0)
    return build_model(replace(TINY_PRESETS["tiny-teacher"], vocab_size=vocab, head_pool="lesion"))


def test_lesion_head_maps_and_head_input():
    model = lesion_model().eval()
    feats = model.forward_features(torch.rand(3, 1, 32, 32))
    heads = model.forward_heads(feats)
    assert heads.lesion_logits.shape == (3, len(LESION_CHANNELS), *feats.shape[-2:])
    # the heads read the lesion map: changing only the lesion conv changes the tumour logits
    before = heads.tumour_logits.clone()
    with torch.no_grad():
        model.lesion.bias.add_(3.0)
    assert not torch.allclose(model.forward_heads(feats).tumour_logits, before)
    # models without the head have no map and no extra parameters
    plain, _ = tiny_model("tiny-teacher")
    assert plain.lesion is None and plain.forward_heads(plain.forward_features(torch.rand(1, 1, 32, 32))).lesion_logits is None


def test_lesion_bce_pools_masks_and_skips_unknown_rows():
    logits = torch.zeros(2, len(LESION_CHANNELS), 4, 4, requires_grad=True)
    masks = torch.zeros(2, len(LESION_CHANNELS), LESION_GRID, LESION_GRID, dtype=torch.bool)
    masks[0, -1, 0, 0] = True  # one tumour pixel in the top-left 7x7 block -> cell (0, 0) positive
    none_known = lesion_bce(logits, masks, torch.tensor([False, False]))
    assert float(none_known.detach()) == 0.0
    loss = lesion_bce(logits, masks, torch.tensor([True, False]))
    loss.backward()
    g = logits.grad
    assert g[0, -1, 0, 0] < 0 and g[0, -1, 1, 1] > 0  # pushed up on the lesion cell, down elsewhere
    assert torch.all(g[1] == 0)  # the unknown row teaches nothing
    # the positive cell is weighed up (rare cells; as the stage-0 mask head)
    assert abs(float(g[0, -1, 0, 0])) > 3 * abs(float(g[0, -1, 1, 1]))


def test_lesion_grid_reads_phantom_masks(tmp_path):
    from model.data.generate import encode_masks, finding_masks
    from model.data.phantom import make_case
    from model.distill.recipes import lesion_grid

    found = {}
    for seed in range(60):
        for modality in ("CT", "CXR"):
            case = make_case(seed, modality, size=256)
            masks = finding_masks(case)
            if not masks:
                continue
            png = tmp_path / f"{modality}_{seed}.png"
            from PIL import Image

            Image.fromarray(encode_masks(masks, modality, case.image.shape)).save(png)
            grid = lesion_grid(png, modality)
            assert grid.shape == (len(LESION_CHANNELS), LESION_GRID, LESION_GRID)
            for name, m in masks.items():
                ch = LESION_CHANNELS.index(name)
                assert grid[ch].any(), (seed, modality, name)
                # cells cover the mask: every lesion pixel's cell is set
                ys, xs = np.nonzero(m)
                cy = (ys * LESION_GRID) // m.shape[0]
                cx = (xs * LESION_GRID) // m.shape[1]
                assert grid[ch][cy, cx].all()
                found[name] = True
            absent = [c for c in LESION_CHANNELS if c not in masks]
            assert not grid[[LESION_CHANNELS.index(c) for c in absent]].any()
    assert "tumour" in found and "pleural_effusion" in found


def test_tensorset_carries_masks_and_the_loss_uses_them():
    model = lesion_model()
    ts = tiny_tensorset(4)
    assert ts.lesion is None  # no masks in the items: nothing to learn from
    lesion = torch.zeros(4, len(LESION_CHANNELS), LESION_GRID, LESION_GRID, dtype=torch.bool)
    lesion[1, -1, 10:14, 10:14] = True
    ts = replace(ts, lesion=lesion, lesion_known=torch.tensor([True, True, False, False]))
    batch = ts.batch(torch.arange(4))
    out = model(batch["images"], batch["context"], batch["input_ids"], batch["attention_mask"])
    terms = distillation_loss(out, None, batch, DistillConfig())
    off = distillation_loss(out, None, batch, DistillConfig(w_lesion=0.0))
    assert float(terms["lesion"].detach()) > 0
    assert float((terms["total"] - off["total"]).detach()) == pytest.approx(float(terms["lesion"].detach()), rel=1e-5)
    # concatenating with a set without masks (reviewed cases, transfer sets) keeps rows aligned and unknown
    both = type(ts).concat([ts, tiny_tensorset(2, seed=1)])
    assert both.lesion.shape[0] == 6 and both.lesion_known.tolist() == [True, True, False, False, False, False]
    assert not ts.strip_labels().lesion_known.any()


@pytest.mark.parametrize("pool", ["avg", "avgmax", "lesion"])
def test_head_input_width_matches_what_forward_builds(pool):
    from model.networks import TINY_PRESETS, build_model

    model = build_model(replace(TINY_PRESETS["tiny-teacher"], vocab_size=32, head_pool=pool)).eval()
    heads = model.forward_heads(model.forward_features(torch.rand(2, 1, 32, 32)))
    assert heads.findings_logits.shape == (2, model.cfg.n_findings)


def test_pretrained_heads_load_into_a_wider_lesion_head(tmp_path):
    """Stage 0 trained average ++ max heads; a lesion head reads more columns: the overlap loads, the rest stays."""
    from safetensors.torch import save_file

    from model.distill.pretrain import load_pretrained
    from model.networks import TINY_PRESETS, build_model

    torch.manual_seed(1)
    src = build_model(replace(TINY_PRESETS["tiny-teacher"], vocab_size=32, head_pool="avgmax"))
    save_file({k: v.contiguous() for k, v in src.state_dict().items() if not k.startswith("decoder.")}, str(tmp_path / "p.safetensors"))
    dst = lesion_model()
    fresh = dst.heads.shared[2].weight.detach().clone()
    info = load_pretrained(dst, tmp_path / "p.safetensors")
    w_src, w_dst = src.heads.shared[2].weight, dst.heads.shared[2].weight
    assert "heads.shared.2.weight" in info["partially_loaded"]
    assert torch.equal(w_dst[:, : w_src.shape[1]], w_src)
    assert torch.equal(w_dst[:, w_src.shape[1] :], fresh[:, w_src.shape[1] :])
    for (name, a), b in zip(src.encoder.state_dict().items(), dst.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the trunk loads exactly
