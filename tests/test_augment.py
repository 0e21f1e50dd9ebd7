"""Intensity augmentation and per-image normalisation in the training path (issue 11)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_model
from tiny_training import tiny_model, tiny_tensorset

from model.data.dataset import ReportDataset, intensity_jitter, is_real_source, jitter_batch
from model.data.sources import Sample
from model.distill.config import DistillConfig, TrainConfig
from model.distill.trainer import fit
from model.networks.multitask import standardize_images

torch.set_num_threads(1)


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:48] / 48.0
    return np.clip(0.3 + 0.3 * np.sin(6 * x) * y + 0.05 * rng.random((48, 48)), 0, 1).astype(np.float32)


def test_intensity_jitter_moves_brightness_both_ways_and_stays_in_range():
    x = _image()
    means = []
    for seed in range(40):
        y = intensity_jitter(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0
        means.append(y.mean() - x.mean())
    assert min(means) < -0.05 and max(means) > 0.05  # darker and brighter versions both occur
    # wide enough to cover the real-CT brightness gap (cancer ~0.11 vs normal ~0.28 median)
    assert max(means) - min(means) > 0.17


def _sample(source: str) -> Sample:
    img = _image()
    return Sample(id=source, split="train", modality="CT", source=source, image_path=None, loader=lambda: img)


def test_dataset_real_items_differ_across_epochs_phantoms_do_not():
    ds = ReportDataset([_sample("chest_ct"), _sample("phantom_ct")], 32, intensity="real", seed=1)
    e0 = [ds[i]["image"] for i in range(2)]
    again = [ds[i]["image"] for i in range(2)]
    ds.set_epoch(1)
    e1 = [ds[i]["image"] for i in range(2)]
    torch.testing.assert_close(e0[0], again[0])  # reproducible within an epoch
    assert not torch.equal(e0[0], e1[0])  # real image: a new jitter each epoch
    torch.testing.assert_close(e0[1], e1[1])  # phantom: untouched by "real"
    with pytest.raises(ValueError, match="intensity"):
        ReportDataset([], 32, intensity="sometimes")


def test_jitter_batch_rows_seeds_and_input():
    images = torch.from_numpy(np.stack([_image(i) for i in range(3)]))[:, None]  # (3, 1, 48, 48)
    keep = images.clone()
    a = jitter_batch(images, [True, False, True], (0, 0, 5))
    torch.testing.assert_close(images, keep)  # input left as it was
    torch.testing.assert_close(a[1], images[1])  # row not selected: unchanged
    assert not torch.equal(a[0], images[0]) and not torch.equal(a[2], images[2])
    torch.testing.assert_close(a, jitter_batch(images, [True, False, True], (0, 0, 5)))  # same seed
    assert not torch.equal(a[0], jitter_batch(images, [True, False, True], (0, 1, 5))[0])  # next epoch
    assert is_real_source("nih1000") and not is_real_source("phantom_cxr") and not is_real_source("")


def test_standardize_is_invariant_to_a_global_brightness_change():
    x = torch.from_numpy(np.stack([_image(0), _image(1)]))[:, None]
    shifted = 0.6 * x + 0.25
    z, zs = standardize_images(x), standardize_images(shifted)
    torch.testing.assert_close(z.mean((1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((1, 2, 3)), torch.ones(2), atol=1e-2, rtol=0)
    torch.testing.assert_close(z, zs, atol=2e-2, rtol=0)


def test_model_with_input_norm_ignores_brightness_and_without_does_not():
    x = torch.from_numpy(np.stack([_image(0), _image(1)]))[:, None]
    x = torch.nn.functional.interpolate(x, size=32)
    outs = {}
    for norm in ("none", "per_image"):
        torch.manual_seed(0)
        model, cfg = tiny_model()
        model = type(model)(dataclasses.replace(cfg, input_norm=norm)).eval()
        with torch.no_grad():
            outs[norm] = (
                (model.forward_features(x) - model.forward_features(0.5 * x + 0.3)).abs().max().item()
            )
    assert outs["per_image"] < 1e-2 < outs["none"]


def _fit_weights(tmp, augment: str, sources: str | None = None) -> dict:
    torch.manual_seed(0)
    model, _ = tiny_model()
    train = tiny_tensorset(12)
    if sources is not None:
        train.sources = [sources] * len(train)
    tcfg = TrainConfig(epochs=1, batch_size=4, seed=0, log_every=1, augment=augment)
    fit(model, train, tiny_tensorset(6, seed=1), tcfg, DistillConfig().without_kd(), tmp, show_progress=False)
    save_model(model, str(tmp / "w.st"))
    return load_file(str(tmp / "w.st"))


def test_tiny_training_uses_the_augment_flag(tmp_path):
    off = _fit_weights(tmp_path / "off", "off")
    jitter = _fit_weights(tmp_path / "all", "all")
    assert any(not torch.equal(off[k], jitter[k]) for k in off)  # the flag reaches the training batches
    phantoms = _fit_weights(tmp_path / "real", "real", sources="phantom_ct")  # "real": phantoms untouched
    assert all(torch.equal(off[k], phantoms[k]) for k in off)
    assert TrainConfig().augment == "real"


def test_intensity_norm_defaults_on_with_real_sets_and_serves_the_same(tmp_path):
    from model.checkpoints import load_checkpoint, save_checkpoint
    from model.distill.data_plan import DataConfig
    from model.distill.recipes import _build
    from model.networks import TINY_PRESETS, build_tokenizer

    tok = build_tokenizer(["a small nodule.", "normal study."])
    _, cfg = _build(TINY_PRESETS["tiny-student"], len(tok), None, DataConfig(data_dir="x", real_root="/r"))
    assert cfg.input_norm == "per_image"
    _, cfg_p = _build(TINY_PRESETS["tiny-student"], len(tok), None, DataConfig(data_dir="x"))
    assert cfg_p.input_norm == "none"
    _, cfg_off = _build(
        TINY_PRESETS["tiny-student"], len(tok), None, DataConfig(data_dir="x", real_root="/r"), False
    )
    assert cfg_off.input_norm == "none"
    model, _ = _build(TINY_PRESETS["tiny-student"], len(tok), None, DataConfig(data_dir="x", real_root="/r"))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ck", model, tok, {"model_id": "s"}))
    assert loaded.model.cfg.input_norm == "per_image"  # saved in config.json: serving normalises too
