"""The shipped samples are worth showing, and the shipped models say what the textbook ones show (issue 10).

assets/samples (``benchmarks/make_samples.py``) holds one *textbook* phantom per CXR finding (that finding
alone, moderate or severe, not subtle), a normal CXR and a CT slice per tumour class, plus a few *subtle*
phantoms. A textbook case is one a reader checks by eye, so a model that misses it cannot be shown as
working: the standard-detail greedy report of the teacher and the student, read by the report labeler,
must state each of its findings as positive (and nothing on the normal ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.data.labeler import POSITIVE, label_report
from model.evaluate.clinical import CE_LABELS
from model.types import FINDINGS, TUMOUR_CLASSES, CaseTruth

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples"


def _index() -> list[dict]:
    return json.loads((SAMPLES / "index.json").read_text())


def _truth(entry: dict) -> dict:
    return json.loads((SAMPLES / entry["truth"]).read_text())


def _expected(entry: dict) -> set[str]:
    """The labels a report of this sample must state positive (empty: a normal study, none may be)."""
    truth = CaseTruth.from_dict(_truth(entry))
    if truth.modality == "CT":
        return set() if truth.tumour == "none" else {f"tumour_{truth.tumour}"}
    return {f.name for f in truth.findings}


def _misses(report: str, want: set[str]) -> list[str]:
    """What ``report`` gets wrong: a wanted label not positive, or (normal study) any label positive."""
    labels = label_report(report)
    if want:
        return [f"{k} not stated ({labels[k]})" for k in sorted(want) if labels[k] != POSITIVE]
    return [f"{k} stated" for k in CE_LABELS if labels[k] == POSITIVE]


def test_a_textbook_sample_per_finding_and_tumour_class_and_subtle_ones_flagged():
    index = _index()
    assert {e["kind"] for e in index} <= {"textbook", "subtle"}
    kinds = [e["kind"] for e in index]
    assert kinds == sorted(kinds, key=lambda k: k == "subtle"), "textbook samples come first"
    textbook = [(e, CaseTruth.from_dict(_truth(e))) for e in index if e["kind"] == "textbook"]
    for name in FINDINGS:
        hits = [
            e["id"]
            for e, t in textbook
            if t.modality == "CXR"
            and [f.name for f in t.findings] == [name]
            and not t.findings[0].subtle
            and t.findings[0].severity in ("moderate", "severe")
        ]
        assert hits, f"no textbook sample of {name}"
    assert any(t.modality == "CXR" and not t.findings for _, t in textbook), "no normal CXR"
    for cls in TUMOUR_CLASSES:
        assert any(t.modality == "CT" and t.tumour == cls for _, t in textbook), f"no CT sample: {cls}"
    subtle = [e for e in index if e["kind"] == "subtle"]
    assert subtle
    for e in subtle:
        t = CaseTruth.from_dict(_truth(e))
        assert t.findings and all(f.subtle for f in t.findings), e["id"]
        assert "(subtle)" in e["title"], e["id"]
    # the criterion below is one a report can meet: the ground-truth report meets it
    for e, _ in textbook:
        assert not _misses(_truth(e)["reports"]["standard"], _expected(e)), e["id"]


@pytest.mark.xfail(
    strict=True,
    reason="issue 10: the shipped 160 px teacher (runs/v9) states every CXR textbook finding and both CT "
    "tumours but calls the ct_none sample a benign nodule; the run-v10 KD student states five of the seven CXR "
    "findings and both CT tumours but misses the nodule and consolidation samples and calls ct_none malignant. "
    "Both must pass before this marker goes",
)
def test_shipped_models_state_the_textbook_findings():
    from model.data.imaging import load_study_path
    from model.inference import Predictor, shipped_checkpoint

    textbook = [e for e in _index() if e["kind"] == "textbook"]
    studies = {e["id"]: load_study_path(SAMPLES / e["image"], modality_hint=e["modality"]) for e in textbook}
    failures = []
    for m in ("teacher", "student"):
        p = Predictor.from_dir(shipped_checkpoint(m), m)
        for e in textbook:
            report = p.predict(studies[e["id"]]).report  # standard detail, greedy
            if misses := _misses(report, _expected(e)):
                failures.append(f"{m} {e['id']}: {'; '.join(misses)} -- {report!r}")
    assert not failures, "\n".join(failures)
