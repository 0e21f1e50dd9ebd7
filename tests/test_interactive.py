"""model/interactive.py: reports regenerated from edited labels, "more detail" on one finding, splicing.

Tiny random-weight presets pin the mechanics (the heads' own calls reproduce ``predict`` exactly, other
labels change the memory, the encoder can be reused); the shipped weights pin the behaviour a user sees
(a finding switched on is written, switched off is not; a detailed sentence carries a measurement).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.interactive import (
    DETAIL_STYLE,
    ReportLabels,
    encode_study,
    finding_detail,
    label_conflicts,
    regenerate_report,
    sentences_about,
    splice_sentences,
    split_report,
)
from model.types import FINDINGS, TUMOUR_CLASSES, PatientContext, Prediction, ReportStyle, Study

TEXTS = [
    "Small left pleural effusion. No pneumothorax.",
    "The heart is enlarged. Lungs are clear.",
    "A spiculated nodule in the right upper zone. No effusion.",
]

# ----------------------------------------------------------------------------------------------
# ReportLabels


def _pred(modality: str, findings: dict[str, float] | None = None, tumour: dict[str, float] | None = None):
    return Prediction(
        model_id="m",
        modality=modality,
        findings={n: (findings or {}).get(n, 0.1) for n in FINDINGS},
        tumour=tumour or {"none": 0.6, "benign": 0.3, "malignant": 0.1},
        treatments=[],
        report="",
        tokens=[],
        token_probs=[],
        latency_ms={},
        ood_score=0.0,
        ood_flag=False,
    )


def test_labels_from_prediction_use_the_cards_thresholds_and_the_argmax_tumour():
    pred = _pred("CXR", {"nodule": 0.4, "edema": 0.7, "cardiomegaly": 0.55})
    assert ReportLabels.from_prediction(pred).present == ("cardiomegaly", "edema")
    thr = {n: 0.5 for n in FINDINGS} | {"nodule": 0.35, "cardiomegaly": 0.6}
    assert ReportLabels.from_prediction(pred, thr).present == ("nodule", "edema")  # FINDINGS order
    ct = _pred("CT", tumour={"none": 0.2, "benign": 0.3, "malignant": 0.5})
    assert ReportLabels.from_prediction(ct) == ReportLabels("CT", tumour="malignant")


def test_labels_edit_validate_and_embed():
    base = ReportLabels("CXR", present=("edema", "cardiomegaly"))
    assert base.present == ("cardiomegaly", "edema")  # canonical order: equal labels are equal keys
    on = base.with_finding("pneumothorax", True)
    assert on.present == ("cardiomegaly", "pneumothorax", "edema") and on != base
    assert on.with_finding("pneumothorax", False) == base and hash(
        on.with_finding("pneumothorax", False)
    ) == hash(base)
    assert base.only("edema").present == ("edema",)
    mem = on.memory_probs()
    assert mem.shape == (1, len(FINDINGS) + len(TUMOUR_CLASSES))
    assert mem[0, : len(FINDINGS)].tolist() == [float(n in on.present) for n in FINDINGS]
    assert torch.isnan(mem[0, len(FINDINGS) :]).all()  # CXR: the tumour part stays the head's
    ct = ReportLabels("CT", tumour="benign").memory_probs()[0]
    assert torch.isnan(ct[: len(FINDINGS)]).all() and ct[len(FINDINGS) :].tolist() == [0.0, 1.0, 0.0]
    assert ReportLabels("CT", tumour="benign").calls() == {"tumour_benign": True, "tumour_malignant": False}
    with pytest.raises(ValueError, match="unknown finding"):
        ReportLabels("CXR", present=("fracture",))
    with pytest.raises(ValueError, match="tumour class"):
        ReportLabels("CT", tumour="huge")
    with pytest.raises(ValueError, match="needs a tumour class"):
        ReportLabels("CT")


def test_label_conflicts_name_what_the_text_contradicts():
    labels = ReportLabels("CXR", present=("pleural_effusion",))
    assert label_conflicts(labels, "Small right pleural effusion. No pneumothorax.") == []
    assert label_conflicts(labels, "No pleural effusion. Normal study.") == ["denied:pleural_effusion"]
    assert label_conflicts(labels, "Small right pleural effusion. Right pneumothorax.") == [
        "asserted:pneumothorax"
    ]


# ----------------------------------------------------------------------------------------------
# Splicing (pure text)


def test_splice_replaces_the_findings_sentences_in_order_and_keeps_the_rest():
    labels = ReportLabels("CXR", present=("pleural_effusion",))
    report = "There is a small right pleural effusion. No pneumothorax. Small right pleural effusion."
    detail = [
        "There is a small right pleural effusion, measuring 18 mm in depth.",
        "Small right pleural effusion.",
    ]
    assert sentences_about(report, "pleural_effusion", labels) == [
        "There is a small right pleural effusion.",
        "Small right pleural effusion.",
    ]
    out = splice_sentences(report, "pleural_effusion", detail, labels)
    assert out == (
        "There is a small right pleural effusion, measuring 18 mm in depth. No pneumothorax. "
        "Small right pleural effusion."
    )
    # one detailed sentence for two old ones: the second goes; three for one: the extras follow it
    assert splice_sentences(report, "pleural_effusion", detail[:1], labels) == f"{detail[0]} No pneumothorax."
    one = "Small right pleural effusion. No pneumothorax."
    assert (
        splice_sentences(one, "pleural_effusion", detail, labels)
        == f"{detail[0]} {detail[1]} No pneumothorax."
    )
    assert splice_sentences(report, "pleural_effusion", [], labels) == report  # nothing to put in


def test_splice_keeps_a_sentence_that_states_another_finding_too():
    labels = ReportLabels("CXR", present=("pleural_effusion", "cardiomegaly"))
    report = (
        "Small right pleural effusion. The heart is enlarged. "
        "Small right pleural effusion and enlarged cardiac silhouette."
    )
    detail = ["Small right pleural effusion, measuring 28 mm in depth.", "Small right pleural effusion."]
    out = splice_sentences(report, "pleural_effusion", detail, labels)
    assert out == (
        "Small right pleural effusion, measuring 28 mm in depth. The heart is enlarged. "
        "Small right pleural effusion and enlarged cardiac silhouette."
    )
    only_shared = "The heart is enlarged. Effusion and enlarged cardiac silhouette."
    assert split_report(splice_sentences(only_shared, "pleural_effusion", detail, labels)) == [
        "The heart is enlarged.",
        detail[0],
        "Effusion and enlarged cardiac silhouette.",
    ]


def test_splice_without_a_sentence_about_it_goes_after_the_last_finding():
    labels = ReportLabels("CXR", present=("cardiomegaly", "pneumothorax"))
    report = "The heart is enlarged. No pleural effusion. Normal lungs otherwise."
    out = splice_sentences(report, "pneumothorax", ["Small left apical pneumothorax."], labels)
    assert split_report(out) == [
        "The heart is enlarged.",
        "Small left apical pneumothorax.",
        "No pleural effusion.",
        "Normal lungs otherwise.",
    ]
    bare = splice_sentences("No pleural effusion.", "pneumothorax", ["Left pneumothorax."], labels)
    assert bare == "Left pneumothorax. No pleural effusion."


# ----------------------------------------------------------------------------------------------
# Regeneration on tiny random weights


@pytest.fixture(scope="module")
def tiny_predictors(tmp_path_factory):
    from tiny_training import tiny_model

    from model.checkpoints import save_checkpoint
    from model.inference import Predictor
    from model.networks.tokenizer import build_tokenizer

    tok = build_tokenizer(TEXTS)
    out = {}
    for i, preset in enumerate(("tiny-teacher", "tiny-student")):
        model = tiny_model(preset, len(tok), seed=i, spread=True)[0].eval()  # spread: memory moves reports
        d = save_checkpoint(tmp_path_factory.mktemp(preset) / preset, model, tok, {"model_id": preset}, {})
        out[preset] = Predictor.from_dir(d)
    return out


def _study(seed: int, modality: str = "CXR", size: int = 64) -> Study:
    """A smooth blob on a dark background (an in-distribution stand-in for the tiny models)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(8, size - 8, 2)
    px = 0.3 + 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 240) + rng.normal(0, 0.02, (size, size))
    return Study(pixels=np.clip(px, 0, 1).astype(np.float32), modality=modality, sha256=str(seed))


