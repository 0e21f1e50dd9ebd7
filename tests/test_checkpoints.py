"""Checkpoints: round trip, model card, and a clear CheckpointError for every way one can break."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny_training import tiny_model

from model.checkpoints import (
    CARD,
    CONFIG,
    EXTRAS,
    TOKENIZER,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_tokenizer,
    save_checkpoint,
    sha256_file,
)
from model.networks import TINY_PRESETS, build_model, build_tokenizer

torch.set_num_threads(1)

TEXTS = ["Small left pleural effusion. No pneumothorax.", "Cardiomegaly, ratio 0.58. Lungs are clear."]


@pytest.fixture()
def ckpt(tmp_path):
    tok = build_tokenizer(TEXTS)
    model = tiny_model("tiny-student", len(tok), seed=0)[0].eval()
    card = {
        "model_id": "student",
        "training": {"data": {"labelled": "phantoms (test)"}},
        "metrics": {"f1": 0.5},
    }
    extras = {"ood_mean": torch.arange(4.0)}
    d = save_checkpoint(tmp_path / "student", model, tok, card, extras)
    return d, model, tok


def test_round_trip_identical_outputs(ckpt):
    d, model, tok = ckpt
    loaded = load_checkpoint(d)
    m2, tok2, card, extras = loaded  # 4-tuple unpacking (trainer) ...
    assert loaded.config == model.cfg  # ... and named access
    assert not m2.training
    assert tok2.get_vocab() == tok.get_vocab()
    assert torch.equal(extras["ood_mean"], torch.arange(4.0))
    x, ids = torch.rand(2, 1, 32, 32), torch.tensor([[3, 6, 9, 10, 2]] * 2)
    with torch.inference_mode():
        a, b = model(x, None, ids), m2(x, None, ids)
    for k in ("lm_logits", "findings_logits", "tumour_logits", "treatment_logits", "features"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    # tied embeddings survive (save_model keeps one copy)
    assert m2.decoder.gpt.lm_head.weight.data_ptr() == m2.decoder.gpt.transformer.wte.weight.data_ptr()


def test_model_card_contents(ckpt):
    d, model, _ = ckpt
    card = json.loads((d / CARD).read_text())
    assert card["model_id"] == "student" and card["metrics"] == {"f1": 0.5}
    assert card["training"]["data"]["labelled"] == "phantoms (test)"
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["weights_sha256"] == sha256_file(d / WEIGHTS)
    assert set(card["files"]) == {WEIGHTS, CONFIG, TOKENIZER, EXTRAS}
    assert "GPT-2" in card["architecture"] and card["config"]["arch_name"] == "tiny-student"


def test_load_tokenizer_alone(ckpt):
    d, _, tok = ckpt
    assert load_tokenizer(d).get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("name", [WEIGHTS, CONFIG, TOKENIZER, CARD])
def test_missing_file(ckpt, name):
    d, _, _ = ckpt
    (d / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing"):
        load_checkpoint(d)


def test_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nope")


def test_truncated_weights(ckpt):
    d, _, _ = ckpt
    data = (d / WEIGHTS).read_bytes()
    (d / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(d)


def test_corrupt_weights_without_card_hash(ckpt):
    """A hand-edited card without the hash still gets a clear error from the safetensors reader."""
    d, _, _ = ckpt
    card = json.loads((d / CARD).read_text())
    del card["weights_sha256"]
    (d / CARD).write_text(json.dumps(card))
    (d / WEIGHTS).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="does not fit|corrupt"):
        load_checkpoint(d)


def test_flipped_byte_detected(ckpt):
    d, _, _ = ckpt
    data = bytearray((d / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (d / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt, truncated or was replaced"):
        load_checkpoint(d)


def test_config_does_not_match_weights(ckpt):
    d, _, _ = ckpt
    cfg = json.loads((d / CONFIG).read_text())
    cfg["d_model"] = 64  # weights were saved at 32
    (d / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit config.json"):
        load_checkpoint(d)


def test_weights_of_another_architecture(ckpt, tmp_path):
    d, _, tok = ckpt
    other = build_model(dataclasses.replace(TINY_PRESETS["tiny-teacher"], vocab_size=len(tok)))
    o = save_checkpoint(tmp_path / "other", other, tok, {})
    (d / WEIGHTS).write_bytes((o / WEIGHTS).read_bytes())
    card = json.loads((d / CARD).read_text())
    card["weights_sha256"] = sha256_file(d / WEIGHTS)  # consistent hash, wrong shapes
    (d / CARD).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(d)


@pytest.mark.parametrize("name", [CONFIG, CARD])
def test_invalid_json(ckpt, name):
    d, _, _ = ckpt
    (d / name).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)


def test_unknown_config_key(ckpt):
    d, _, _ = ckpt
    cfg = json.loads((d / CONFIG).read_text())
    cfg["n_experts"] = 8
    (d / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="n_experts"):
        load_checkpoint(d)


def test_removed_ct_scale_key(ckpt):
    """Configs written while ModelConfig had ``ct_scale`` (runs/v9's teacher) load at 1.0, the behaviour kept;
    a model trained on the refuted CT canvas (another value) would be fed other images, so it is refused."""
    d, model, _ = ckpt
    cfg = json.loads((d / CONFIG).read_text())
    (d / CONFIG).write_text(json.dumps({**cfg, "ct_scale": 1.0}))
    assert load_checkpoint(d).config == model.cfg
    (d / CONFIG).write_text(json.dumps({**cfg, "ct_scale": 128 / 224}))
    with pytest.raises(CheckpointError, match="ct_scale=0.57.* is no longer supported"):
        load_checkpoint(d)


def test_tokenizer_vocab_mismatch(ckpt, tmp_path):
    d, _, _ = ckpt
    big = build_tokenizer(TEXTS + ["an entirely different corpus with many more words"])
    big.backend_tokenizer.save(str(d / TOKENIZER))
    with pytest.raises(CheckpointError, match="vocab_size"):
        load_checkpoint(d)


def test_corrupt_tokenizer_and_extras(ckpt):
    d, _, _ = ckpt
    (d / EXTRAS).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="extras.safetensors is corrupt"):
        load_checkpoint(d)
    (d / TOKENIZER).write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_checkpoint(d)


def test_never_unpickles(ckpt):
    """A pickle dropped in as the weights is rejected (hash), and nothing calls torch.load."""
    d, model, _ = ckpt
    torch.save(model.state_dict(), d / WEIGHTS)
    with pytest.raises(CheckpointError):
        load_checkpoint(d)
    import inspect

    import model.checkpoints as ck

    assert "torch.load" not in inspect.getsource(ck) and "pickle" not in inspect.getsource(ck).replace(
        "unpickle", ""
    )


def test_float16_storage_halves_the_file_and_loads_float32(ckpt, tmp_path):
    d, model, tok = ckpt
    card = json.loads((d / CARD).read_text())
    half = save_checkpoint(tmp_path / "half", model, tok, card, weights_dtype=torch.float16)
    assert (half / WEIGHTS).stat().st_size < 0.6 * (d / WEIGHTS).stat().st_size
    loaded = load_checkpoint(half)  # the sha256 in the rewritten card matches the new file
    assert loaded.card["weights_dtype"] == "float16" and loaded.card["metrics"] == {"f1": 0.5}
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert next(model.parameters()).dtype == torch.float32  # the source model is not converted
    x = torch.rand(2, 1, model.cfg.image_size, model.cfg.image_size)
    with torch.no_grad():
        a = model.forward_heads(model.forward_features(x)).findings_logits
        b = loaded.model.forward_heads(loaded.model.forward_features(x)).findings_logits
    assert torch.allclose(a, b, atol=1e-2) and not torch.equal(a, b)  # rounded, not lost
    with pytest.raises(ValueError, match="weights_dtype"):
        save_checkpoint(tmp_path / "bad", model, tok, card, weights_dtype=torch.bfloat16)


def test_pipeline_install_writes_float16_checkpoints_with_their_log(ckpt, tmp_path, monkeypatch):
    from model.commands import pipeline

    d, model, tok = ckpt
    (d / "train_log.jsonl").write_text('{"step": 1}\n')
    (d / "stage_joint").mkdir()  # resumable state: not installed
    monkeypatch.setattr(pipeline, "ASSETS", tmp_path / "assets")
    out = pipeline._install({"student": d})
    dst = tmp_path / "assets" / "student"
    assert out["installed"]["student"]["files"] == sorted(
        [WEIGHTS, CONFIG, TOKENIZER, EXTRAS, CARD, "train_log.jsonl"]
    )
    assert load_checkpoint(dst).card["weights_dtype"] == "float16"
    assert (dst / WEIGHTS).stat().st_size < (d / WEIGHTS).stat().st_size


def test_loading_skips_random_init_and_still_loads_every_weight(ckpt, monkeypatch):
    """The model is built without random draws (the weights overwrite them anyway): the load is exact,
    and the skip lasts only while building (a fill outside the mode still draws)."""
    from model.checkpoints import _SkipRandomInit

    d, model, tok = ckpt
    with _SkipRandomInit():
        t = torch.zeros(4, 3)
        t.normal_()
        torch.nn.init.kaiming_uniform_(t)
        torch.nn.init.trunc_normal_(t)
    assert torch.count_nonzero(t) == 0
    assert torch.count_nonzero(torch.zeros(4).normal_()) == 4  # outside the mode: random again
    draws = []
    real = torch.Tensor.normal_
    monkeypatch.setattr(torch.Tensor, "normal_", lambda self, *a, **k: draws.append(1) or real(self, *a, **k))
    loaded = load_checkpoint(d)
    assert not draws  # no random initialisation was drawn during the load
    tiny_model("tiny-student", len(tok), seed=0)
    assert draws  # the spy works: an ordinary build does draw
    reference = model.state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
