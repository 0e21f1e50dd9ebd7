"""Findings + patient context -> suggested treatment classes, from a small transparent rulebook.

EDUCATIONAL ONLY. This is a teaching toy that produces the treatment labels of the phantoms and
explains the treatment head's outputs in the dashboard. It is not clinical advice, not a clinical
decision support system, and it ignores almost everything a clinician would weigh (history,
examination, blood tests, severity scores, local guidelines, interactions, doses).

The rulebook is data (``RULES``): each ``Rule`` says when it fires (findings, tumour class,
size / character / grade conditions), which item of ``model.types.TREATMENTS`` it suggests, and which
patient-context facts contraindicate it (``Contraindication``), each with an alternative (another
treatment) or none (the item is withheld and the reason says so).

Decisions worth knowing:

- Loop diuretics (furosemide, bumetanide) are sulfonamide derivatives; a recorded sulfonamide
  allergy withholds them here (a conservative textbook rule; the cross-reactivity is debated).
  The formulary has no non-sulfonamide diuretic, so there is no alternative.
- ACE inhibitors are withheld in pregnancy (fetotoxic), renal impairment (this toy does not
  adjust doses or monitor potassium / creatinine) and ACE-inhibitor allergy (angioedema).
- A "large" effusion is an effusion graded large by ``model.data.reports.size_grade`` (severity
  "severe", else depth >= 50 mm), the same word the report uses.
- Oncology referral fires for a malignant CT tumour, and for a nodule (CXR) >= 20 mm or spiculated.
  A benign CT tumour gets no treatment item (follow-up imaging is not in the formulary).
- Referrals and physiotherapy are not drugs and have no contraindication here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model.data.reports import size_grade
from model.types import TREATMENT_LABELS, TREATMENTS, Finding, PatientContext, TreatmentSuggestion

NOT_ADVICE = "Educational rulebook, not clinical advice."

#: Nodules at least this large (mm) are referred to oncology.
NODULE_REFERRAL_MM = 20.0


@dataclass(frozen=True)
class Contraindication:
    """A patient fact that stops a rule's suggestion, and what to suggest instead (None: nothing)."""

    condition: str  # a key of CONTEXT_CHECKS, e.g. "allergy:penicillin", "pregnant"
    alternative: str | None  # one of TREATMENTS, or None
    note: str  # why, in a few words, for the reason text and the UI


@dataclass(frozen=True)
class Rule:
    """One line of the rulebook."""

    id: str
    when: str  # human-readable condition, shown in the UI
    suggests: str  # one of TREATMENTS
    reason: str  # why the finding calls for it
    findings: tuple[str, ...] = ()  # fires when any of these is present ...
    all_findings: tuple[str, ...] = ()  # ... and all of these are present (if given)
    tumour: tuple[str, ...] = ()  # fires when the tumour class is one of these
    condition: str | None = None  # a key of FINDING_CHECKS that must hold for one of ``findings``
    unless: tuple[Contraindication, ...] = ()
    note: str = NOT_ADVICE

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "when": self.when,
            "suggests": self.suggests,
            "reason": self.reason,
            "unless": [c.__dict__ for c in self.unless],
            "note": self.note,
        }


def _large(f: Finding) -> bool:
    return size_grade(f) == "large"


def _suspicious_nodule(f: Finding) -> bool:
    return (f.size_mm or 0) >= NODULE_REFERRAL_MM or f.character == "spiculated"


#: Conditions on a finding's attributes (a dict of functions, looked up by a rule's ``condition``).
FINDING_CHECKS: dict[str, Callable[[Finding], bool]] = {
    "large": _large,
    "suspicious_nodule": _suspicious_nodule,
}

#: Patient-context facts (looked up by a contraindication's ``condition``).
CONTEXT_CHECKS: dict[str, Callable[[PatientContext], bool]] = {
    "allergy:penicillin": lambda c: "penicillin" in c.allergies,
    "allergy:sulfonamide": lambda c: "sulfonamide" in c.allergies,
    "allergy:ace_inhibitor": lambda c: "ace_inhibitor" in c.allergies,
    "pregnant": lambda c: bool(c.pregnant),
    "renal_impairment": lambda c: bool(c.renal_impairment),
}

_NO_SULFA = Contraindication(
    "allergy:sulfonamide", None, "sulfonamide allergy (loop diuretics are sulfonamides)"
)