@pytest.mark.parametrize("preset", ["tiny-teacher", "tiny-student"])
@pytest.mark.parametrize("modality", ["CXR", "CT"])
def test_the_heads_own_calls_reproduce_the_served_report(tiny_predictors, preset, modality):
    p = tiny_predictors[preset]
    study, ctx, style = _study(3, modality), PatientContext(age=60), ReportStyle(max_new_tokens=24)
    pred = p.predict(study, ctx, style)
    regen = regenerate_report(p, study, ReportLabels.from_prediction(pred, p.finding_thresholds), style, ctx)
    assert regen.report == pred.report and list(regen.tokens) == pred.tokens
    assert np.allclose(regen.token_probs, pred.token_probs, atol=1e-5)
    assert regen.truncated == pred.truncated and regen.model_id == preset and regen.detail == "standard"
    assert set(regen.latency_ms) == {"encode", "decode", "total"} and regen.latency_ms["encode"] > 0


@pytest.mark.parametrize("preset", ["tiny-teacher", "tiny-student"])
def test_edited_labels_change_the_report_and_the_encoder_is_reused(tiny_predictors, preset):
    p = tiny_predictors[preset]
    study, style = _study(5), ReportStyle(max_new_tokens=24)
    label_sets = [ReportLabels("CXR")] + [ReportLabels("CXR", present=(n,)) for n in FINDINGS]
    label_sets.append(ReportLabels("CXR", present=FINDINGS))
    encoded = encode_study(p, study)
    reports = set()
    for labels in label_sets:
        fresh = regenerate_report(p, study, labels, style)
        reused = regenerate_report(p, study, labels, style, encoded=encoded)
        assert reused.tokens == fresh.tokens and reused.labels == labels
        assert reused.latency_ms["encode"] == 0.0
        reports.add(fresh.report)
    assert len(reports) > 1, "the labels never reached the decoder"
    ct = _study(5, "CT")
    with pytest.raises(ValueError, match="CXR study"):
        regenerate_report(p, study, ReportLabels("CT", tumour="none"))
    with pytest.raises(ValueError, match="another model or modality"):
        regenerate_report(p, ct, ReportLabels("CT", tumour="none"), encoded=encoded)


