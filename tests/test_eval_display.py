"""Number formatting, protocol tables and the trade-off measurement behind the Metrics page."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from components.eval_data import format_scorecard, protocol_frames, scorecard_frame, tradeoff_note
from components.figures import fmt
from model.evaluate.tradeoff import statement_recall


@pytest.mark.parametrize(
    "value, unit, text",
    [
        (34272404, "", "34,300,000"),
        (3.427e7, "", "34,300,000"),  # never "3.427e+07"
        (34272404, "count", "34,272,404"),
        (0.91234, "", "0.912"),
        (0.000412, "", "0.000412"),
        (1.0, "", "1.00"),
        (-0.0123, "", "-0.0123"),
        (66.125, "MB", "66.1 MB"),
        (312.4, "ms", "312 ms"),
        (0.9523, "%", "95.2 %"),
        (0.99981, "%", "100 %"),
        (7.21, "%", "721 %"),
        (0.15, "x", "0.150x"),
        (None, "", "–"),
        (math.nan, "MB", "–"),
        (math.inf, "", "–"),
    ],
)
def test_fmt(value, unit, text):
    assert fmt(value, unit) == text


def test_scorecard_units_and_empty_rows():
    result = {
        "model_order": ["teacher", "student"],
        "models": {
            "teacher": {"metrics": {"efficiency": {"parameters": 25557032, "checkpoint_mb": 97.64}}},
            "student": {"metrics": {"efficiency": {"parameters": 1841076, "checkpoint_mb": 3.81}}},
        },
        "retention": {"reference": "teacher", "ratios": {"student": {"efficiency.parameters": 0.07204}}},
    }
    card = scorecard_frame(result)
    assert list(card.index) == ["Parameters", "Checkpoint (MB)"]  # rows nobody has are left out
    shown = format_scorecard(card)
    assert shown.loc["Parameters", "teacher"] == "25,557,032"
    assert shown.loc["Checkpoint (MB)", "teacher"] == "97.6 MB"
    assert shown.loc["Parameters", "student / teacher"] == "7.20 %"
    assert shown.loc["Checkpoint (MB)", "student / teacher"] == "–"


def test_protocol_frames_flatten_nested_values():
    frames = dict(
        protocol_frames(
            {"reference_model": "teacher", "clinical": {"labels": ["a", "b"], "averaging": {"micro": "pooled"}}}
        )
    )
    assert list(frames) == ["General", "Clinical"]
    assert isinstance(frames["Clinical"], pd.DataFrame)
    assert frames["Clinical"].loc["labels", "protocol"] == "a, b"
    assert frames["Clinical"].loc["averaging", "protocol"] == "micro: pooled"


def test_statement_recall_counts_negations():
    ref = [{"pleural_effusion": "positive", "pneumothorax": "negative", "nodule": None}]
    # a report that stops after its positive finding: clinical F1 would be perfect, recall is 1/2
    assert statement_recall([{"pleural_effusion": "positive"}], ref) == 0.5
    assert statement_recall([{"pleural_effusion": "positive", "pneumothorax": "negative"}], ref) == 1.0
    assert statement_recall([{"pleural_effusion": "negative", "pneumothorax": "negative"}], ref) == 0.5
    assert statement_recall([{}], [{"nodule": None}]) is None


def _trade(f1, recall=None, complete=None):
    cur = {"max_new_tokens": [16, 64], "clinical_f1": f1, "mean_tokens": [16.0, 40.0]}
    if recall:
        cur["statement_recall"] = recall
    if complete:
        cur["positives_complete"] = complete
    return {"max_new_tokens": [16, 64], "curves": {"teacher": {"detailed": cur}}}


def test_tradeoff_note_only_when_flat_and_with_measured_numbers():
    assert tradeoff_note(_trade([0.3, 0.6]), ["teacher"]) is None  # it moves: nothing to explain
    note = tradeoff_note(_trade([0.60, 0.605], recall=[0.4, 0.8], complete=[0.98, 1.0]), ["teacher"])
    assert "flat" in note and "positive findings only" in note
    assert "98.0 %" in note  # share of reports complete at the smallest cap
    assert "40.0 %" in note and "80.0 %" in note  # statement recall rises


def test_case_study_message_when_neither_data_nor_seed(tmp_path):
    from components.eval_data import case_study

    result = {"name": "real", "data": {"dir": str(tmp_path / "gone")}}
    msg = case_study(result, {"id": "00001234_000", "modality": "CXR", "source": "nih1000"})
    assert isinstance(msg, str)
    assert "00001234_000" in msg and str(tmp_path / "gone") in msg and "copy the data folder back" in msg
    assert "Error" not in msg  # a sentence for the user, no exception class name
