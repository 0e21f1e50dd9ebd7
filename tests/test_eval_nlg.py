"""Report metrics agree with pycocoevalcap on fixed inputs; optional parts skip cleanly."""

from __future__ import annotations

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from model.evaluate import nlg

HYP = [
    "The heart is enlarged. No pleural effusion.",
    "Small left pleural effusion, no pneumothorax.",
    "Lungs are clear.",
    "",
]
REF = [
    "Heart size is enlarged. There is no pleural effusion.",
    "Small left pleural effusion. No pneumothorax.",
    "The lungs are clear. No focal consolidation.",
    "Right upper zone nodule measuring 12 mm.",
]
# the same texts tokenised by hand (lowercase, punctuation dropped)
HYP_TOK = ["the heart is enlarged no pleural effusion", "small left pleural effusion no pneumothorax",
           "lungs are clear", ""]  # fmt: skip
REF_TOK = ["heart size is enlarged there is no pleural effusion", "small left pleural effusion no pneumothorax",
           "the lungs are clear no focal consolidation", "right upper zone nodule measuring 12 mm"]  # fmt: skip


def _coco(tok):
    return {i: [t] for i, t in enumerate(tok)}


def test_tokenizer():
    assert [nlg.tokenize(h) for h in HYP] == HYP_TOK
    assert nlg.tokenize("A 1.5 cm X-ray opacity; don't.") == "a 1.5 cm x-ray opacity don't"


def test_agrees_with_pycocoevalcap():
    out = nlg.report_metrics(HYP, REF, meteor_enabled=False, semantic_enabled=False)
    s = out["scores"]
    bleu, _ = Bleu(4).compute_score(_coco(REF_TOK), _coco(HYP_TOK), verbose=0)
    for n in range(4):
        assert s[f"bleu_{n + 1}"] == pytest.approx(bleu[n], rel=1e-12)
    assert s["rouge_l"] == pytest.approx(Rouge().compute_score(_coco(REF_TOK), _coco(HYP_TOK))[0])
    assert s["cider_d"] == pytest.approx(Cider().compute_score(_coco(REF_TOK), _coco(HYP_TOK))[0])
    # case 2 is identical after tokenisation
    assert out["per_case"]["bleu_4"][1] == pytest.approx(1.0, abs=1e-6)
    assert out["per_case"]["rouge_l"][1] == pytest.approx(1.0)
    assert out["per_case"]["rouge_l"][3] == 0.0
    assert out["skipped"] == {"meteor": "disabled", "semantic": "disabled"}
    assert s["meteor"] is None and s["semantic"] is None


def test_identical_hypotheses_score_one():
    out = nlg.report_metrics(REF, REF, meteor_enabled=False, semantic_enabled=False)
    for n in range(1, 5):
        assert out["scores"][f"bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert out["scores"]["rouge_l"] == pytest.approx(1.0)


def test_rouge_l_hand_computed():
    # LCS("a b c d", "a c d e") = 3 -> P = R = 3/4 -> F(beta=1.2) = 0.75
    score, _ = nlg.rouge_l(["a c d e"], ["a b c d"])
    assert score == pytest.approx(0.75)


@pytest.mark.skipif(not nlg.meteor_available(), reason="java not on PATH")
def test_meteor_with_java():
    score, per_case = nlg.meteor(HYP[:2] + [""], REF[:3])
    assert 0.0 < score < 1.0
    assert per_case[2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.skipif(nlg.semantic_model_dir() is None, reason="optional extra 'semantic' not installed")
def test_semantic_similarity_offline():
    score, per_case = nlg.semantic_similarity(["Small left pleural effusion.", "Heart is enlarged."],
                                              ["Small left pleural effusion.", "Lungs are clear."])  # fmt: skip
    assert per_case[0] == pytest.approx(1.0, abs=1e-4)
    assert per_case[1] < 0.9


def test_missing_optional_parts_are_skipped(monkeypatch):
    monkeypatch.setattr(nlg, "meteor_available", lambda: False)
    monkeypatch.setattr(nlg, "semantic_model_dir", lambda: None)
    out = nlg.report_metrics(HYP, REF)
    assert out["scores"]["meteor"] is None and "java" in out["skipped"]["meteor"]
    assert out["scores"]["semantic"] is None and "not installed" in out["skipped"]["semantic"]
