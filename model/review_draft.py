"""A reviewer's draft on the Compare page -> a ``Review`` for the store (issue 14, Deliver 1).

The page collects labels, report text and a note; this module checks them (a plain sentence for
anything a store should not keep) and assembles the ``Review``: the de-identified image's
content address, the reviewer's labels and text, both models' outputs at review time and the
serving model version. No file name, no DICOM field: the review is built from the pixels' sha256
and the models' outputs only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from model.review.validation import MAX_NOTE_CHARS, MAX_REPORT_CHARS, SEVERITIES, SIDES
from model.types import FINDINGS, TUMOUR_CLASSES, Prediction

#: the findings a side / a severity applies to (as ``model/data/reports.py`` writes them)
SIDE_APPLIES: frozenset[str] = frozenset(
    {"pleural_effusion", "pneumothorax", "nodule", "consolidation", "atelectasis"}
)
SEVERITY_APPLIES: frozenset[str] = frozenset(
    {"cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation", "edema", "atelectasis"}
)
MODEL_ROLES: tuple[str, ...] = ("teacher", "student")


@dataclass(frozen=True)
class FindingCall:
    """The reviewer's call on one CXR finding (side / severity only where they apply)."""

    name: str
    present: bool
    side: str | None = None
    severity: str | None = None


@dataclass(frozen=True)
class ReviewDraft:
    """What the reviewer has on the page for one study."""

    modality: str  # "CXR" | "CT"
    findings: tuple[FindingCall, ...]  # CXR: one per FINDINGS; CT: empty
    tumour: str | None  # CT: one of TUMOUR_CLASSES
    report_text: str
    note: str


def clean_text(text: str) -> str:
    """Text without control or invisible characters (new lines and tabs kept), trimmed."""
    keep = (ch for ch in str(text or "") if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return "".join(keep).strip()


def draft_problem(draft: ReviewDraft) -> str | None:
    """Why the draft cannot be saved, as one plain sentence; None when it can."""
    text, note = clean_text(draft.report_text), clean_text(draft.note)
    if not text:
        return (
            "The report text is empty: accept the teacher's report as it stands or write the report you "
            "would give, then save."
        )
    if len(text) > MAX_REPORT_CHARS:
        return (
            f"The report text is {len(text):,} characters long; a review keeps at most {MAX_REPORT_CHARS:,}. "
            "Shorten it to the report itself."
        )
    if not any(ch.isalpha() for ch in text):
        return "The report text has no words in it: write the report in words, then save."
    if len(note) > MAX_NOTE_CHARS:
        return f"The note is {len(note):,} characters long; a note keeps at most {MAX_NOTE_CHARS:,}."
    if draft.modality == "CT" and draft.tumour not in TUMOUR_CLASSES:
        return "Set the tumour class (none, benign or malignant) before saving a CT review."
    if draft.modality == "CXR":
        names = [f.name for f in draft.findings]
        if sorted(names) != sorted(FINDINGS):
            return "Mark every finding present or absent before saving."
        for f in draft.findings:
            if f.side is not None and (f.name not in SIDE_APPLIES or f.side not in SIDES):
                return f"A side does not apply to {f.name.replace('_', ' ')} here."
            if f.severity is not None and (f.name not in SEVERITY_APPLIES or f.severity not in SEVERITIES):
                return f"A severity does not apply to {f.name.replace('_', ' ')} here."
    return None


def model_outputs(preds: Mapping[str, Prediction]) -> dict:
    """Both models' outputs at review time, in the store's layout (report, finding and tumour probabilities)."""
    return {
        m: {
            "report": preds[m].report,
            "findings": {k: round(float(v), 6) for k, v in preds[m].findings.items()},
            "tumour": {k: round(float(v), 6) for k, v in preds[m].tumour.items()},
        }
        for m in MODEL_ROLES
        if m in preds
    }


def build_review(
    draft: ReviewDraft, image_sha256: str, preds: Mapping[str, Prediction], model_version: int | None
):
    """The ``model.review.types.Review`` of a checked draft (call :func:`draft_problem` first)."""
    from model.review import FindingReview, Review, now_iso

    findings = tuple(
        FindingReview(
            name=f.name,
            present=f.present,
            side=f.side if f.present else None,
            severity=f.severity if f.present else None,
        )
        for f in draft.findings
    )
    return Review(
        image_sha256=image_sha256,
        modality=draft.modality,
        findings=findings if draft.modality == "CXR" else (),
        tumour=draft.tumour if draft.modality == "CT" else None,
        report_text=clean_text(draft.report_text),
        note=clean_text(draft.note),
        outputs=model_outputs(preds),
        model_version=model_version,
        created_at=now_iso(),
    )
