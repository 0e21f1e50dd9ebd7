"""Location agreement: side / zone / lobe a report states vs the phantom's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.phantom import sample_truth
from model.data.reports import write_report
from model.evaluate.location import case_location, location_agreement, stated_locations
from model.types import CaseTruth, Finding


def _cases(n: int = 120):
    truths, texts = [], []
    for modality in ("CXR", "CT"):
        for i in range(n):
            t = sample_truth(np.random.default_rng(i), modality, f"{modality}{i}")
            truths.append(t)
            texts.append(
                write_report(t, ("brief", "standard", "detailed")[i % 3], np.random.default_rng(i + 1))
            )
    return truths, texts


def test_reference_reports_agree_with_their_truth():
    truths, texts = _cases()
    r = location_agreement(truths, texts)
    for group in ("findings", "tumour"):
        assert r[group]["n_statements"] > 20
        assert r[group]["side_agreement"] == 1.0
        assert r[group]["zone_agreement"] == 1.0
        assert r[group]["invented_rate"] == 0.0
    assert r["tumour"]["side_recall"] == 1.0  # every CT tumour sentence names its lobe


def test_constant_location_scores_like_the_baseline_and_is_invented_on_normals():
    truths, _ = _cases()
    ct = [t for t in truths if t.modality == "CT"]
    always = ["A spiculated nodule in the right lower lobe, suspicious for malignancy."] * len(ct)
    r = location_agreement(ct, always)["tumour"]
    located = [f for t in ct for f in t.findings if f.name == "tumour"]
    right = sum(f.side == "right" for f in located) / len(located)
    assert r["side_agreement"] == pytest.approx(right)
    lower = sum(f.zone == "lower" for f in located) / len(located)
    assert r["zone_agreement"] == pytest.approx(lower)
    n_normal = sum(t.tumour in (None, "none") for t in ct)
    assert r["absent_finding"] == n_normal  # a tumour stated on a normal slice is invented
    assert r["invented_rate"] > r["absent_finding_rate"] > 0


def test_wrong_side_and_contradictions():
    truth = CaseTruth("c", "CXR", findings=(Finding("pleural_effusion", side="left", zone="basal"),
                                            Finding("nodule", side="right", zone="upper")))  # fmt: skip
    c = case_location(truth, "Small right pleural effusion. Nodule in the right upper zone.")
    assert c["side_stated"] == 2 and c["side_correct"] == 1 and c["wrong_location"] == 1
    assert c["zone_correct"] == 1
    # left in the findings, right in the impression: stated, not correct
    c = case_location(truth, "Left pleural effusion. Impression: right pleural effusion.")
    assert c["side_stated"] == 1 and c.get("side_correct", 0) == 0
    # negated findings make no claim; a finding the truth lacks is invented
    assert stated_locations("No left pleural effusion. No pneumothorax.", "CXR") == []
    c = case_location(truth, "Consolidation at the left base.")
    assert c["absent_finding"] == 1


def test_lobes_map_to_zones():
    (claim,) = stated_locations("A smooth nodule in the lingula, well circumscribed.", "CT")
    assert (claim.name, claim.side, claim.zone) == ("tumour", "left", "middle")
    (claim,) = stated_locations("Right upper lobe collapse with volume loss.", "CXR")
    assert (claim.name, claim.side, claim.zone) == ("atelectasis", "right", "upper")
