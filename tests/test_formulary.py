"""Educational formulary: each rule fires on its finding, each contraindication changes the outcome."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.formulary import (
    CONTEXT_CHECKS,
    FINDING_CHECKS,
    NOT_ADVICE,
    RULES,
    reason_for,
    suggest_treatments,
    treatment_vector,
)
from model.types import TREATMENTS, Finding, PatientContext

NONE = PatientContext()


def names(findings, tumour=None, context=NONE) -> list[str]:
    return [s.name for s in suggest_treatments(findings, tumour, context)]


def test_rulebook_is_well_formed():
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.suggests in TREATMENTS and r.when and r.reason and r.note == NOT_ADVICE
        assert r.condition is None or r.condition in FINDING_CHECKS
        for c in r.unless:
            assert c.condition in CONTEXT_CHECKS and (c.alternative is None or c.alternative in TREATMENTS)
        assert set(r.to_dict()) >= {"id", "when", "suggests", "unless", "reason", "note"}
    assert "educational" in __import__("model.data.formulary").data.formulary.__doc__.lower()


@pytest.mark.parametrize(
    "findings,tumour,expected",
    [
        ([Finding("consolidation", "right", "lower")], None, ["beta_lactam_antibiotic"]),
        ([Finding("edema", "bilateral")], None, ["loop_diuretic"]),
        ([Finding("pleural_effusion", "left", severity="mild"), Finding("cardiomegaly", ratio=0.6)], None,
         ["loop_diuretic", "ace_inhibitor"]),
        ([Finding("pleural_effusion", "left", severity="mild")], None, []),  # effusion alone: no drug
        ([Finding("cardiomegaly", ratio=0.58)], None, ["ace_inhibitor"]),
        ([Finding("pneumothorax", "right", size_mm=12)], None, ["chest_drain_referral"]),
        ([Finding("pleural_effusion", "right", severity="severe")], None, ["chest_drain_referral"]),
        ([Finding("pleural_effusion", "right", size_mm=60)], None, ["chest_drain_referral"]),
        ([Finding("pleural_effusion", "right", size_mm=30)], None, []),
        ([], "malignant", ["oncology_referral"]),
        ([Finding("tumour", "left", "upper", 9, character="smooth")], "benign", []),
        ([], "none", []),
        ([Finding("nodule", "right", "upper", 24.0, character="smooth")], None, ["oncology_referral"]),
        ([Finding("nodule", "right", "upper", 12.0, character="spiculated")], None, ["oncology_referral"]),
        ([Finding("nodule", "right", "upper", 12.0, character="calcified")], None, []),
        ([Finding("atelectasis", "left", "lower")], None, ["respiratory_physiotherapy"]),
        ([], None, []),
    ],
)  # fmt: skip
def test_each_rule(findings, tumour, expected):
    out = suggest_treatments(findings, tumour, NONE)
    assert [s.name for s in out] == [t for t in TREATMENTS if t in expected]
    for s in out:
        assert s.probability == 1.0 and NOT_ADVICE in s.reason
    v = treatment_vector(findings, tumour, NONE)
    assert v.dtype == np.float32 and v.shape == (len(TREATMENTS),)
    assert [TREATMENTS[i] for i in np.flatnonzero(v)] == [s.name for s in out]


def test_penicillin_allergy_gives_a_macrolide():
    cons = [Finding("consolidation", "right", "lower")]
    out = suggest_treatments(cons, None, PatientContext(allergies=("penicillin",)))
    assert [s.name for s in out] == ["macrolide_antibiotic"]
    assert "penicillin allergy" in out[0].reason and "consolidation" in out[0].reason.lower()


@pytest.mark.parametrize(
    "findings",
    [[Finding("edema", "bilateral")], [Finding("pleural_effusion", "left"), Finding("cardiomegaly")]],
)
def test_sulfonamide_allergy_withholds_loop_diuretic(findings):
    ctx = PatientContext(allergies=("sulfonamide",))
    assert "loop_diuretic" not in names(findings, None, ctx)
    why = reason_for("loop_diuretic", findings, None, ctx)
    assert "contraindicated" in why and "sulfonamide" in why


@pytest.mark.parametrize(
    "ctx,word",
    [
        (PatientContext(sex="F", age=30, pregnant=True), "pregnancy"),
        (PatientContext(renal_impairment=True), "renal impairment"),
        (PatientContext(allergies=("ace_inhibitor",)), "ACE inhibitor allergy"),
    ],
)
def test_ace_inhibitor_contraindications(ctx, word):
    cardio = [Finding("cardiomegaly", ratio=0.6)]
    assert names(cardio, None, ctx) == []
    why = reason_for("ace_inhibitor", cardio, None, ctx)
    assert "contraindicated" in why and word in why
    assert names(cardio, None, PatientContext(age=70, sex="M", renal_impairment=False)) == ["ace_inhibitor"]


def test_referrals_have_no_contraindication():
    heavy = PatientContext(allergies=("penicillin", "sulfonamide", "ace_inhibitor"), renal_impairment=True)
    fs = [Finding("pneumothorax", "left"), Finding("atelectasis", "left")]
    assert names(fs, "malignant", heavy) == [
        "chest_drain_referral",
        "oncology_referral",
        "respiratory_physiotherapy",
    ]


def test_same_treatment_from_two_rules_is_listed_once_with_both_reasons():
    fs = [Finding("edema", "bilateral"), Finding("pleural_effusion", "left"), Finding("cardiomegaly")]
    out = [s for s in suggest_treatments(fs, None, NONE) if s.name == "loop_diuretic"]
    assert len(out) == 1 and "oedema" in out[0].reason and "cardiomegaly" in out[0].reason


def test_reason_for_model_outputs():
    cons = [Finding("consolidation", "right", "lower")]
    allergic = PatientContext(allergies=("penicillin",))
    assert "fits" in reason_for("beta_lactam_antibiotic", cons, None, NONE)
    why = reason_for("beta_lactam_antibiotic", cons, None, allergic)
    assert "contraindicated" in why and "macrolide" in why
    assert "alternative" in reason_for("macrolide_antibiotic", cons, None, allergic)
    unsupported = reason_for("macrolide_antibiotic", cons, None, NONE)
    assert "not supported" in unsupported and "penicillin" in unsupported
    assert "not supported" in reason_for("oncology_referral", cons, None, NONE)
    assert "fits" in reason_for("oncology_referral", ["nodule"], "malignant", None)
    with pytest.raises(ValueError):
        reason_for("aspirin", cons, None, NONE)


def test_accepts_bare_names_and_no_context():
    assert names(["consolidation", "atelectasis"], None, None) == [
        "beta_lactam_antibiotic",
        "respiratory_physiotherapy",
    ]
    assert names(["nodule"], None, None) == []  # size and character unknown: no referral


def test_phantom_truths_get_labels():
    from model.data.phantom import sample_truth

    rng = np.random.default_rng(0)
    counts = np.zeros(len(TREATMENTS))
    for i in range(300):
        t = sample_truth(rng, "CXR" if i % 2 else "CT", str(i))
        counts += treatment_vector(t.findings, t.tumour, t.context)
    assert (counts > 0).all(), dict(
        zip(TREATMENTS, counts, strict=True)
    )  # every item occurs in the phantom set
