"""Predictor (fields, probabilities, latency, OOD, thread safety, teacher forcing) and the predict CLI."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from tiny_training import tiny_model

from model.checkpoints import save_checkpoint
from model.inference import Predictor, shipped_checkpoint
from model.networks import build_tokenizer
from model.ood import fit_ood_stats, ood_scores, pooled_features
from model.types import FINDINGS, TREATMENTS, TUMOUR_CLASSES, PatientContext, Prediction, ReportStyle, Study

torch.set_num_threads(1)

TEXTS = [
    "Small left pleural effusion. No pneumothorax.",
    "The heart is enlarged. Lungs are clear.",
    "A spiculated nodule in the right upper zone. No effusion.",
]


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """In-distribution stand-ins: smooth blobs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        out[i, 0] = (
            0.3 + 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60) + rng.normal(0, 0.02, (size, size))
        )
    return torch.from_numpy(np.clip(out, 0, 1))


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    tok = build_tokenizer(TEXTS)
    model = tiny_model("tiny-teacher", len(tok), seed=0, spread=True)[0].eval()  # spread: reports vary
    extras = fit_ood_stats(model, _images(200, 1))
    return save_checkpoint(
        tmp_path_factory.mktemp("ck") / "teacher", model, tok, {"model_id": "teacher"}, extras
    )


@pytest.fixture(scope="module")
def predictor(ckpt_dir):
    return Predictor.from_dir(ckpt_dir)


def _study(seed: int, modality: str = "CXR", size: int = 64) -> Study:
    px = torch.nn.functional.interpolate(_images(1, seed), size=(size, size), mode="bilinear")[0, 0].numpy()
    return Study(pixels=px, modality=modality, sha256=str(seed))


def test_prediction_fields(predictor):
    pred = predictor.predict(_study(0), PatientContext(age=70, allergies=("penicillin",)))
    assert isinstance(pred, Prediction) and pred.model_id == "teacher" and pred.modality == "CXR"
    assert list(pred.findings) == list(FINDINGS) and all(0 <= p <= 1 for p in pred.findings.values())
    assert list(pred.tumour) == list(TUMOUR_CLASSES) and abs(sum(pred.tumour.values()) - 1) < 1e-5
    assert abs(sum(pred.tumour_subtype.values()) - 1) < 1e-5
    assert sorted(t.name for t in pred.treatments) == sorted(TREATMENTS)
    probs = [t.probability for t in pred.treatments]
    assert probs == sorted(probs, reverse=True) and all(t.reason for t in pred.treatments)
    assert len(pred.tokens) == len(pred.token_probs) and all(0 < p <= 1 for p in pred.token_probs)
    assert set(pred.latency_ms) == {"preprocess", "encode", "heads", "decode", "total"}
    assert pred.latency_ms["total"] >= pred.latency_ms["encode"] + pred.latency_ms["decode"]
    assert np.isfinite(pred.ood_score)
    json.dumps(pred.to_dict())  # serialisable


def test_style_controls_length(predictor):
    study = _study(1, "CT")
    long = predictor.predict(study, style=ReportStyle(max_new_tokens=30))
    short = predictor.predict(study, style=ReportStyle(max_new_tokens=4))
    assert len(short.tokens) <= 4 and short.tokens == long.tokens[: len(short.tokens)]
    beam = predictor.predict(study, style=ReportStyle(decoding="beam", num_beams=2, max_new_tokens=8))
    assert len(beam.tokens) == len(beam.token_probs) <= 8


def test_max_sentences(ckpt_dir):
    """The report stops after the N-th sentence. The random model never writes "." by itself, so this
    predictor's copy swaps the (tied input / output) embeddings of "zone" and ".": it writes "." where it
    wrote "zone", i.e. several sentences."""
    pred = Predictor.from_dir(ckpt_dir)
    a, b = (pred.tokenizer.convert_tokens_to_ids(w) for w in ("zone", "."))
    with torch.no_grad():
        wte = pred.model.decoder.gpt.transformer.wte.weight  # (V, d), tied to the lm head
        wte[[a, b]] = wte[[b, a]].clone()
    study = _study(4, "CT")
    free = pred.predict(study, style=ReportStyle(max_new_tokens=40)).tokens
    ends = [i for i, t in enumerate(free) if t == "."]
    assert len(ends) >= 2, f"the test model must write several sentences: {free}"
    for n in (1, 2):
        cut = pred.predict(study, style=ReportStyle(max_new_tokens=40, max_sentences=n)).tokens
        assert cut == free[: ends[n - 1] + 1]