RULES: tuple[Rule, ...] = (
    Rule(
        id="consolidation_antibiotic",
        when="consolidation (pneumonia-like)",
        suggests="beta_lactam_antibiotic",
        reason="consolidation suggests pneumonia: empirical beta-lactam antibiotic (e.g. amoxicillin)",
        findings=("consolidation",),
        unless=(Contraindication("allergy:penicillin", "macrolide_antibiotic", "penicillin allergy"),),
    ),
    Rule(
        id="edema_diuretic",
        when="pulmonary oedema",
        suggests="loop_diuretic",
        reason="pulmonary oedema: loop diuretic to offload fluid",
        findings=("edema",),
        unless=(_NO_SULFA,),
    ),
    Rule(
        id="effusion_cardiomegaly_diuretic",
        when="pleural effusion with cardiomegaly (heart failure picture)",
        suggests="loop_diuretic",
        reason="pleural effusion with cardiomegaly suggests heart failure: loop diuretic",
        findings=("pleural_effusion",),
        all_findings=("pleural_effusion", "cardiomegaly"),
        unless=(_NO_SULFA,),
    ),
    Rule(
        id="cardiomegaly_ace_inhibitor",
        when="cardiomegaly",
        suggests="ace_inhibitor",
        reason="cardiomegaly: ACE inhibitor as heart failure background therapy",
        findings=("cardiomegaly",),
        unless=(
            Contraindication("pregnant", None, "pregnancy (ACE inhibitors are fetotoxic)"),
            Contraindication(
                "renal_impairment", None, "renal impairment (no dose or potassium monitoring here)"
            ),
            Contraindication("allergy:ace_inhibitor", None, "ACE inhibitor allergy (angioedema risk)"),
        ),
    ),
    Rule(
        id="pneumothorax_drain",
        when="pneumothorax",
        suggests="chest_drain_referral",
        reason="pneumothorax: refer for chest drain / procedure assessment (no drug)",
        findings=("pneumothorax",),
    ),
    Rule(
        id="large_effusion_drain",
        when="large pleural effusion",
        suggests="chest_drain_referral",
        reason="large pleural effusion: refer for drainage (no drug)",
        findings=("pleural_effusion",),
        condition="large",
    ),
    Rule(
        id="malignant_tumour_oncology",
        when="malignant tumour on CT",
        suggests="oncology_referral",
        reason="tumour with malignant features: refer to oncology / MDT for tissue sampling (no drug)",
        tumour=("malignant",),
    ),
    Rule(
        id="suspicious_nodule_oncology",
        when=f"nodule >= {NODULE_REFERRAL_MM:.0f} mm or spiculated",
        suggests="oncology_referral",
        reason="suspicious pulmonary nodule (large or spiculated): refer to oncology / MDT (no drug)",
        findings=("nodule",),
        condition="suspicious_nodule",
    ),
    Rule(
        id="atelectasis_physio",
        when="atelectasis",
        suggests="respiratory_physiotherapy",
        reason="atelectasis: respiratory physiotherapy to re-expand the lung (no drug)",
        findings=("atelectasis",),
    ),
)


# ----------------------------------------------------------------------------------------------
# Evaluation


def _as_findings(findings: Sequence[Finding | str]) -> list[Finding]:
    """Accept Finding objects or bare names (model predictions carry no attributes)."""
    return [f if isinstance(f, Finding) else Finding(name=str(f)) for f in findings]


def _fires(rule: Rule, findings: list[Finding], tumour: str | None) -> Finding | str | None:
    """What triggers the rule (the finding, or the tumour class), or None when it does not fire."""
    if rule.tumour:
        return tumour if tumour in rule.tumour else None
    names = {f.name for f in findings}
    if not set(rule.all_findings) <= names:
        return None
    for f in findings:
        if f.name in rule.findings and (rule.condition is None or FINDING_CHECKS[rule.condition](f)):
            return f
    return None


def _blocking(rule: Rule, context: PatientContext) -> Contraindication | None:
    return next((c for c in rule.unless if CONTEXT_CHECKS[c.condition](context)), None)


