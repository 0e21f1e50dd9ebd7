"""Reports that follow their labels (model/follow_labels.py, issue 10 Deliver 6): contradicting sentences go,
the model's own sentence comes in for a finding it calls present but does not state, limits hold."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from model import follow_labels as fl
from model.interactive import ReportLabels
from model.types import ReportStyle


def _words(text: str) -> list[str]:
    return text.replace(".", " .").replace(",", " ,").split()


def test_sentence_spans_split_after_each_period_and_keep_a_trailing_fragment():
    toks = _words("No effusion. Heart is enlarged. Small")
    spans = fl.sentence_spans(toks)
    assert [toks[a:b] for a, b in spans] == [
        ["No", "effusion", "."],
        ["Heart", "is", "enlarged", "."],
        ["Small"],
    ]
    assert fl.sentence_spans([]) == []


def test_one_negative_sentence_denies_only_what_it_names_but_normal_study_denies_all():
    calls = fl.sentence_calls("No pleural effusion or pneumothorax.", "CXR")
    assert calls["pleural_effusion"] == "denied" and calls["pneumothorax"] == "denied"
    assert calls["nodule"] == "silent"  # the whole-report labeler would read this sentence as "normal"
    normal = fl.sentence_calls("Normal study.", "CXR")
    assert all(v == "denied" for v in normal.values())
    assert (
        fl.sentence_calls("The cardiomediastinal silhouette is within normal limits.", "CXR")["nodule"]
        == "silent"
    )


def test_contradicts_names_denials_and_assertions():
    calls = {"pleural_effusion": "denied", "nodule": "present", "edema": "silent"}
    wanted = {"pleural_effusion": True, "nodule": False, "edema": True}
    assert sorted(fl.contradicts(calls, wanted)) == ["asserted:nodule", "denied:pleural_effusion"]


class _Cfg:
    max_len = 104


def _stub():
    return SimpleNamespace(cfg=_Cfg())


def _own(sentences: dict[str, str]):
    """A stand-in for the model's own decode: label -> the sentence it writes about it."""

    def own(predictor, modality, features, heads, labels, name, style, wanted):
        if name not in sentences:
            return []
        toks = _words(sentences[name])
        return [(toks, [0.5] * len(toks), fl.sentence_calls(sentences[name], modality))]

    return own


def _follow(monkeypatch, report: str, labels: ReportLabels, own: dict[str, str], style=None):
    monkeypatch.setattr(fl, "_own_sentences", _own(own))
    toks = _words(report)
    return fl.follow_labels(
        _stub(), labels.modality, None, None, toks, [0.9] * len(toks), labels, style or ReportStyle()
    )


def test_contradicting_sentences_are_dropped_and_the_models_own_sentence_added(monkeypatch):
    from model.networks.tokenizer import detokenize

    labels = ReportLabels("CXR", present=("cardiomegaly", "pleural_effusion"))
    r = _follow(
        monkeypatch,
        "The heart is enlarged. No pleural effusion or pneumothorax. No nodule. Normal study.",
        labels,
        {"pleural_effusion": "There is a small left pleural effusion."},
    )
    text = detokenize(r.tokens)
    assert text == "The heart is enlarged. There is a small left pleural effusion. No nodule."
    assert r.dropped == ("No pleural effusion or pneumothorax.", "Normal study.")
    assert r.added == ("pleural_effusion",) and not r.conflicts
    assert "denied:pleural_effusion" in r.decoder_conflicts
    assert len(r.token_probs) == len(r.tokens) and 0.5 in r.token_probs  # the added words keep their probs
    assert "removed" in r.describe() and "pleural effusion" in r.describe()


def test_a_report_that_states_an_absent_finding_loses_that_sentence(monkeypatch):
    labels = ReportLabels("CXR", present=())
    r = _follow(monkeypatch, "There is a right pneumothorax. No pleural effusion.", labels, {})
    assert r.dropped == ("There is a right pneumothorax.",) and r.tokens == tuple(
        _words("No pleural effusion.")
    )
    assert r.decoder_conflicts == ("asserted:pneumothorax",) and not r.conflicts


