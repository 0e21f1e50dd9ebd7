"""Procedural chest X-ray and CT phantoms with exact ground truth.

``sample_truth`` draws what a case shows (findings with realistic prevalence and
co-occurrence, a CT tumour class, a plausible patient); ``render_case`` draws the
pixels and a pixel-accurate mask per finding in the same geometry; ``make_case``
does both, deterministically for a seed (same seed -> same bytes).

Severity range (issue 10): every chest X-ray finding carries a ``severity`` (mild / moderate /
severe) and a ``subtle`` flag. Sizes are drawn per severity: pleural effusion depth at the lateral
wall 15-40 / 40-100 / 100-170 mm (mild blunts the costophrenic angle; the fluid covers more of the
hemidiaphragm as it deepens, about half at 70 mm and nearly all from 100 mm; severe reaches the mid
zone), pneumothorax rim 6-20 / 20-35 / 35-55 mm, consolidation extent 30-50 / 50-75 / 75-100 mm,
cardiothoracic ratio 0.52-0.56 / 0.56-0.60 / 0.60-0.65; nodules 5-28 mm (mild < 10 mm, moderate)
and masses 30-50 mm (severe). ``subtle`` is set exactly when a size lies below ``SUBTLE_MM`` (ratio
< 0.54 for cardiomegaly; mild oedema; mild plate-like atelectasis). Subtle cases are drawn and kept
in every split, labelled so that evaluation reports them apart.

Side convention: radiological, so the patient's *right* lung is on the image
*left*. The renderers live in ``phantom_cxr.py`` (frontal chest X-ray) and
``phantom_ct.py`` (axial chest CT slice, lung window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.types import ALLERGIES, CaseTruth, Finding, PatientContext

# ----------------------------------------------------------------------------------------------
# The case


@dataclass
class PhantomCase:
    """One rendered phantom: pixels, ground-truth masks and the truth they were drawn from."""

    image: np.ndarray  # (H, W) float32 in [0, 1]; bone/soft tissue bright, air dark
    masks: dict[str, np.ndarray]  # finding name (or "tumour") -> (H, W) bool; present findings only
    truth: CaseTruth
    pixel_spacing: tuple[float, float]  # (row, col) in mm
    anatomy: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "heart", "thorax", "lungs" -> bool
    geometry: dict[str, float] = field(default_factory=dict)  # pose and drawn measures (e.g. "ctr", "rot")


def cardiothoracic_ratio(case: PhantomCase) -> float:
    """Cardiothoracic ratio measured on the masks, as a radiologist would on a PA film.

    Widest horizontal extent of the heart over the widest internal thoracic
    diameter (lateral lung margins), both measured along the patient's left-right
    axis so that a slightly rotated film still measures true.
    """
    rot = case.geometry.get("rot", 0.0)
    axis = np.array([np.cos(rot), np.sin(rot)])  # patient u axis in (col, row) pixel coordinates

    def extent(mask: np.ndarray) -> float:
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return 0.0
        p = cols * axis[0] + rows * axis[1]
        return float(p.max() - p.min() + 1.0)

    thorax = extent(case.anatomy["thorax"])
    return extent(case.anatomy["heart"]) / thorax if thorax else float("nan")


# ----------------------------------------------------------------------------------------------
# Ground truth


#: below these sizes (mm) a finding is drawn but labelled ``subtle`` (kept in every split, reported apart)
SUBTLE_MM = {"pleural_effusion": 25.0, "pneumothorax": 12.0, "nodule": 8.0, "consolidation": 38.0}


def _side(rng: np.random.Generator, p_right: float = 0.55) -> str:
    return "right" if rng.random() < p_right else "left"


def _severity(rng: np.random.Generator, p=(0.5, 0.35, 0.15)) -> str:
    return str(rng.choice(("mild", "moderate", "severe"), p=p))


def _cardiomegaly(rng) -> Finding:
    ratio = round(float(rng.uniform(0.52, 0.65)), 3)
    sev = "mild" if ratio < 0.56 else "moderate" if ratio < 0.60 else "severe"
    return Finding("cardiomegaly", severity=sev, ratio=ratio, subtle=ratio < 0.54)


def _effusion(rng, side: str | None = None, small: bool = False) -> Finding:
    if side is None:
        side = str(rng.choice(("right", "left", "bilateral"), p=(0.45, 0.3, 0.25)))
    sev = "mild" if small else _severity(rng)
    # height of the fluid at the lateral wall: mild blunts the costophrenic angle, moderate covers a growing
    # part of the hemidiaphragm, severe reaches the mid zone (issue 10: the whole clinical range)
    depth = {"mild": (15, 40), "moderate": (40, 100), "severe": (100, 170)}[sev]
    size = _mm(rng, depth)
    return Finding(
        "pleural_effusion", side=side, zone="basal", severity=sev, size_mm=size,
        subtle=size < SUBTLE_MM["pleural_effusion"],
    )  # fmt: skip


def _pneumothorax(rng) -> Finding:
    sev = _severity(rng, (0.45, 0.35, 0.2))
    depth = {"mild": (6, 20), "moderate": (20, 35), "severe": (35, 55)}[sev]
    size = _mm(rng, depth)
    return Finding(
        "pneumothorax", side=_side(rng), zone="apical", severity=sev, size_mm=size,
        subtle=size < SUBTLE_MM["pneumothorax"],
    )  # fmt: skip


def _nodule(rng) -> Finding:
    mass = rng.random() < 0.25  # >= 30 mm is a mass
    size = _mm(rng, (30, 50) if mass else (5, 28))
    character = str(rng.choice(("smooth", "calcified", "spiculated"), p=(0.45, 0.25, 0.3)))
    if mass and character == "calcified":
        character = "spiculated"
    zone = str(rng.choice(("upper", "middle", "lower"), p=(0.45, 0.3, 0.25)))
    sev = "mild" if size < 10 else "moderate" if size < 30 else "severe"  # small nodule / nodule / mass
    return Finding(
        "nodule", side=_side(rng), zone=zone, size_mm=size, character=character, severity=sev,
        subtle=size < SUBTLE_MM["nodule"],
    )  # fmt: skip


def _consolidation(rng, side: str | None = None) -> Finding:
    zone = str(rng.choice(("upper", "middle", "lower"), p=(0.25, 0.3, 0.45)))
    sev = _severity(rng)
    extent = {"mild": (30, 50), "moderate": (50, 75), "severe": (75, 100)}[sev]
    size = _mm(rng, extent)
    return Finding(
        "consolidation", side=side or _side(rng), zone=zone, severity=sev, size_mm=size,
        subtle=size < SUBTLE_MM["consolidation"],
    )  # fmt: skip


def _edema(rng) -> Finding:
    sev = _severity(rng)
    return Finding("edema", side="bilateral", zone="hilar", severity=sev, subtle=sev == "mild")


def _atelectasis(rng, side: str | None = None) -> Finding:
    character = "plate-like" if rng.random() < 0.7 else "segmental"
    zone = "lower" if rng.random() < 0.75 else "middle"
    sev = _severity(rng, (0.6, 0.3, 0.1))
    return Finding(
        "atelectasis", side=side or _side(rng), zone=zone, severity=sev, character=character,
        subtle=sev == "mild" and character == "plate-like",
    )  # fmt: skip


def _mm(rng, lo_hi) -> float:
    return round(float(rng.uniform(*lo_hi)), 1)


# Scenarios of abnormal chest X-rays: weight and a function that draws the findings.
def _heart_failure(rng):
    out = [_cardiomegaly(rng)] if rng.random() < 0.9 else []
    if rng.random() < 0.55:
        out.append(_effusion(rng, side=str(rng.choice(("bilateral", "right", "left"), p=(0.5, 0.35, 0.15)))))
    if rng.random() < 0.5 or not out:
        out.append(_edema(rng))
    if rng.random() < 0.1:
        out.append(_atelectasis(rng))
    return out


def _pneumonia(rng):
    cons = _consolidation(rng)
    out = [cons]
    if rng.random() < 0.3:
        out.append(_effusion(rng, side=cons.side, small=True))  # parapneumonic
    if rng.random() < 0.15:
        out.append(_atelectasis(rng, side=cons.side))
    return out


def _ptx(rng):
    out = [_pneumothorax(rng)]
    if rng.random() < 0.08:
        out.append(_effusion(rng, side=out[0].side, small=True))
    return out


def _nodule_case(rng):
    out = [_nodule(rng)]
    if out[0].size_mm >= 30 and rng.random() < 0.3:
        out.append(_effusion(rng, side=out[0].side))
    return out


def _atelectasis_case(rng):
    out = [_atelectasis(rng)]
    if rng.random() < 0.2:
        out.append(_effusion(rng, side=out[0].side, small=True))
    return out


def _edema_case(rng):
    return [_edema(rng)] + ([_cardiomegaly(rng)] if rng.random() < 0.5 else [])


CXR_SCENARIOS = {  # name -> (weight among abnormal studies, draw)
    "heart_failure": (0.22, _heart_failure),
    "pneumonia": (0.20, _pneumonia),
    "nodule": (0.14, _nodule_case),
    "pneumothorax": (0.10, _ptx),
    "atelectasis": (0.10, _atelectasis_case),
    "effusion": (0.10, lambda rng: [_effusion(rng)]),
    "cardiomegaly": (0.09, lambda rng: [_cardiomegaly(rng)]),
    "edema": (0.05, _edema_case),
}
P_NORMAL_CXR = 0.35  # share of normal chest X-rays
P_TUMOUR_CT = {"none": 0.4, "benign": 0.3, "malignant": 0.3}


def _patient(rng: np.random.Generator, kind: str) -> PatientContext:
    """A plausible patient for the case kind (scenario name or CT tumour class)."""
    age_range, p_male = {
        "heart_failure": ((58, 92), 0.55),
        "cardiomegaly": ((50, 90), 0.55),
        "edema": ((55, 92), 0.5),
        "nodule": ((45, 85), 0.55),
        "malignant": ((48, 88), 0.6),
        "benign": ((30, 80), 0.5),
        "pneumothorax": ((17, 40), 0.78),  # mostly young tall men (primary spontaneous)
        "pneumonia": ((18, 90), 0.5),
        "atelectasis": ((30, 88), 0.5),
        "effusion": ((40, 90), 0.5),
    }.get(kind, ((18, 85), 0.5))
    age = int(rng.integers(age_range[0], age_range[1] + 1))
    if kind == "pneumothorax" and rng.random() < 0.2:  # secondary pneumothorax in older COPD patients
        age = int(rng.integers(55, 85))
    sex = "M" if rng.random() < p_male else "F"
    p_allergy = {"penicillin": 0.08, "sulfonamide": 0.03, "ace_inhibitor": 0.02}
    allergies = tuple(a for a in ALLERGIES if rng.random() < p_allergy[a])
    p_renal = 0.03 + 0.12 * (age >= 65) + 0.12 * (kind in ("heart_failure", "edema", "cardiomegaly"))
    renal = bool(rng.random() < p_renal)
    pregnant = bool(sex == "F" and 18 <= age <= 45 and rng.random() < 0.05)
    return PatientContext(age=age, sex=sex, allergies=allergies, renal_impairment=renal, pregnant=pregnant)


def sample_truth(rng: np.random.Generator, modality: str, case_id: str) -> CaseTruth:
    """Draw what one case shows: findings (CXR) or tumour (CT) and a plausible patient. No pixels."""
    if modality == "CXR":
        if rng.random() < P_NORMAL_CXR:
            kind, findings = "normal", []
        else:
            names = list(CXR_SCENARIOS)
            w = np.array([CXR_SCENARIOS[n][0] for n in names])
            kind = names[int(rng.choice(len(names), p=w / w.sum()))]
            findings = CXR_SCENARIOS[kind][1](rng)
            if kind not in ("nodule", "pneumothorax") and rng.random() < 0.06:
                findings.append(_nodule(rng))  # incidental nodule
        order = {n: i for i, n in enumerate(("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule",
                                             "consolidation", "edema", "atelectasis"))}  # fmt: skip
        findings = sorted({f.name: f for f in findings}.values(), key=lambda f: order[f.name])
        return CaseTruth(case_id, "CXR", tuple(findings), None, None, _patient(rng, kind))
    if modality == "CT":
        classes = list(P_TUMOUR_CT)
        tumour = classes[int(rng.choice(3, p=list(P_TUMOUR_CT.values())))]
        findings: tuple[Finding, ...] = ()
        zone = str(rng.choice(("upper", "middle", "lower"), p=(0.45, 0.25, 0.3)))
        if tumour == "benign":
            character = "calcified" if rng.random() < 0.35 else "smooth"
            findings = (Finding("tumour", _side(rng, 0.5), zone, _mm(rng, (5, 20)), character=character),)
        elif tumour == "malignant":
            character = "spiculated" if rng.random() < 0.7 else "lobulated"
            findings = (Finding("tumour", _side(rng), zone, _mm(rng, (20, 60)), character=character),)
        return CaseTruth(case_id, "CT", findings, tumour, None, _patient(rng, tumour))
    raise ValueError(f"unknown modality {modality!r}; expected 'CXR' or 'CT'")


# ----------------------------------------------------------------------------------------------
# Rendering


def render_case(truth: CaseTruth, seed: int, size: int = 256) -> PhantomCase:
    """Draw the pixels and masks of ``truth``; the same (truth, seed, size) gives the same bytes."""
    rng = np.random.default_rng([int(seed), 0x9A7])  # a stream apart from sample_truth's
    if truth.modality == "CXR":
        from model.data.phantom_cxr import render_cxr as render
    elif truth.modality == "CT":
        from model.data.phantom_ct import render_ct as render
    else:
        raise ValueError(f"unknown modality {truth.modality!r}")
    image, masks, anatomy, spacing, geometry = render(truth, rng, size)
    return PhantomCase(image, masks, truth, spacing, anatomy, geometry)


def make_case(seed: int, modality: str, size: int = 256, case_id: str | None = None) -> PhantomCase:
    """``sample_truth`` + ``render_case`` for one seed (the truth uses ``default_rng(seed)``)."""
    case_id = case_id or f"{modality.lower()}_{seed:06d}"
    truth = sample_truth(np.random.default_rng(seed), modality, case_id)
    return render_case(truth, seed, size)
