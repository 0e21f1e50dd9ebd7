"""Scoring: finding recall by severity and for subtle cases (issue 10 item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from model.evaluate.scoring import GRADES, ModelRun, recall_by_grade
from model.evaluate.summary import grade_table
from model.types import FINDINGS, CaseTruth, Finding


def _truth(*findings: Finding) -> CaseTruth:
    return CaseTruth("t", "CXR", findings)


def _run(*rows: dict[str, float]) -> ModelRun:
    run = ModelRun()
    run.findings = [np.asarray([r.get(n, 0.0) for n in FINDINGS], np.float64) for r in rows]
    return run


THRESHOLDS = {"findings": {**dict.fromkeys(FINDINGS, 0.5), "nodule": 0.3}}


def test_recall_by_grade_counts_each_stratum():
    mild_subtle = Finding("pleural_effusion", severity="mild", size_mm=18.0, subtle=True)
    mild = Finding("pleural_effusion", severity="mild", size_mm=30.0, subtle=False)
    severe = Finding("pleural_effusion", severity="severe", size_mm=150.0, subtle=False)
    small_nodule = Finding("nodule", severity="mild", size_mm=6.0, subtle=True)
    truths = [_truth(mild_subtle), _truth(mild), _truth(severe), _truth(small_nodule), None, _truth()]
    run = _run(
        {"pleural_effusion": 0.2},  # subtle effusion missed
        {"pleural_effusion": 0.5},  # at the threshold: detected
        {"pleural_effusion": 0.9},
        {"nodule": 0.35},  # above the nodule's own threshold (0.3)
        {"pleural_effusion": 0.9},  # a real case without truth: skipped
        {"pleural_effusion": 0.9},  # a normal case: a false positive, not a recall stratum
    )
    out = recall_by_grade(truths, run, THRESHOLDS)
    assert set(out) == {"pleural_effusion", "nodule"}  # findings without cases are absent
    eff = out["pleural_effusion"]
    assert list(eff) == ["mild", "severe", "subtle", "not_subtle"]  # GRADES order, strata with cases only
    assert eff["mild"] == {"n": 2, "detected": 1, "recall": 0.5}
    assert eff["severe"] == {"n": 1, "detected": 1, "recall": 1.0}
    assert eff["subtle"] == {"n": 1, "detected": 0, "recall": 0.0}
    assert eff["not_subtle"] == {"n": 2, "detected": 2, "recall": 1.0}
    assert out["nodule"]["subtle"]["recall"] == 1.0


def test_findings_without_grades_and_tumours_are_left_out():
    truths = [_truth(Finding("nodule", size_mm=12.0)), CaseTruth("c", "CT", (Finding("tumour", size_mm=20),))]
    assert recall_by_grade(truths, _run({"nodule": 0.9}, {}), THRESHOLDS) == {}
    with pytest.raises(ValueError):  # one prediction per case
        recall_by_grade(truths, _run({}), THRESHOLDS)


def test_grade_table_lists_each_model_and_finding():
    per = {"mild": {"n": 4, "detected": 1, "recall": 0.25}, "subtle": {"n": 2, "detected": 0, "recall": 0.0}}
    models = {
        "teacher": {"per_finding": {"findings_by_grade": {"pleural_effusion": per}}},
        "student": {"per_finding": {}},
    }
    lines = grade_table(models, ["teacher", "student"])
    assert lines[0].startswith("## Finding recall by severity")
    assert (
        "| model | finding | mild | moderate | severe | subtle | not subtle |" in lines and len(GRADES) == 5
    )
    assert "| teacher | pleural_effusion | 0.25 (4) | - | - | 0.00 (2) | - |" in lines
    assert grade_table({"student": {"per_finding": {}}}, ["student"]) == []