def test_a_consistent_report_is_left_alone(monkeypatch):
    labels = ReportLabels("CXR", present=("pneumothorax",))
    report = "There is a small left pneumothorax. No pleural effusion. Small left pneumothorax."
    r = _follow(monkeypatch, report, labels, {"pneumothorax": "should not be used."})
    assert r.tokens == tuple(_words(report)) and not r.changed and r.describe() == ""


def test_limits_hold_and_what_did_not_fit_is_said(monkeypatch):
    labels = ReportLabels("CXR", present=("cardiomegaly", "pleural_effusion"))
    r = _follow(
        monkeypatch,
        "The heart is enlarged.",
        labels,
        {"pleural_effusion": "There is a small left pleural effusion."},
        ReportStyle(max_sentences=1),
    )
    assert r.tokens == tuple(_words("The heart is enlarged.")) and r.not_added == ("pleural_effusion",)
    r = _follow(monkeypatch, "The heart is enlarged.", labels, {}, ReportStyle())
    assert r.not_added == ("pleural_effusion",)  # the model wrote no sentence about it


def test_nothing_kept_and_nothing_to_add_keeps_the_decoders_report(monkeypatch):
    labels = ReportLabels("CXR", present=("pneumothorax",))
    r = _follow(monkeypatch, "Normal study.", labels, {})
    assert r.tokens == ("Normal", "study", ".") and r.conflicts == r.decoder_conflicts != ()


def test_the_decoders_contradictions_are_read_as_the_consistency_measure_reads_a_whole_report(monkeypatch):
    """A report of negatives only says nothing positive: read whole it is "normal", so it denies the
    pneumothorax the head calls present (consistency.py), though no one sentence names it."""
    labels = ReportLabels("CXR", present=("pneumothorax",))
    r = _follow(monkeypatch, "No pleural effusion. No focal consolidation.", labels, {})
    assert not r.changed and r.not_added == ("pneumothorax",)
    assert r.decoder_conflicts == r.conflicts == ("denied:pneumothorax",)


def test_ct_sentences_follow_the_tumour_class(monkeypatch):
    labels = ReportLabels("CT", tumour="benign")
    r = _follow(
        monkeypatch,
        "There is a spiculated mass in the right lower lobe, suspicious for malignancy.",
        labels,
        {"tumour_benign": "There is a 12 mm smooth nodule in the left upper lobe, likely benign."},
    )
    assert r.added == ("tumour_benign",) and not r.conflicts, r


@pytest.mark.parametrize("model_id", ["teacher", "student"])
def test_served_reports_on_the_shipped_samples_contradict_their_heads_no_more_than_the_decoder(model_id):
    """On the shipped weights: following the heads never adds a contradiction, and no kept sentence
    contradicts the heads (what remains is a finding the decoder wrote nothing about)."""
    import json

    from model.data.imaging import load_study_path
    from model.inference import Predictor
    from model.networks.tokenizer import detokenize

    samples = Path(__file__).resolve().parents[1] / "assets" / "samples"
    p = Predictor.from_dir(model_id)
    seen_change = False
    for entry in json.loads((samples / "index.json").read_text()):
        modality = entry["modality"]
        pred = p.predict(load_study_path(samples / entry["image"], modality_hint=modality))
        assert len(pred.report_conflicts) <= len(pred.decoder_conflicts)
        if not pred.report_edits:  # nothing changed: the raw decoder's contradictions are the served ones
            assert pred.decoder_conflicts == pred.report_conflicts, (entry["id"], pred.report)
        labels = p.head_labels(
            modality, [pred.findings[n] for n in pred.findings], list(pred.tumour.values())
        )
        if pred.report_edits:
            seen_change = True
            for a, b in fl.sentence_spans(pred.tokens):
                assert not fl.contradicts(
                    fl.sentence_calls(detokenize(pred.tokens[a:b]), modality), labels.calls()
                )
        assert len(pred.tokens) == len(pred.token_probs)
    assert seen_change  # the shipped decoders do contradict their heads somewhere on the samples
