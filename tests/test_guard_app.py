"""The input guard on the Compare page (AppTest): refused images get no report, findings or treatment
unless the user asks; the detected modality shows per study and can be overridden; other DICOM modalities
can be loaded on request (and are then checked)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from model.guard import GUARD_DIR
from model.guard.families import NEGATIVE_FAMILIES, WRONG_MODALITY, examples

TIMEOUT = 180  # seconds per AppTest run (conftest.make_app reads it): the guard adds a model

pytestmark = pytest.mark.skipif(not (GUARD_DIR / "model.safetensors").is_file(), reason="no shipped guard")


def _reports(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if "md-report" in e.proto.body]


def _model_output_text(at) -> str:
    return "\n".join(
        m.value for m in at.markdown if "Tumour class" in m.value or "Treatment suggestions" in m.value
    )


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _anyway(at):
    return [c for c in at.checkbox if c.key and c.key.startswith("cmp_anyway_")]


@pytest.mark.parametrize("family", [*NEGATIVE_FAMILIES, WRONG_MODALITY])
def test_refused_upload_shows_why_and_no_report_until_asked(app, family):
    ex = next(iter(examples(family, "test", 1)))
    if ex.hint:  # a non-chest DICOM the user loads as a chest modality
        ex = next(e for e in examples(family, "test", 8) if not e.hint)
    app.run()
    app.file_uploader(key="cmp_upload").set_value((ex.name, ex.data, "application/octet-stream")).run()
    assert not app.exception
    errors = [e.value for e in app.error if "Input guard" in e.value]
    assert errors and "threshold" in errors[0]
    assert _reports(app) == [] and _model_output_text(app) == ""
    if family != WRONG_MODALITY:  # the viewer does not call junk a chest modality
        captions = [c for e in app.get("image") for c in e.captions]
        assert any("· not a chest image ·" in c for c in captions), captions
    boxes = _anyway(app)
    assert len(boxes) == 1 and "anyway" in boxes[0].label
    boxes[0].check().run()
    assert not app.exception
    assert len(_reports(app)) == 2
    assert any("Shown anyway" in w.value for w in app.warning)


def test_detected_modality_per_study_and_override(app):
    from model.data.phantom import make_case

    data = _png(make_case(21, "CT", size=256).image)
    app.run()
    assert not [r for r in app.radio if r.key == "cmp_plain_modality"]  # no global switch any more
    app.file_uploader(key="cmp_upload").set_value(("slice.png", data, "image/png")).run()
    assert not app.exception
    assert any("· CT ·" in c for e in app.get("image") for c in e.captions)
    key = f"cmp_modality_{hashlib.sha256(data).hexdigest()[:16]}"
    box = app.selectbox(key=key)
    assert "detected: a chest CT slice" in box.label
    box.set_value("CXR").run()
    assert not app.exception
    assert any("· CXR ·" in c for e in app.get("image") for c in e.captions)
    assert any("You chose a chest X-ray" in c.value.replace("\\", "") for c in app.caption)
    assert len(_reports(app)) == 2


def test_other_dicom_modality_can_be_loaded_on_request_and_is_then_checked(app):
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("MR_small.dcm", download=False)).read_bytes()
    app.run()
    app.file_uploader(key="cmp_upload").set_value(("head.dcm", data, "application/dicom")).run()
    assert not app.exception
    assert any("Choose a modality" in e.value for e in app.error)
    key = f"cmp_load_as_{hashlib.sha256(data).hexdigest()[:16]}"
    app.selectbox(key=key).set_value("CT").run()
    assert not app.exception
    assert any("Input guard" in e.value for e in app.error)
    assert _reports(app) == []


def test_shipped_samples_are_accepted_on_the_page(app):
    from components.samples import list_samples

    app.run()
    for sid in list_samples():
        app.selectbox(key="cmp_study").set_value(f"sample:{sid}").run()
        assert not app.exception
        assert not [e for e in app.error if "Input guard" in e.value], sid
        assert len(_reports(app)) == 2, sid
