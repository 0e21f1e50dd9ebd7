"""The frozen-trunk stage (model.distill.feature_stage): cached features stand in for the trunk exactly,
the trunk does not move, the heads and decoder do, and a KD student keeps its teacher targets."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file, save_model
from tiny_training import tiny_kd_setup, tiny_model, tiny_tensorset

from model.distill.config import DistillConfig, TrainConfig
from model.distill.feature_stage import feature_stage, with_features

torch.set_num_threads(1)


def _weights(model, path):
    save_model(model, str(path))
    return load_file(str(path))


def test_cached_features_give_the_same_outputs_as_the_trunk():
    torch.manual_seed(0)
    model, _ = tiny_model()
    model.eval()
    data = tiny_tensorset(6)
    cached = with_features(model, data, show_progress=False)
    assert cached.features.dtype == torch.float16 and cached.features.shape[0] == 6
    b = cached.batch(torch.arange(6))
    with torch.no_grad():
        plain = model(b["images"], b["context"], b["input_ids"], b["attention_mask"])
        fast = model(
            b["images"] * 0, b["context"], b["input_ids"], b["attention_mask"], features=b["features"]
        )
    torch.testing.assert_close(fast.lm_logits, plain.lm_logits, atol=2e-2, rtol=1e-2)  # float16 cache
    torch.testing.assert_close(fast.findings_logits, plain.findings_logits, atol=2e-2, rtol=1e-2)
    assert (
        cached.subset([0, 2]).features.shape[0] == 2 and data.features is None
    )  # the input set is untouched


def test_stage_trains_heads_and_decoder_only(tmp_path):
    torch.manual_seed(0)
    model, _ = tiny_model()
    before = _weights(model, tmp_path / "before.st")
    tcfg = TrainConfig(epochs=1, batch_size=4, feature_epochs=3, log_every=1)
    r = feature_stage(model, tiny_tensorset(12), tiny_tensorset(6, seed=1), tcfg, DistillConfig().without_kd(),
                      tmp_path / "run", show_progress=False)  # fmt: skip
    after = _weights(model, tmp_path / "after.st")
    assert r.steps == 9 and r.epochs_run == 3  # no early stop inside the stage's budget
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and not any(k.startswith("encoder.") for k in moved)  # trunk frozen (BN stats too)
    assert any(k.startswith("decoder.") for k in moved) and any(k.startswith("heads.") for k in moved)
    assert all(p.requires_grad for p in model.parameters())  # trainable again for whatever follows


def test_kd_student_keeps_its_teacher_targets(tmp_path):
    _, student, train, dcfg = tiny_kd_setup()
    tcfg = TrainConfig(epochs=1, batch_size=4, feature_epochs=1, log_every=1)
    feature_stage(student, train, tiny_tensorset(4, seed=1), tcfg, dcfg, tmp_path / "kd", show_progress=False)
    lines = [json.loads(x) for x in (tmp_path / "kd" / "train_log.jsonl").read_text().splitlines()]
    stage = [x for x in lines if x.get("stage") == "features" and x["split"] == "train"]
    assert stage and all(x["kd_tokens"] > 0 and x["hint"] == 0 and x["attention"] == 0 for x in stage)


def test_repeat_sources_repeats_only_the_named_source():
    data = tiny_tensorset(6)
    data.sources = ["ct" if i % 2 else "cxr" for i in range(6)]
    more = data.repeat_sources({"ct": 3, "absent": 5})
    assert len(more) == 6 + 2 * 3 and more.sources.count("ct") == 9 and more.sources.count("cxr") == 3
    torch.testing.assert_close(more.images[6], data.images[1])  # the copies are the same rows
    assert data.repeat_sources({"cxr": 1}) is data and data.repeat_sources(()) is data


def test_feature_max_steps_caps_the_stage(tmp_path):
    """The no-KD student gets exactly the KD student's steps in this stage (pipeline's nokd)."""
    torch.manual_seed(0)
    model, _ = tiny_model()
    tcfg = TrainConfig(epochs=1, batch_size=4, feature_epochs=10_000, feature_max_steps=5, log_every=1)
    r = feature_stage(model, tiny_tensorset(12), tiny_tensorset(6, seed=1), tcfg, DistillConfig().without_kd(),
                      tmp_path / "run", show_progress=False)  # fmt: skip
    assert r.steps == 5
