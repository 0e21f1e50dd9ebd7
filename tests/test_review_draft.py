"""model/review_draft.py: a reviewer's draft is checked (plain sentences) and becomes a storable Review."""

from __future__ import annotations

import numpy as np
import pytest

from model.review_draft import (
    MAX_NOTE_CHARS,
    MAX_REPORT_CHARS,
    FindingCall,
    ReviewDraft,
    build_review,
    clean_text,
    draft_problem,
    model_outputs,
)
from model.types import FINDINGS, Prediction


def _calls(**present) -> tuple[FindingCall, ...]:
    return tuple(FindingCall(n, n in present, *(present.get(n) or (None, None))) for n in FINDINGS)


def _draft(text="Small right pleural effusion.", note="", modality="CXR", tumour=None, calls=None):
    calls = _calls(pleural_effusion=("right", "mild")) if calls is None else calls
    return ReviewDraft(modality, calls if modality == "CXR" else (), tumour, text, note)


def _pred(model_id: str) -> Prediction:
    return Prediction(
        model_id=model_id,
        modality="CXR",
        findings={n: 0.25 for n in FINDINGS},
        tumour={"none": 0.5, "benign": 0.25, "malignant": 0.25},
        treatments=[],
        report=f"{model_id} report.",
        tokens=[],
        token_probs=[],
        latency_ms={},
        ood_score=0.0,
        ood_flag=False,
    )


def test_a_sane_draft_passes():
    assert draft_problem(_draft()) is None
    assert draft_problem(_draft(modality="CT", tumour="benign")) is None


@pytest.mark.parametrize(
    ("draft", "says"),
    [
        (_draft(text=""), "report text is empty"),
        (_draft(text=" \n\t\u200b "), "report text is empty"),  # invisible characters only
        (_draft(text="x" * 100_000), "100,000 characters long"),
        (_draft(text="... !!! 12"), "no words"),
        (_draft(note="n" * (MAX_NOTE_CHARS + 1)), "note is"),
        (_draft(modality="CT", tumour=None), "tumour class"),
        (_draft(calls=_calls()[:3]), "every finding"),
        (_draft(calls=_calls(cardiomegaly=("left", None))), "side does not apply to cardiomegaly"),
        (_draft(calls=_calls(nodule=(None, "severe"))), "severity does not apply to nodule"),
    ],
)
def test_absurd_drafts_are_refused_with_a_plain_sentence(draft, says):
    problem = draft_problem(draft)
    assert problem is not None and says in problem
    assert problem[0].isupper() and problem.endswith(".") and "Traceback" not in problem


def test_the_report_limit_is_the_stores():
    from model.review import validation

    assert MAX_REPORT_CHARS == validation.MAX_REPORT_CHARS
    assert draft_problem(_draft(text="a" * MAX_REPORT_CHARS)) is None
    assert draft_problem(_draft(text="a" * (MAX_REPORT_CHARS + 1))) is not None


def test_clean_text_drops_controls_and_keeps_lines():
    assert clean_text("  a\u202eb\x00c\nd\te\u200b  ") == "abc\nd\te"


def test_build_review_keeps_labels_text_and_both_outputs_and_nothing_identifying(tmp_path):
    from model.review import ReviewStore, pixel_sha256

    preds = {"teacher": _pred("teacher"), "student": _pred("student"), "student_nokd": _pred("student_nokd")}
    draft = _draft(text="  Small right pleural effusion.\x00 ", note="checked \u202eagain")
    pixels = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    review = build_review(draft, pixel_sha256(pixels), preds, 3)
    assert review.report_text == "Small right pleural effusion." and review.note == "checked again"
    assert review.present_findings() == ["pleural_effusion"]
    assert review.finding("pleural_effusion").side == "right" and review.finding("nodule").present is False
    assert review.model_version == 3 and review.tumour is None and review.source == "dashboard"
    assert set(review.outputs) == {"teacher", "student"} == set(model_outputs(preds))
    assert review.outputs["student"]["report"] == "student report."
    assert set(review.outputs["teacher"]) == {"report", "findings", "tumour"}
    store = ReviewStore.open(data_dir=tmp_path / "data", url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    first = store.save_review(review, pixels)
    again = store.save_review(build_review(draft, pixel_sha256(pixels), preds, 3), pixels)  # a later time
    assert first == again and store.count() == 1
    ct = build_review(_draft(modality="CT", tumour="malignant"), pixel_sha256(pixels), preds, None)
    assert ct.findings == () and ct.tumour == "malignant"
