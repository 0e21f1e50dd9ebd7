"""Phantom engine: determinism, masks that agree with the truth, anatomy measures, prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from model.data import phantom
from model.data.phantom import (
    SUBTLE_MM,
    PhantomCase,
    cardiothoracic_ratio,
    make_case,
    render_case,
    sample_truth,
)
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


# ----------------------------------------------------------------------------------------------
# Severity range and subtle cases (issue 10 item 4)

#: documented size ranges (mm) per severity; cardiomegaly: the cardiothoracic ratio
SIZE_RANGES = {
    "pleural_effusion": {"mild": (15, 40), "moderate": (40, 100), "severe": (100, 170)},
    "pneumothorax": {"mild": (6, 20), "moderate": (20, 35), "severe": (35, 55)},
    "consolidation": {"mild": (30, 50), "moderate": (50, 75), "severe": (75, 100)},
    "nodule": {"mild": (5, 10), "moderate": (10, 30), "severe": (30, 50)},
}


@pytest.fixture(scope="module")
def many_cxr_findings() -> list[Finding]:
    rng = np.random.default_rng(1)
    return [f for i in range(4000) for f in sample_truth(rng, "CXR", f"c{i}").findings]


def test_every_cxr_finding_has_a_severity_and_a_subtle_flag(many_cxr_findings):
    assert {f.name for f in many_cxr_findings} == set(FINDINGS)
    for f in many_cxr_findings:
        assert f.severity in ("mild", "moderate", "severe"), f
        assert isinstance(f.subtle, bool), f
    for name in FINDINGS:  # every finding is drawn both subtle and not
        assert {f.subtle for f in many_cxr_findings if f.name == name} == {True, False}, name


def test_sizes_span_the_documented_range_of_each_severity(many_cxr_findings):
    for name, ranges in SIZE_RANGES.items():
        for sev, (lo, hi) in ranges.items():
            sizes = np.array([f.size_mm for f in many_cxr_findings if f.name == name and f.severity == sev])
            assert sizes.size >= 8, (name, sev)
            assert lo <= sizes.min() and sizes.max() <= hi, (name, sev, sizes.min(), sizes.max())
            assert sizes.max() - sizes.min() > 0.6 * (hi - lo), (name, sev)  # the whole range, not one end
    for f in many_cxr_findings:
        if f.name == "cardiomegaly":
            lo, hi = {"mild": (0.52, 0.56), "moderate": (0.56, 0.60), "severe": (0.60, 0.65)}[f.severity]
            assert lo <= f.ratio <= hi, f


def test_nodules_start_at_5_mm(many_cxr_findings):
    sizes = np.array([f.size_mm for f in many_cxr_findings if f.name == "nodule"])
    assert sizes.min() >= 5.0 and sizes.max() <= 50.0
    assert ((sizes >= 5.0) & (sizes < 8.0)).sum() >= 10  # small nodules are drawn, not only large ones
    assert (sizes < 6.0).any()  # the range starts at 5 mm (it used to be 6)


def test_subtle_is_set_exactly_below_the_threshold(many_cxr_findings):
    for f in many_cxr_findings:
        if f.name in SUBTLE_MM:
            assert f.subtle == (f.size_mm < SUBTLE_MM[f.name]), f
        elif f.name == "cardiomegaly":
            assert f.subtle == (f.ratio < 0.54), f
        elif f.name == "edema":
            assert f.subtle == (f.severity == "mild"), f
    for name, limit in SUBTLE_MM.items():  # both sides of each threshold are drawn, close to it
        sizes = np.array([f.size_mm for f in many_cxr_findings if f.name == name])
        assert ((sizes < limit) & (sizes >= limit - 3)).any() and (
            (sizes >= limit) & (sizes < limit + 3)
        ).any()


class _FixedRng:
    """Stands in for a Generator: every size drawn is ``size``; choices take the first option."""

    def __init__(self, size: float):
        self.size = size

    def uniform(self, lo, hi):
        return self.size

    def random(self):
        return 0.99

    def choice(self, options, p=None):
        return options[0]


@pytest.mark.parametrize("name", sorted(SUBTLE_MM))
def test_subtle_threshold_boundary(name):
    draw = {"pleural_effusion": lambda r: phantom._effusion(r, side="right", small=True),
            "pneumothorax": phantom._pneumothorax, "nodule": phantom._nodule,
            "consolidation": phantom._consolidation}[name]  # fmt: skip
    limit = SUBTLE_MM[name]
    assert draw(_FixedRng(limit - 0.1)).subtle is True
    assert draw(_FixedRng(limit)).subtle is False


def _effusion_extent(case: PhantomCase, side: str) -> tuple[float, float]:
    """(how high the fluid climbs: 0 at the costophrenic angle, 1 at the apex; share of the
    hemidiaphragm under fluid), measured on the masks of one hemithorax."""
    thorax, eff = case.anatomy["thorax"], case.masks["pleural_effusion"]
    w = thorax.shape[1]
    half = np.zeros_like(thorax)
    half[:, : w // 2] = side == "right"  # radiological convention: patient right on the image left
    half[:, w // 2 :] = side == "left"
    cavity = thorax & half
    apex, cp = np.nonzero(cavity)[0].min(), case.geometry[f"cp_{side}_row"]
    top = np.nonzero(eff & half)[0].min()
    cols = np.nonzero(cavity.any(0))[0]
    floor = [np.nonzero(cavity[:, c])[0].max() for c in cols]  # the hemidiaphragm, column by column
    return (cp - top) / (cp - apex), float(np.mean([eff[r, c] for r, c in zip(floor, cols, strict=True)]))


@pytest.mark.parametrize(
    "severity, size_mm, climb, covered",
    [
        ("mild", 40.0, (0.0, 0.25), (0.0, 0.75)),  # the top of mild: the costophrenic angle, not the dome
        ("severe", 100.0, (0.4, 1.0), (0.85, 1.0)),  # the bottom of severe: the mid zone, dome under fluid
        ("severe", 170.0, (0.55, 1.0), (0.95, 1.0)),  # the top of severe: above the mid-lung line
    ],
)
def test_effusion_extent_follows_its_severity(severity, size_mm, climb, covered):
    """Mid zone = ZONES_H["middle"] (36-60 % of the way down from the apex): climb >= 0.4 reaches it."""
    for seed in range(6):
        side, sex = ("right", "left")[seed % 2], "MF"[seed // 2 % 2]
        f = Finding("pleural_effusion", side=side, zone="basal", severity=severity, size_mm=size_mm)
        case = render_case(CaseTruth("t", "CXR", (f,), context=PatientContext(60, sex)), seed, SIZE)
        up, under = _effusion_extent(case, side)
        assert climb[0] <= up <= climb[1], (seed, up)
        assert covered[0] <= under <= covered[1], (seed, under)


def test_unknown_modality_is_rejected():
    with pytest.raises(ValueError):
        sample_truth(np.random.default_rng(0), "MR", "x")
