"""Phantom engine: determinism, masks that agree with the truth, anatomy measures, prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.phantom import PhantomCase, cardiothoracic_ratio, make_case, render_case, sample_truth
from model.types import FINDINGS, CaseTruth, Finding, PatientContext

SIZE = 128  # small images keep the suite fast; geometry is resolution-independent


def _cxr(*findings: Finding, seed: int = 3, size: int = 192) -> PhantomCase:
    return render_case(CaseTruth("t", "CXR", tuple(findings), context=PatientContext(60, "M")), seed, size)


def _ct(tumour: str, finding: Finding | None, seed: int = 3) -> PhantomCase:
    truth = CaseTruth("t", "CT", (finding,) if finding else (), tumour, context=PatientContext(60, "M"))
    return render_case(truth, seed, 256)


@pytest.mark.parametrize("modality", ["CXR", "CT"])
def test_same_seed_same_bytes_and_different_seeds_differ(modality):
    a, b, c = make_case(5, modality, SIZE), make_case(5, modality, SIZE), make_case(6, modality, SIZE)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.truth == b.truth
    assert a.masks.keys() == b.masks.keys() and all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("modality", ["CXR", "CT"])
@pytest.mark.parametrize("size", [64, 128])
def test_image_type_range_shape(modality, size):
    case = make_case(11, modality, size)
    assert case.image.dtype == np.float32 and case.image.shape == (size, size)
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0
    assert case.pixel_spacing[0] > 0
    for m in case.masks.values():
        assert m.dtype == bool and m.shape == (size, size)


def test_masks_agree_with_findings_over_many_cases():
    for seed in range(40):
        for modality in ("CXR", "CT"):
            case = make_case(seed, modality, SIZE)
            present = {f.name for f in case.truth.findings}
            assert set(case.masks) == present, (seed, modality)
            for name, m in case.masks.items():
                assert m.any(), (seed, name)


def test_cardiothoracic_ratio_matches_truth():
    big = _cxr(Finding("cardiomegaly", severity="mild", ratio=0.53))
    assert 0.5 < cardiothoracic_ratio(big) == pytest.approx(0.53, abs=0.015)
    for seed in range(6):
        normal = _cxr(seed=seed)
        assert cardiothoracic_ratio(normal) < 0.5
        assert cardiothoracic_ratio(normal) == pytest.approx(normal.geometry["ctr"], abs=0.015)
    severe = _cxr(Finding("cardiomegaly", severity="severe", ratio=0.64), seed=9)
    assert cardiothoracic_ratio(severe) == pytest.approx(0.64, abs=0.015)


@pytest.mark.parametrize("side", ["right", "left"])
def test_effusion_fills_the_costophrenic_angle(side):
    case = _cxr(Finding("pleural_effusion", side=side, severity="mild", size_mm=15.0))
    thorax = case.anatomy["thorax"]
    half = np.zeros_like(thorax)
    cols = slice(0, thorax.shape[1] // 2) if side == "right" else slice(thorax.shape[1] // 2, None)
    half[:, cols] = True
    rows, cs = np.nonzero(thorax & half)
    lowest = np.argmax(rows)  # the costophrenic angle: lowest point of that hemithorax
    assert case.masks["pleural_effusion"][rows[lowest], cs[lowest]]
    other = case.masks["pleural_effusion"] & ~half
    assert not other.any()


@pytest.mark.parametrize("name", ["pneumothorax", "nodule", "consolidation", "atelectasis"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_lateral_findings_are_on_the_stated_side(name, side):
    f = Finding(name, side=side, zone="upper" if name != "atelectasis" else "lower", size_mm=25.0,
                severity="moderate", character="smooth")  # fmt: skip
    case = _cxr(f, seed=21)
    cols = np.nonzero(case.masks[name])[1]
    w = case.image.shape[1]
    if side == "right":  # radiological convention: patient right on the image left
        assert cols.mean() < w / 2
    else:
        assert cols.mean() > w / 2
    assert (case.masks[name] & case.anatomy["thorax"]).sum() >= 0.95 * case.masks[name].sum()


def test_edema_is_bilateral_and_inside_the_lungs():
    case = _cxr(Finding("edema", side="bilateral", zone="hilar", severity="moderate"))
    m = case.masks["edema"]
    w = m.shape[1]
    assert m[:, : w // 2].any() and m[:, w // 2 :].any()
    assert not (m & ~case.anatomy["lungs"]).any()


@pytest.mark.parametrize(
    "tumour,finding",
    [
        ("benign", Finding("tumour", "left", "upper", 12.0, character="smooth")),
        ("benign", Finding("tumour", "right", "lower", 8.0, character="calcified")),
        ("malignant", Finding("tumour", "right", "middle", 45.0, character="spiculated")),
        ("malignant", Finding("tumour", "left", "lower", 30.0, character="lobulated")),
    ],
)
def test_ct_tumour_inside_the_lung_sized_and_sided(tumour, finding):
    case = _ct(tumour, finding)
    m = case.masks["tumour"]
    assert not (m & ~case.anatomy["lungs"]).any()
    rows, cols = np.nonzero(m)
    assert (cols.mean() < 128) == (finding.side == "right")
    spacing = case.pixel_spacing[0]
    extent_mm = max(np.ptp(rows), np.ptp(cols)) * spacing + spacing
    assert extent_mm == pytest.approx(finding.size_mm, rel=0.25, abs=3.0)
    if finding.character == "calcified":
        assert case.image[m].mean() > 0.9  # very bright in a lung window


def test_ct_without_tumour_has_no_mask():
    case = _ct("none", None)
    assert case.masks == {}
    assert case.anatomy["lungs"].sum() > 0.08 * case.image.size


def test_prevalence_and_cooccurrence_are_sane():
    rng = np.random.default_rng(0)
    cxr = [sample_truth(rng, "CXR", f"c{i}") for i in range(500)]
    vec = np.stack([t.finding_vector() for t in cxr])
    normal = (vec.sum(1) == 0).mean()
    assert 0.28 <= normal <= 0.45
    prev = dict(zip(FINDINGS, vec.mean(0), strict=True))
    assert all(0.02 <= p <= 0.35 for p in prev.values()), prev
    cm, eff, ptx = (
        vec[:, FINDINGS.index(n)] > 0 for n in ("cardiomegaly", "pleural_effusion", "pneumothorax")
    )
    assert eff[cm].mean() > eff[~cm].mean()  # cardiomegaly travels with effusion
    assert (vec[ptx].sum(1) == 1).mean() > 0.8  # pneumothorax mostly alone
    for t in cxr:
        cmf = next((f for f in t.findings if f.name == "cardiomegaly"), None)
        if cmf:
            assert 0.5 < cmf.ratio <= 0.66
        c = t.context
        assert c.age is not None and 16 <= c.age <= 95
        assert not (c.pregnant and (c.sex != "F" or not 18 <= c.age <= 45))
        assert set(c.allergies) <= {"penicillin", "sulfonamide", "ace_inhibitor"}
    ages_cm = [t.context.age for t in cxr if any(f.name == "cardiomegaly" for f in t.findings)]
    ages_ptx = [t.context.age for t in cxr if any(f.name == "pneumothorax" for f in t.findings)]
    assert np.mean(ages_cm) > np.mean(ages_ptx) + 15

    ct = [sample_truth(rng, "CT", f"t{i}") for i in range(500)]
    share = {k: np.mean([t.tumour == k for t in ct]) for k in ("none", "benign", "malignant")}
    assert all(0.2 <= p <= 0.5 for p in share.values()), share
    for t in ct:
        if t.tumour == "none":
            assert t.findings == ()
        else:
            (f,) = t.findings
            lo, hi = (5, 20) if t.tumour == "benign" else (20, 60)
            assert f.name == "tumour" and lo <= f.size_mm <= hi and f.side in ("left", "right")


def test_unknown_modality_is_rejected():
    with pytest.raises(ValueError):
        sample_truth(np.random.default_rng(0), "MR", "x")