def test_teacher_forced_probs(predictor):
    study = _study(3)
    pred = predictor.predict(study, style=ReportStyle(max_new_tokens=10))
    probs = predictor.teacher_forced_probs(study, pred.tokens, None, "standard")
    assert probs.shape == (len(pred.tokens), len(predictor.tokenizer))
    assert np.allclose(probs.sum(-1), 1, atol=1e-4)
    ids = [predictor.tokenizer.convert_tokens_to_ids(t) for t in pred.tokens]
    assert np.allclose(probs[np.arange(len(ids)), ids], pred.token_probs, atol=1e-4)
    assert predictor.teacher_forced_probs(study, ids).shape == probs.shape  # ids work too


def test_encode_text_and_report(predictor):
    ids = predictor.encode_text("No pneumothorax.")
    assert predictor.tokenizer.convert_ids_to_tokens(ids) == ["No", "pneumothorax", "."]
    seq, pos = predictor.encode_report(["No", "pneumothorax", "."], "CXR", "brief")
    assert seq.shape == (1, 5) and pos.tolist() == [2, 3, 4]


def test_concurrent_predictions_match_sequential(predictor):
    studies = [_study(10 + i, "CXR" if i % 2 else "CT") for i in range(6)]
    style = ReportStyle(max_new_tokens=16)
    expected = [predictor.predict(s, style=style) for s in studies]
    results: dict[int, Prediction] = {}

    def work(i):
        for j in range(i, len(studies), 2):
            results[j] = predictor.predict(studies[j], style=style)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        r = results[i]
        assert (r.tokens, r.findings, r.tumour, r.ood_score) == (e.tokens, e.findings, e.tumour, e.ood_score)


def test_ood_flags_far_input_and_calibration(ckpt_dir, predictor):
    from model.checkpoints import load_checkpoint

    model, _, _, extras = load_checkpoint(ckpt_dir)
    held_out = ood_scores(pooled_features(model, _images(200, 7)), extras).numpy()
    assert (held_out > float(extras["ood_threshold"][0])).mean() <= 0.05  # ~1% by construction
    far = Study(pixels=np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)) ** 8, modality="CXR")
    pred_far = predictor.predict(far)
    assert pred_far.ood_flag and pred_far.ood_score > np.median(held_out)


def test_shipped_checkpoint_names():
    assert shipped_checkpoint("student").name == "student"
    with pytest.raises(ValueError):
        shipped_checkpoint("big")


# ----------------------------------------------------------------------------------------------
# CLI


def _png(path, seed=0):
    """A phantom chest X-ray PNG (the CLI's input guard refuses random pixels)."""
    from PIL import Image

    from model.data.phantom import make_case

    arr = (make_case(seed, "CXR", size=128).image * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_cli_predict_text_and_json(ckpt_dir, tmp_path, capsys):
    from model.cli import main

    img = _png(tmp_path / "x.png")
    assert (
        main(["predict", str(img), "--model", str(ckpt_dir), "--detail", "brief", "--max-tokens", "6"]) == 0
    )
    out = capsys.readouterr().out
    assert "[teacher]" in out and "latency" in out
    assert (
        main(
            [
                "predict",
                str(img),
                "--model",
                str(ckpt_dir),
                "--json",
                "--age",
                "60",
                "--allergy",
                "penicillin",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["findings"]) == set(FINDINGS) and doc["model_id"] == "teacher"


def test_cli_bad_file_and_missing_model(ckpt_dir, tmp_path, capsys):
    from model.cli import main

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert main(["predict", str(bad), "--model", str(ckpt_dir)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    img = _png(tmp_path / "y.png")
    assert main(["predict", str(img), "--model", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_teacher_forcing_reuses_the_features_predict_just_computed(ckpt_dir, monkeypatch):
    """The divergence passes after a prediction do not run the trunk again, and give the same numbers;
    ``predict`` itself always runs it (its latency is the model's); the cache is bounded."""
    import model.inference as inference

    pred = Predictor.from_dir(ckpt_dir)
    study, other = _study(21), _study(22)
    tokens = pred.predict(study).tokens or ["the"]
    fresh = pred.teacher_forced_probs(other, tokens)  # computes the trunk for `other`
    calls = []
    real = pred.model.forward_features
    monkeypatch.setattr(pred.model, "forward_features", lambda x: calls.append(1) or real(x))
    cached = pred.teacher_forced_probs(study, tokens)
    assert calls == []  # predict's features were reused
    pred._features.clear()
    np.testing.assert_allclose(pred.teacher_forced_probs(study, tokens), cached, rtol=0, atol=1e-6)
    assert len(calls) == 1  # computed once the cache was empty
    pred.predict(study)
    assert len(calls) == 2  # predict encodes even when the features are cached
    np.testing.assert_allclose(pred.teacher_forced_probs(other, tokens), fresh, atol=1e-6)
    monkeypatch.setattr(inference, "FEATURE_CACHE_ENTRIES", 3)
    for seed in range(30, 36):
        pred.predict(_study(seed))
    assert len(pred._features) == 3
