"""The shipped checkpoints (assets/checkpoints): they load (sha256-verified), fit the parameter budgets,
say what they were trained on, and write reports that agree with their own heads.

These are the weights the dashboard serves; the figures in the README come from benchmarks/ on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.data.imaging import load_study_path
from model.data.labeler import label_report
from model.evaluate.clinical import CE_LABELS, to_binary
from model.inference import Predictor
from model.types import DISCLAIMER, FINDINGS, TUMOUR_CLASSES

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints"
SAMPLES = ROOT / "assets" / "samples"
MODELS = ("teacher", "student", "student_nokd")
AGREEMENT_MIN = 0.9  # measured 134/135 on the shipped samples (2026-12-02)


@pytest.fixture(scope="module")
def predictors():
    missing = [m for m in MODELS if not (SHIPPED / m / "model.safetensors").is_file()]
    assert not missing, f"shipped checkpoints missing: {missing} (run `meddistill pipeline --install`)"
    return {m: Predictor.from_dir(SHIPPED / m, m) for m in MODELS}


@pytest.fixture(scope="module")
def samples():
    index = json.loads((SAMPLES / "index.json").read_text())
    return [(s, load_study_path(SAMPLES / s["image"], modality_hint=s["modality"])) for s in index]


def test_the_shipped_no_kd_student_is_the_kd_students_fair_baseline(predictors):
    """Run v10: both students distilled / trained from the shipped teacher's run, same architecture, same
    labelled subset, the same optimiser steps per stage (the pipeline's no-KD stage reads the KD card)."""
    _, student, nokd = (predictors[m].card for m in MODELS)
    assert nokd["arch_name"] == student["arch_name"] and nokd["parameters"] == student["parameters"]
    # the fair comparison: the no-KD student saw the KD student's labelled subset, nothing more
    assert nokd["training"]["data"]["labelled"] == student["training"]["data"]["labelled"]
    steps = {
        m: {k: v["steps"] for k, v in c["training"]["stages"].items()}
        for m, c in (("kd", student), ("nokd", nokd))
    }
    assert steps["kd"] == steps["nokd"], steps


def test_cards_budgets_and_provenance(predictors):
    teacher, student, nokd = (predictors[m].card for m in MODELS)
    assert teacher["parameters"] <= 35_000_000
    assert student["parameters"] * 10 <= teacher["parameters"]
    assert student["training"]["teacher"]["parameters"] == teacher["parameters"]
    for card in (teacher, student, nokd):
        assert card["weights_dtype"] == "float16"  # half the bytes in git
        assert card["disclaimer"] == DISCLAIMER
        data = card["training"]["data"]
        assert data["labelled"]["n"] > 0 and data["labelled"]["per_source"]
        assert card["metrics"]["validation"]
    assert (student["training"]["data"]["transfer"] or {}).get("n", 0) > 0


def test_reports_agree_with_their_own_heads(predictors, samples):
    """The decoder reads the heads' outputs: what a report says should match what the heads say."""
    agree = total = 0
    for model_id, predictor in predictors.items():
        for sample, study in samples:
            pred = predictor.predict(study)
            assert pred.report and pred.report.endswith("."), (model_id, sample["id"], pred.report)
            assert "[UNK]" not in pred.report
            # what the report says, read as the clinical-efficacy protocol reads it (uncertain -> positive)
            said = dict(zip(CE_LABELS, to_binary(label_report(pred.report)).astype(bool), strict=True))
            if study.modality == "CXR":  # the heads read at the thresholds the served report follows
                pairs = [(pred.findings[f] >= predictor.finding_thresholds[f], said[f]) for f in FINDINGS]
            else:
                top = max(TUMOUR_CLASSES, key=pred.tumour.get)
                said_class = (
                    "malignant"
                    if said["tumour_malignant"]
                    else ("benign" if said["tumour_benign"] else "none")
                )
                pairs = [(top, said_class)]
            agree += sum(a == b for a, b in pairs)
            total += len(pairs)
    print(f"report-head agreement {agree}/{total}")
    assert agree / total >= AGREEMENT_MIN, f"report-head agreement {agree}/{total}"


def test_predictions_are_deterministic_and_models_differ(predictors, samples):
    _, study = samples[0]
    a = predictors["teacher"].predict(study)
    b = predictors["teacher"].predict(study)
    s = predictors["student"].predict(study)
    assert a.report == b.report and a.findings == b.findings
    assert a.findings != s.findings


def test_weights_and_outputs_match_the_recorded_golden():
    """Refactors leave the shipped weights (sha256) and the networks' outputs on a fixed input unchanged.

    Golden: tests/golden/shipped_outputs.json, written by benchmarks/record_shipped_golden.py (re-run it only
    when the shipped weights change on purpose).
    """
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from record_shipped_golden import GOLDEN, fingerprint

    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(MODELS)
    for m in MODELS:
        got, want = fingerprint(SHIPPED / m), golden[m]
        assert got["weights_sha256"] == want["weights_sha256"], f"{m}: the shipped weights changed"
        assert got["input_ids"] == want["input_ids"] and got["next_token_argmax"] == want["next_token_argmax"]
        for key in ("findings_logits", "tumour_logits", "treatment_logits", "next_token_max_logit"):
            assert got[key] == pytest.approx(want[key], abs=2e-4), f"{m}: {key}"