def test_finding_detail_decodes_detailed_on_that_finding_alone(tiny_predictors, monkeypatch):
    import model.interactive as interactive

    p = tiny_predictors["tiny-student"]
    seen = []
    real = interactive.regenerate_report

    def spy(predictor, study, labels, style=None, context=None, encoded=None):
        seen.append((labels, style))
        return real(predictor, study, labels, style, context, encoded)

    monkeypatch.setattr(interactive, "regenerate_report", spy)
    labels = ReportLabels("CXR", present=("cardiomegaly", "nodule"))
    d = finding_detail(p, _study(1), labels, "nodule")
    assert seen == [(ReportLabels("CXR", present=("nodule",)), DETAIL_STYLE)]
    assert d.finding == "nodule" and d.model_id == "tiny-student" and isinstance(d.sentences, tuple)
    assert all(s in split_report(d.source_report) for s in d.sentences)
    with pytest.raises(ValueError, match="not marked present"):
        finding_detail(p, _study(1), labels, "edema")
    with pytest.raises(ValueError, match="no tumour is marked"):
        finding_detail(p, _study(1, "CT"), ReportLabels("CT", tumour="none"), "tumour")


# ----------------------------------------------------------------------------------------------
# The shipped weights: what a user sees


@pytest.fixture(scope="module")
def shipped():
    from model.inference import SHIPPED_DIR, Predictor

    if not all((SHIPPED_DIR / m / "model.safetensors").exists() for m in ("teacher", "student")):
        pytest.skip("shipped checkpoints are not installed")
    return {m: Predictor.from_dir(m) for m in ("teacher", "student")}


def _phantom(modality: str, seed: int = 3) -> Study:
    from model.data.phantom import make_case

    return Study(pixels=make_case(seed, modality, size=256).image.astype(np.float32), modality=modality)


def _states(report: str, label: str) -> bool:
    from model.evaluate.clinical import default_labeler

    return default_labeler()(report).get(label) in ("positive", "uncertain")


@pytest.mark.parametrize(
    "model_id",
    [
        "teacher",
        pytest.param(
            "student",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 10/14: with an effusion toggled on for this phantom the 160 px KD student still "
                "writes its normal report (the conflict is flagged: denied:pleural_effusion); the teacher follows",
            ),
        ),
    ],
)
def test_shipped_reports_follow_a_toggled_effusion(shipped, model_id):
    p, study = shipped[model_id], _phantom("CXR")
    on = regenerate_report(p, study, ReportLabels("CXR", present=("pleural_effusion",)))
    off = regenerate_report(p, study, ReportLabels("CXR"))
    assert _states(on.report, "pleural_effusion") and on.conflicts == ()
    assert not _states(off.report, "pleural_effusion") and off.conflicts == ()


def test_shipped_teacher_follows_each_finding_and_the_tumour_class(shipped):
    p = shipped["teacher"]
    study = _phantom("CXR")
    followed = [
        n for n in FINDINGS if not regenerate_report(p, study, ReportLabels("CXR", present=(n,))).conflicts
    ]
    assert len(followed) >= 5, f"the teacher wrote only {followed} when set alone"
    ct = _phantom("CT")
    for tumour, label in (("malignant", "tumour_malignant"), ("benign", "tumour_benign")):
        regen = regenerate_report(p, ct, ReportLabels("CT", tumour=tumour))
        assert _states(regen.report, label) and regen.conflicts == (), regen.report
    assert regenerate_report(p, ct, ReportLabels("CT", tumour="none")).conflicts == ()


def test_shipped_more_detail_adds_a_measurement(shipped):
    p, study = shipped["teacher"], _phantom("CXR")
    labels = ReportLabels("CXR", present=("pleural_effusion", "cardiomegaly"))
    standard = regenerate_report(p, study, labels)
    d = finding_detail(p, study, labels, "pleural_effusion")
    assert d.sentences and all(_states(s, "pleural_effusion") for s in d.sentences)
    assert any(ch.isdigit() for ch in " ".join(d.sentences)), d.sentences  # "measuring 28 mm in depth"
    spliced = splice_sentences(standard.report, "pleural_effusion", d.sentences, labels)
    assert d.sentences[0] in spliced and "mm" in spliced and "mm" not in standard.report
    assert _states(spliced, "cardiomegaly") == _states(standard.report, "cardiomegaly")  # the rest kept
    assert not math.isnan(d.latency_ms["total"])
