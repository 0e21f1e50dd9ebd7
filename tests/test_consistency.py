"""Report / head consistency (model/evaluate/consistency.py) and the Predictor's label conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_training import tiny_model

from model.evaluate import consistency as cons
from model.types import FINDINGS, Prediction, ReportStyle, Study

torch.set_num_threads(1)


def _pred(report: str, findings: dict | None = None, tumour: dict | None = None, modality: str = "CXR"):
    f = dict.fromkeys(FINDINGS, 0.0) | (findings or {})
    t = tumour or {"none": 1.0, "benign": 0.0, "malignant": 0.0}
    return Prediction("m", modality, f, t, [], report, report.split(), [], {}, 0.0, False)


def test_report_calls_present_denied_silent():
    label = cons.report_calls(
        "CXR", {"pleural_effusion": "uncertain", "pneumothorax": "negative", "normal": "negative"}
    )
    assert label["pleural_effusion"] == "present"  # uncertain counts as stated (U-ones)
    assert label["pneumothorax"] == "denied"
    assert label["nodule"] == "silent"
    # a report the labeler reads as normal denies every finding
    assert set(cons.report_calls("CXR", {"normal": "positive"}).values()) == {"denied"}


def test_head_calls_thresholds_and_ct_argmax():
    calls = cons.head_calls("CXR", {"pleural_effusion": 0.2, "nodule": 0.1}, {}, {"pleural_effusion": 0.17})
    assert calls["pleural_effusion"] and not calls["nodule"]  # 0.2 >= 0.17; nodule 0.1 < default 0.5
    ct = cons.head_calls("CT", {}, {"none": 0.2, "benign": 0.1, "malignant": 0.7}, {})
    assert ct == {"tumour_benign": False, "tumour_malignant": True}
    none = cons.head_calls("CT", {}, {"none": 0.8, "benign": 0.1, "malignant": 0.1}, {})
    assert not any(none.values())


def test_measure_golden_rates():
    preds = [
        # head: effusion present; report: "Normal study." -> denial (1 case with a contradiction)
        _pred("Normal study.", {"pleural_effusion": 0.9}),
        # head: nothing present; report states a pneumothorax -> assertion
        _pred("Large right pneumothorax."),
        # head: effusion present; report states it -> consistent
        _pred("Small left pleural effusion.", {"pleural_effusion": 0.9}),
        # head: effusion + nodule; report states effusion only -> nodule omitted, no contradiction
        _pred("Small left pleural effusion.", {"pleural_effusion": 0.9, "nodule": 0.8}),
        # CT: head malignant; report denies a mass -> denial
        _pred(
            "No suspicious pulmonary mass. Normal study.",
            tumour={"none": 0.1, "benign": 0.1, "malignant": 0.8},
            modality="CT",
        ),  # fmt: skip
    ]
    out = cons.measure(preds)
    assert out["contradiction_rate"] == pytest.approx(3 / 5)
    assert out["n_head_present"] == 5  # 1 + 0 + 1 + 2 + 1
    assert out["denial_rate"] == pytest.approx(2 / 5)
    assert out["omission_rate"] == pytest.approx(1 / 5)
    assert out["n_head_absent"] == 6 + 7 + 6 + 5 + 1
    assert out["assertion_rate"] == pytest.approx(1 / 25)
    assert out["per_label"]["pleural_effusion"]["denied"] == 1
    assert out["per_label"]["tumour_malignant"]["denied"] == 1
    assert out["cases"][3]["omitted"] == ["nodule"]


# ----------------------------------------------------------------------------------------------
# Label conditioning in the Predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from model.checkpoints import save_checkpoint
    from model.inference import Predictor
    from model.networks import build_tokenizer

    tok = build_tokenizer(
        ["Small left pleural effusion. No pneumothorax.", "The heart is enlarged. Normal study."]
    )
    model = tiny_model("tiny-teacher", len(tok), seed=0)[0].eval()
    with torch.no_grad():  # make the decoder lean on the head part of its memory, so conditioning shows
        for n, p in model.named_parameters():
            if p.ndim == 2 and "wpe" not in n:
                p.normal_(0, 0.5)
    card = {"model_id": "t", "thresholds": {"findings": {"pleural_effusion": 0.3}}}
    d = save_checkpoint(tmp_path_factory.mktemp("ck") / "t", model, tok, card, {})
    return Predictor.from_dir(d)


def _study(seed: int, modality: str = "CXR") -> Study:
    rng = np.random.default_rng(seed)
    return Study(pixels=rng.random((48, 48), dtype=np.float32), modality=modality, sha256=str(seed))


def test_thresholds_from_the_card_else_half(predictor):
    assert predictor.finding_thresholds["pleural_effusion"] == 0.3
    assert predictor.finding_thresholds["nodule"] == 0.5
    assert predictor.report_conditioning == "labels"


def test_memory_probs_layout_matches_label_conditioned_training(predictor):
    from model.networks.heads import HeadOutput

    f = torch.tensor([[0.0, -0.5, 2.0, -3, -3, -3, -3], [0.0] * 7])  # logits: effusion p=0.38 >= 0.3
    t = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 3.0]])
    heads = HeadOutput(f, t, torch.zeros(2, 3), torch.zeros(2, 7), torch.zeros(2, 4))
    m = predictor.memory_probs(heads, ["CXR", "CT"])
    assert m.shape == (2, len(FINDINGS) + 3)
    np.testing.assert_array_equal(m[0, :7].numpy(), [1, 1, 1, 0, 0, 0, 0])  # sigmoid(0) = 0.5 >= 0.5
    assert torch.isnan(m[0, 7:]).all()  # CXR rows keep the tumour head's probabilities
    assert torch.isnan(m[1, :7]).all()  # CT rows keep the findings head's
    np.testing.assert_array_equal(m[1, 7:].numpy(), [0, 0, 1])
    predictor.report_conditioning = "probs"
    try:
        assert predictor.memory_probs(heads, ["CXR", "CT"]) is None
    finally:
        predictor.report_conditioning = "labels"


def test_predict_decodes_from_the_labels_and_batched_agrees(predictor):
    from model.networks.generation import decode

    study = _study(3)
    style = ReportStyle(max_new_tokens=12)
    pred = predictor.predict(study, style=style)
    with torch.inference_mode():
        x = predictor.image_tensor(study)
        feats = predictor.model.forward_features(x)
        heads = predictor.model.forward_heads(feats, predictor.context_tensor(None))
        probs = predictor.memory_probs(heads, ["CXR"])
        memory = predictor.model.build_memory(feats, heads, probs)
        soft = predictor.model.build_memory(feats, heads)  # the heads' raw probabilities
        want, _ = decode(predictor.model.decoder, memory, predictor.model.prompts("standard", "CXR", 1), style,
                         predictor._period)  # fmt: skip
    assert pred.tokens[: len(want[0])] == [predictor._words[i] for i in want[0]][: len(pred.tokens)]
    assert predictor.predict_batch([study], [None], style)[0].tokens == pred.tokens
    # the soft-probability memory is a different conditioning: the decoder sees other values
    assert not torch.allclose(soft, memory)


def test_teacher_forced_probs_use_the_same_conditioning(predictor):
    study = _study(4)
    pred = predictor.predict(study, style=ReportStyle(max_new_tokens=8))
    if not pred.tokens:
        pytest.skip("the random decoder ended at once")
    probs = predictor.teacher_forced_probs(study, pred.tokens)
    want = np.asarray(pred.token_probs)
    np.testing.assert_allclose(probs[np.arange(len(pred.tokens)), [predictor._vocab[w] for w in pred.tokens]],
                               want, rtol=1e-4, atol=1e-5)  # fmt: skip


def test_prediction_reports_its_conflicts(predictor):
    f = dict.fromkeys(FINDINGS, 0.0) | {"pleural_effusion": 0.4}  # >= the card's 0.3
    t = {"none": 1.0, "benign": 0.0, "malignant": 0.0}
    assert predictor.report_conflicts("CXR", f, t, "Normal study.") == ["denied:pleural_effusion"]
    assert predictor.report_conflicts("CXR", f, t, "Small left pleural effusion.") == []
    assert predictor.report_conflicts("CXR", f, t, "Small left pleural effusion. Large pneumothorax.") == [
        "asserted:pneumothorax"
    ]
    pred = predictor.predict(_study(5), style=ReportStyle(max_new_tokens=12))
    case = cons.measure([pred], predictor.finding_thresholds)["cases"][0]
    assert pred.report_conflicts == [f"denied:{n}" for n in case["denied"]] + [
        f"asserted:{n}" for n in case["asserted"]
    ]
