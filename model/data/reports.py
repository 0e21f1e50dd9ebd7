"""Structured findings -> radiology report text at three detail levels.

The reports are the decoder's training targets, so they must read like radiology (register, order,
measurements) without being a lookup table: every statement has several phrasings, positive findings
come in a random order, and pertinent negatives are sampled. Everything is drawn from the ``rng``
passed in, so a seed gives the same text.

Detail levels (``model.types.DETAIL_LEVELS``):

- ``brief``: the impression only, one or two sentences.
- ``standard``: a findings paragraph (each present finding with side / zone / grade, one or two
  pertinent negatives) then the impression.
- ``detailed``: every finding with its location and measurement (size in mm, cardiothoracic ratio,
  side / zone, severity), every pertinent negative, the impression and a recommendation.

Conventions the rest of the code relies on:

- every sentence ends with ``". "`` (the last one with ``"."``), and periods appear only at sentence
  ends or inside numbers (``0.58``), so ``text.split(". ")`` gives the sentences;
- present findings are never hedged ("possible", "likely"...) and absent findings are only ever
  stated as negatives, so ``model.data.labeler.label_report`` recovers the ground truth exactly;
- the vocabulary stays small (a few hundred words) for the word-level tokenizer; numbers are written
  as single tokens such as ``"0.58"`` and ``"14 mm"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.types import DETAIL_LEVELS, FINDINGS, CaseTruth, Finding

#: Findings in the lung parenchyma: "lungs are clear" is only written when none is present.
PARENCHYMAL = ("nodule", "consolidation", "edema", "atelectasis")

#: Effusion / pneumothorax depth (mm) from which the grade is "moderate" / "large" when no severity
#: is given. The formulary's "large effusion -> chest drain" rule reads the same grade.
GRADE_MM = (20.0, 50.0)

#: Nodules at least this large (mm) are called a "mass".
MASS_MM = 30.0

_GRADE_WORD = {"mild": "small", "moderate": "moderate", "severe": "large"}


def size_grade(f: Finding) -> str | None:
    """ "small" | "moderate" | "large" for an effusion or pneumothorax (severity first, then depth)."""
    if f.severity:
        return _GRADE_WORD[f.severity]
    if f.size_mm is None:
        return None
    if f.size_mm < GRADE_MM[0]:
        return "small"
    return "moderate" if f.size_mm < GRADE_MM[1] else "large"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sentence(text: str) -> str:
    """Capitalise and end with a period (no inner periods other than decimals)."""
    text = " ".join(text.split()).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def _mm(x: float) -> str:
    return f"{round(x):d} mm"


# ----------------------------------------------------------------------------------------------
# Location words


def _side_adj(f: Finding) -> str:
    """'left' / 'right' / 'bilateral' / '' (used before a noun)."""
    return f.side or ""


def _zone_cxr(f: Finding) -> str:
    """Where on a radiograph: 'in the right lower zone', 'at the left base', 'in both lower zones'."""
    zone = f.zone or "lower"
    if f.side == "bilateral":
        return {
            "upper": "in both upper zones",
            "middle": "in both mid zones",
            "lower": "in both lower zones",
            "basal": "at both bases",
            "apical": "at both apices",
            "hilar": "in both perihilar regions",
            "diffuse": "throughout both lungs",
        }[zone]
    side = f.side or "right"
    return {
        "upper": f"in the {side} upper zone",
        "middle": f"in the {side} mid zone",
        "lower": f"in the {side} lower zone",
        "basal": f"at the {side} base",
        "apical": f"at the {side} apex",
        "hilar": f"in the {side} perihilar region",
        "diffuse": f"throughout the {side} lung",
    }[zone]


def _lobe(f: Finding) -> str:
    """Lobe name for CT and for consolidation: 'right lower lobe', 'lingula', 'left upper lobe'."""
    side = f.side if f.side in ("left", "right") else "right"
    zone = f.zone or "lower"
    if zone in ("upper", "apical"):
        return f"{side} upper lobe"
    if zone in ("middle", "hilar"):
        return "right middle lobe" if side == "right" else "lingula"
    return f"{side} lower lobe"


# ----------------------------------------------------------------------------------------------
# One function per finding: (findings sentence, impression phrase). ``level`` is 1 (standard) or
# 2 (detailed: with measurements).


def _cardiomegaly(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    grade = {"mild": "mildly ", "moderate": "moderately ", "severe": "markedly "}.get(f.severity or "", "")
    if level == 2 and f.ratio is not None:
        r = f"{f.ratio:.2f}"
        text = _pick(
            rng,
            [
                f"The cardiomediastinal silhouette is {grade}enlarged, cardiothoracic ratio {r}",
                f"The cardiac silhouette is {grade}enlarged with a cardiothoracic ratio of {r}",
                f"Cardiomegaly, with a cardiothoracic ratio of {r}",
                f"The heart is {grade}enlarged, cardiothoracic ratio {r}",
            ],
        )
    else:
        text = _pick(
            rng,
            [
                f"The cardiac silhouette is {grade}enlarged",
                f"The heart is {grade}enlarged",
                f"{grade}enlarged cardiac silhouette",
                "Cardiomegaly",
            ],
        )
    imp = _pick(rng, ["cardiomegaly", "enlarged cardiac silhouette", "cardiac enlargement"])
    return text, imp


def _pleural_effusion(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    grade = size_grade(f) or ""
    side = _side_adj(f)
    if f.side == "bilateral":
        noun = "bilateral pleural effusions"
        angle = "blunting both costophrenic angles"
    else:
        noun = f"{side} pleural effusion"
        angle = "blunting the costophrenic angle"
    text = _pick(
        rng,
        [
            f"{grade} {noun} {angle}",
            f"There is a {grade} {noun}" if f.side != "bilateral" else f"There are {grade} {noun}",
            f"{grade} {noun}",
        ],
    )
    if level == 2 and f.size_mm is not None:
        text += _pick(
            rng, [f", measuring {_mm(f.size_mm)} in depth", f", approximately {_mm(f.size_mm)} deep"]
        )
    imp = f"{grade} {noun}"
    return text, imp


def _pneumothorax(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    grade = size_grade(f) or ""
    side = _side_adj(f) if f.side != "bilateral" else "bilateral"
    text = _pick(
        rng,
        [
            f"{grade} {side} pneumothorax",
            f"There is a {grade} {side} pneumothorax",
            f"{grade} {side} pneumothorax with a visible pleural edge",
        ],
    )
    if level == 2 and f.size_mm is not None:
        text += _pick(rng, [f", apical rim of {_mm(f.size_mm)}", f", measuring {_mm(f.size_mm)} at the apex"])
    imp = f"{grade} {side} pneumothorax"
    return text, imp


def _nodule(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    noun = "mass" if (f.size_mm or 0) >= MASS_MM else "nodule"
    char = f.character or ""
    where = _zone_cxr(f)
    if level == 2 and f.size_mm is not None:
        text = _pick(
            rng,
            [
                f"A {char} {_mm(f.size_mm)} {noun} {where}",
                f"{char} {noun} {where}, measuring {_mm(f.size_mm)}",
                f"There is a {char} {noun} {where} measuring {_mm(f.size_mm)}",
            ],
        )
    else:
        text = _pick(
            rng, [f"A {char} {noun} {where}", f"There is a {char} {noun} {where}", f"{noun} {where}"]
        )
    imp = _pick(rng, [f"{noun} {where}", f"{_side_adj(f)} pulmonary {noun}"])
    return text, imp


def _consolidation(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    where = _zone_cxr(f)
    kind = {"mild": "patchy ", "moderate": "", "severe": "dense "}.get(f.severity or "", "")
    text = _pick(
        rng,
        [
            f"{kind}consolidation {where}",
            f"There is {kind}airspace consolidation {where}",
            f"{kind}consolidation {where} with air bronchograms",
        ],
    )
    if level == 2 and f.size_mm is not None:
        text += f", measuring approximately {_mm(f.size_mm)}"
    imp = _pick(
        rng,
        [
            f"consolidation {where}",
            f"consolidation {where}, in keeping with pneumonia",
            f"{kind}consolidation",
        ],
    )
    return text, imp


def _edema(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    grade = {"mild": "mild ", "moderate": "moderate ", "severe": "severe "}.get(f.severity or "", "")
    if level == 2:
        text = _pick(
            rng,
            [
                f"Upper lobe venous diversion and Kerley B lines, in keeping with {grade}pulmonary oedema",
                f"Bilateral perihilar haziness with septal lines, in keeping with {grade}pulmonary oedema",
                f"{grade}interstitial pulmonary oedema with upper lobe venous diversion",
            ],
        )
    else:
        text = _pick(
            rng,
            [
                f"{grade}pulmonary oedema",
                f"There is {grade}interstitial oedema",
                f"Features of {grade}pulmonary oedema",
            ],
        )
    imp = f"{grade}pulmonary oedema"
    return text, imp


def _atelectasis(f: Finding, level: int, rng: np.random.Generator) -> tuple[str, str]:
    where = _zone_cxr(f)
    if f.severity == "severe":
        text = _pick(
            rng, [f"{_lobe(f)} collapse with volume loss", f"Collapse of the {_lobe(f)} with volume loss"]
        )
        imp = f"{_lobe(f)} collapse"
    else:
        kind = f.character or (
            _pick(rng, ["linear", "plate-like", "subsegmental"]) if f.severity != "moderate" else "segmental"
        )
        text = _pick(rng, [f"{kind} atelectasis {where}", f"There is {kind} atelectasis {where}"])
        imp = f"atelectasis {where}"
    if level == 2 and f.size_mm is not None:
        text += f", measuring {_mm(f.size_mm)}"
    return text, imp


def _tumour(f: Finding, tumour: str, level: int, rng: np.random.Generator) -> tuple[str, str]:
    """CT tumour: benign (smooth / calcified) or malignant (spiculated / lobulated, larger)."""
    size = f.size_mm
    noun = "mass" if (size or 0) >= MASS_MM else "nodule"
    where = f"in the {_lobe(f)}"
    char = f.character or ("smooth" if tumour == "benign" else "spiculated")
    meas = f" {_mm(size)}" if (level == 2 and size is not None) else ""
    text = _pick(rng, [f"A {char}{meas} {noun} {where}", f"There is a {char}{meas} {noun} {where}"])
    if tumour == "benign":
        text += _pick(rng, [", with well defined margins", ", well circumscribed"])
        imp = _pick(
            rng,
            [
                f"{noun} {where} with benign features",
                f"benign appearing {noun} {where}",
                f"{noun} {where}, in keeping with a benign lesion",
            ],
        )
    else:
        text += (
            ", with irregular margins"
            if char == "spiculated"
            else _pick(rng, [", with irregular margins", ", with spiculated margins"])
        )
        imp = _pick(
            rng,
            [
                f"{noun} {where}, suspicious for malignancy",
                f"{noun} {where}, highly suspicious for primary lung malignancy",
                f"{noun} {where} with features of malignancy",
            ],
        )
    return text, imp


_DESCRIBE = {
    "cardiomegaly": _cardiomegaly,
    "pleural_effusion": _pleural_effusion,
    "pneumothorax": _pneumothorax,
    "nodule": _nodule,
    "consolidation": _consolidation,
    "edema": _edema,
    "atelectasis": _atelectasis,
}

# ----------------------------------------------------------------------------------------------
# Pertinent negatives: sentences stating that a finding is absent.

_NEGATIVE = {
    "cardiomegaly": [
        "Heart size is normal",
        "The cardiac silhouette is normal in size",
        "The cardiomediastinal silhouette is within normal limits",
        "Normal heart size",
    ],
    "pleural_effusion": [
        "No pleural effusion",
        "No pleural effusion is seen",
        "The costophrenic angles are sharp",
    ],
    "pneumothorax": ["No pneumothorax", "There is no pneumothorax", "No pneumothorax is seen"],
    "nodule": ["No pulmonary nodule or mass", "No focal nodule or mass is seen"],
    "consolidation": ["No focal consolidation", "No airspace consolidation", "No consolidation"],
    "edema": ["No pulmonary oedema", "No features of pulmonary oedema", "Pulmonary vascularity is normal"],
    "atelectasis": ["No atelectasis", "No collapse or volume loss"],
}
_NEGATIVE_CT = {
    "nodule": ["No pulmonary nodule or mass", "No suspicious pulmonary nodule or mass"],
    "lymph": ["No mediastinal or hilar lymphadenopathy", "No enlarged lymph nodes"],
}
_PAIRS = {  # absent findings stated together (shorter detailed reports, more variety)
    ("pleural_effusion", "pneumothorax"): ["No pleural effusion or pneumothorax"],
    ("nodule", "consolidation"): ["No focal consolidation, nodule or mass", "No consolidation or mass"],
    ("edema", "atelectasis"): ["No pulmonary oedema or atelectasis"],
}

_NORMAL_IMPRESSION = {
    "CXR": ["No acute cardiopulmonary abnormality", "Normal chest radiograph", "Normal study"],
    "CT": ["No evidence of malignancy", "Normal CT of the chest", "No pulmonary nodule or mass"],
}
_RECOMMEND = {
    "normal": ["No further imaging is required", "No follow up imaging is needed"],
    "malignant": [
        "Recommend tissue sampling and review at the lung multidisciplinary team meeting",
        "Referral for tissue sampling and multidisciplinary team review is recommended",
    ],
    "benign": ["Follow up CT per guidelines", "Recommend follow up CT in 12 months per guidelines"],
    "nodule": ["CT of the chest is recommended for further assessment", "Recommend CT of the chest"],
    "pneumothorax": ["Urgent clinical review is advised", "Recommend urgent clinical review"],
    "consolidation": ["Recommend follow up radiograph in 6 weeks after treatment"],
    "other": ["Clinical correlation is recommended", "Recommend correlation with clinical findings"],
}


def _negatives(absent: Sequence[str], rng: np.random.Generator, present: set[str]) -> list[str]:
    """One sentence per absent finding (a few merged), 'lungs are clear' when the parenchyma is."""
    todo = list(absent)
    out: list[str] = []
    for pair, options in _PAIRS.items():
        if all(p in todo for p in pair) and rng.random() < 0.6:
            out.append(_pick(rng, options))
            todo = [t for t in todo if t not in pair]
    if "consolidation" in todo and not (present & set(PARENCHYMAL)) and rng.random() < 0.6:
        out.append(_pick(rng, ["Lungs are clear", "The lungs are clear"]))
        todo.remove("consolidation")
    out += [_pick(rng, _NEGATIVE[name]) for name in todo]
    return out


def _join_phrases(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# ----------------------------------------------------------------------------------------------
# Public API


def _write(
    present: Sequence[Finding],
    tumour: str | None,
    tumour_f: Finding | None,
    modality: str,
    detail: str,
    rng: np.random.Generator,
    absent: Sequence[str],
) -> str:
    """The one writer behind every public function.

    ``present``: FINDINGS to describe; ``tumour``: the tumour class on CT, ``tumour_f`` its
    attributes when known; ``absent``: FINDINGS known to be absent (the only ones stated as
    negatives).
    """
    if detail not in DETAIL_LEVELS:
        raise ValueError(f"detail must be one of {DETAIL_LEVELS}, got {detail!r}")
    level = DETAIL_LEVELS.index(detail)  # 0 brief, 1 standard, 2 detailed
    present = [f for f in present if f.name in _DESCRIBE]  # a copy: the tumour is appended below
    if modality == "CT" and tumour in ("benign", "malignant"):
        present.append(tumour_f or Finding(name="tumour"))
    order = list(rng.permutation(len(present)))
    texts, imps = [], []
    for i in order:
        f = present[i]
        if f.name == "tumour":
            text, imp = _tumour(f, tumour or "malignant", level, rng)
        else:
            text, imp = _DESCRIBE[f.name](f, level, rng)
        texts.append(_sentence(text))
        imps.append(imp)
    names = {f.name for f in present}
    abnormal = bool(present)

    # impression
    if not abnormal:
        impression = [_sentence(_pick(rng, _NORMAL_IMPRESSION[modality]))]
    elif len(imps) <= 3 or level == 0:
        impression = [_sentence(_join_phrases(imps[:3]))]
        if len(imps) > 3:
            impression.append(_sentence(_join_phrases(imps[3:])))
    else:
        impression = [_sentence(_join_phrases(imps[:2])), _sentence(_join_phrases(imps[2:]))]

    if level == 0:
        return " ".join(impression)

    absent = [n for n in FINDINGS if n in set(absent) and n not in names]
    if modality == "CT" and "tumour" in names:
        absent = [n for n in absent if n != "nodule"]
    if rng.random() < 0.5:  # half the time in the usual reading order (heart, lungs, pleura)
        absent = [absent[i] for i in rng.permutation(len(absent))]
    negs = _negatives(absent, rng, names)
    if modality == "CT" and level == 2 and (tumour in ("none", None) or rng.random() < 0.7):
        negs.append(_pick(rng, _NEGATIVE_CT["lymph"]))
    if level == 1:  # standard: a couple of pertinent negatives (three or four for a normal study)
        negs = negs[: int(rng.integers(1, 3))] if abnormal else negs[: int(rng.integers(3, 5))]
    if modality == "CT" and tumour == "benign" and level == 2:
        negs.append(_pick(rng, ["No features of malignancy", "No suspicious features"]))
    body = texts + [_sentence(n) for n in negs]
    if level == 1:
        return " ".join(body + impression)

    if tumour == "malignant":
        rec = "malignant"
    elif tumour == "benign":
        rec = "benign"
    elif "pneumothorax" in names:
        rec = "pneumothorax"
    elif "nodule" in names:
        rec = "nodule"
    elif "consolidation" in names:
        rec = "consolidation"
    else:
        rec = "other" if abnormal else "normal"
    recommendation = [_sentence(_pick(rng, _RECOMMEND[rec]))]
    return " ".join(body + impression + recommendation)


def write_report(truth: CaseTruth, detail: str, rng: np.random.Generator) -> str:
    """The ground-truth report of one case at one detail level.

    The truth is complete (phantoms), so every FINDING not present is a known negative.
    """
    present = [f for f in truth.findings if f.name in _DESCRIBE]
    tumour_f = next((f for f in truth.findings if f.name == "tumour"), None)
    tumour = truth.tumour if truth.modality == "CT" else None
    if truth.modality == "CT" and tumour is None and tumour_f is not None:
        tumour = "malignant" if (tumour_f.character or "") in ("spiculated", "lobulated") else "benign"
    return _write(present, tumour, tumour_f, truth.modality, detail, rng, FINDINGS)


def write_reports(truth: CaseTruth, rng: np.random.Generator) -> dict[str, str]:
    """The report at every detail level (brief, standard, detailed), drawn in that order."""
    return {detail: write_report(truth, detail, rng) for detail in DETAIL_LEVELS}


def compose_report_from_labels(
    positive: Sequence[str],
    modality: str,
    detail: str,
    rng: np.random.Generator,
    negative: Sequence[str] = (),
) -> str:
    """A report for a label-only sample (NIH CSV, class folders): no location or measurement known.

    ``positive``: FINDINGS names, and on CT "benign" / "malignant" (or "tumour_benign" /
    "tumour_malignant"). ``negative``: FINDINGS known to be absent; only these are written as
    negatives (a label-only source does not know the rest).
    """
    tumour = None
    present = []
    for name in positive:
        if name in _DESCRIBE:
            present.append(Finding(name=name))
        elif name.removeprefix("tumour_") in ("benign", "malignant"):
            tumour = name.removeprefix("tumour_")
    if modality == "CT" and tumour is None and ("none" in positive or "tumour_none" in positive):
        tumour = "none"
    return _write(present, tumour, None, modality, detail, rng, tuple(negative))
