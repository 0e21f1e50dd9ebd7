"""What makes a review storable: labels from the model's label spaces, text of sane size, nothing identifying.

``review_problem(review)`` returns a sentence saying what is wrong (for the reviewer), or None.
"""

from __future__ import annotations

import json
from typing import Any

from model.review.types import Review, as_iso
from model.types import FINDINGS, MODALITIES, TUMOUR_CLASSES

SIDES: tuple[str, ...] = ("left", "right", "bilateral")
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
MAX_REPORT_CHARS = 20_000
MAX_NOTE_CHARS = 5_000
MAX_OUTPUTS_BYTES = 1_000_000
MAX_SOURCE_CHARS = 32

#: Keys that would carry a patient identifier or an upload's file name into ``outputs`` (lower case,
#: without separators): DICOM header keywords and file-name fields. The store refuses them (issue 14).
IDENTIFYING_KEYS: frozenset[str] = frozenset(
    {
        "patientname",
        "patientid",
        "patientbirthdate",
        "patientaddress",
        "otherpatientids",
        "otherpatientnames",
        "accessionnumber",
        "studyinstanceuid",
        "seriesinstanceuid",
        "sopinstanceuid",
        "institutionname",
        "referringphysicianname",
        "operatorsname",
        "performingphysicianname",
        "studyid",
        "filename",
        "uploadname",
        "originalfilename",
        "filepath",
        "dicomheader",
        "meta",
    }
)


def _identifying_key(obj: Any) -> str | None:
    """The first identifying key anywhere in a JSON-like value, or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower().replace("_", "").replace(" ", "").replace("-", "") in IDENTIFYING_KEYS:
                return str(k)
            found = _identifying_key(v)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = _identifying_key(v)
            if found:
                return found
    return None


def review_problem(review: Review) -> str | None:
    """Why ``review`` cannot be stored (a sentence), or None when it can."""
    if review.modality not in MODALITIES:
        return f"modality {review.modality!r} is not one of {', '.join(MODALITIES)}"
    names = [f.name for f in review.findings]
    unknown = [n for n in names if n not in FINDINGS]
    if unknown:
        return f"unknown finding {unknown[0]!r} (known: {', '.join(FINDINGS)})"
    if len(set(names)) != len(names):
        return "a finding is marked twice"
    for f in review.findings:
        if not isinstance(f.present, bool):
            return f"finding {f.name!r}: present must be true or false"
        if f.side is not None and f.side not in SIDES:
            return f"finding {f.name!r}: side {f.side!r} is not one of {', '.join(SIDES)}"
        if f.severity is not None and f.severity not in SEVERITIES:
            return f"finding {f.name!r}: severity {f.severity!r} is not one of {', '.join(SEVERITIES)}"
        if not f.present and (f.side or f.severity):
            return f"finding {f.name!r} is marked absent but has a side or severity"
    if review.tumour is not None and review.tumour not in TUMOUR_CLASSES:
        return f"tumour class {review.tumour!r} is not one of {', '.join(TUMOUR_CLASSES)}"
    text, note = review.report_text, review.note
    if not isinstance(text, str) or not isinstance(note, str):
        return "the report and the note must be text"
    if not review.findings and review.tumour is None and not text.strip() and not note.strip():
        return "it is empty (mark a finding, set the tumour class, or write the report or a note)"
    if len(text) > MAX_REPORT_CHARS:
        return f"the report is {len(text)} characters long, over the limit of {MAX_REPORT_CHARS}"
    if len(note) > MAX_NOTE_CHARS:
        return f"the note is {len(note)} characters long, over the limit of {MAX_NOTE_CHARS}"
    if "\x00" in text or "\x00" in note:
        return "the report or the note contains a NUL character"
    if review.model_version is not None and (
        not isinstance(review.model_version, int) or review.model_version < 1
    ):
        return f"model version {review.model_version!r} is not a registered version number"
    try:
        as_iso(review.created_at)
    except (TypeError, ValueError):
        return f"created_at {review.created_at!r} is not an ISO 8601 time"
    if not isinstance(review.source, str) or not 0 < len(review.source) <= MAX_SOURCE_CHARS:
        return f"source must be a short name (1..{MAX_SOURCE_CHARS} characters)"
    if not isinstance(review.outputs, dict):
        return "outputs must be a dict of the models' outputs"
    try:
        size = len(json.dumps(review.outputs))
    except (TypeError, ValueError) as e:
        return f"the models' outputs are not JSON ({e})"
    if size > MAX_OUTPUTS_BYTES:
        return f"the models' outputs are {size} bytes of JSON, over the limit of {MAX_OUTPUTS_BYTES}"
    key = _identifying_key(review.outputs)
    if key:
        return f"the models' outputs carry {key!r}, which could identify a patient or an upload; remove it"
    return None