def _describe(trigger: Finding | str) -> str:
    """'left pleural effusion (large)', 'nodule (24 mm, spiculated)', 'malignant tumour'."""
    if isinstance(trigger, str):
        return f"{trigger.capitalize()} tumour"
    name = trigger.name.replace("_", " ").replace("edema", "oedema")
    bits = [b for b in (trigger.side if trigger.side in ("left", "right") else None,) if b]
    extra = []
    if trigger.size_mm is not None:
        extra.append(f"{round(trigger.size_mm)} mm")
    if trigger.character:
        extra.append(trigger.character)
    if trigger.name in ("pleural_effusion", "pneumothorax") and size_grade(trigger):
        extra.append(size_grade(trigger))
    text = " ".join([*bits, name])
    text = f"{text} ({', '.join(extra)})" if extra else text
    return text[:1].upper() + text[1:]


def _decide(findings: Sequence[Finding | str], tumour: str | None, context: PatientContext | None):
    """Every firing rule -> (rule, trigger, contraindication or None, treatment given or None)."""
    context = context or PatientContext()
    fs = _as_findings(findings)
    out = []
    for rule in RULES:
        trigger = _fires(rule, fs, tumour)
        if trigger is None:
            continue
        block = _blocking(rule, context)
        given = rule.suggests if block is None else block.alternative
        out.append((rule, trigger, block, given))
    return out


def suggest_treatments(
    findings: Sequence[Finding | str], tumour: str | None, context: PatientContext | None
) -> list[TreatmentSuggestion]:
    """The rulebook's ground truth: one suggestion per treatment (probability 1.0), in TREATMENTS order.

    Each reason names the finding that fired the rule and, where the patient context changed the
    outcome, the fact that decided it. Withheld items are not listed (``reason_for`` explains them).
    """
    reasons: dict[str, list[str]] = {}
    for rule, trigger, block, given in _decide(findings, tumour, context):
        if given is None:
            continue
        if block is None:
            text = f"{_describe(trigger)}: {rule.reason}"
        else:
            text = (
                f"{_describe(trigger)}: {TREATMENT_LABELS[given]} instead of "
                f"{TREATMENT_LABELS[rule.suggests].lower()} because of {block.note}"
            )
        reasons.setdefault(given, []).append(text)
    return [
        TreatmentSuggestion(name, 1.0, "; ".join(reasons[name]) + f". {NOT_ADVICE}")
        for name in TREATMENTS
        if name in reasons
    ]


def treatment_vector(
    findings: Sequence[Finding | str], tumour: str | None, context: PatientContext | None
) -> np.ndarray:
    """Multi-hot float32 over TREATMENTS of ``suggest_treatments`` (the treatment head's target)."""
    given = {s.name for s in suggest_treatments(findings, tumour, context)}
    return np.asarray([float(t in given) for t in TREATMENTS], dtype=np.float32)


def reason_for(
    name: str, findings: Sequence[Finding | str], tumour: str | None, context: PatientContext | None
) -> str:
    """Why treatment ``name`` fits this case, or why it does not (contraindicated, no matching finding).

    Used by the Predictor to explain a model's output, which may disagree with the rulebook.
    """
    if name not in TREATMENTS:
        raise ValueError(f"unknown treatment {name!r}; expected one of {TREATMENTS}")
    label = TREATMENT_LABELS[name]
    decided = _decide(findings, tumour, context)
    fits = [(r, t, b) for r, t, b, given in decided if given == name]
    if fits:
        parts = []
        for rule, trigger, block in fits:
            if block is None:
                parts.append(f"{_describe(trigger)}: {rule.reason}")
            else:
                parts.append(f"{_describe(trigger)}: the alternative to {TREATMENT_LABELS[rule.suggests].lower()}"
                             f" because of {block.note}")  # fmt: skip
        return f"{label} fits: " + "; ".join(parts) + f". {NOT_ADVICE}"
    blocked = [(r, t, b) for r, t, b, given in decided if r.suggests == name and b is not None]
    if blocked:
        rule, trigger, block = blocked[0]
        instead = (
            f"; the rulebook suggests {TREATMENT_LABELS[block.alternative].lower()}"
            if block.alternative
            else ""
        )
        return f"{label} would fit {_describe(trigger)}, but is contraindicated by {block.note}{instead}. {NOT_ADVICE}"
    alt_of = [r for r in RULES for c in r.unless if c.alternative == name]
    whens = sorted({r.when for r in RULES if r.suggests == name})
    whens += [f"{r.when} with {c.note}" for r in alt_of for c in r.unless if c.alternative == name]
    return (
        f"{label} is not supported by the rulebook for these findings (it is suggested for: "
        f"{'; '.join(whens)}). {NOT_ADVICE}"
    )
