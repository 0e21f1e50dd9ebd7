"""AppTest (headless Streamlit) for the Compare page: samples, uploads, controls, overlays, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from model.types import DISCLAIMER


def _png(seed: int = 0, size: int = 96, modality: str = "CXR") -> bytes:
    """A phantom chest image as a PNG upload (noise would be refused by the input guard, model/guard)."""
    from PIL import Image

    from model.data.phantom import make_case

    img = (make_case(seed, modality, size=size).image * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _html_bodies(at) -> list[str]:
    return [e.proto.body for e in at.get("html")]


def _reports(at) -> list[str]:
    return [b for b in _html_bodies(at) if "md-report" in b]


def _overlay_captions(at) -> list[str]:
    return [c for e in at.get("image") for c in e.captions if "score" in c]


def _all_text(at) -> str:
    parts = [m.value for m in at.markdown] + [w.value for w in at.warning] + [e.value for e in at.error]
    parts += [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def test_compare_default_sample_renders_both_reports_and_overlays(app):
    app.run()
    assert not app.exception
    assert DISCLAIMER in [w.value for w in app.warning]
    assert len(_reports(app)) == 2
    assert len(_overlay_captions(app)) == 2
    assert any("Teacher" in h.value for h in app.subheader)
    assert any("Student" in h.value for h in app.subheader)


def test_findings_are_one_block_per_model_with_every_probability_and_the_truth(app):
    app.run()
    assert not app.exception
    blocks = [b for b in _html_bodies(app) if "md-findings" in b]
    assert len(blocks) == 2  # one element per model, not seven progress bars
    from model.types import FINDING_LABELS

    for b in blocks:
        assert all(f"{label}: " in b for label in FINDING_LABELS.values())
        assert b.count('role="meter"') == len(FINDING_LABELS)
        assert "truth: present" in b  # the default sample is an abnormal phantom


def test_findings_html_escapes_and_clamps():
    from components.prediction_view import findings_html
    from model.types import FINDINGS, Prediction

    pred = Prediction(
        model_id="m", modality="CXR", findings={FINDINGS[0]: 1.7, FINDINGS[1]: -0.2}, tumour={},
        treatments=[], report="", tokens=[], token_probs=[], latency_ms={}, ood_score=0.0, ood_flag=False,
    )  # fmt: skip
    out = findings_html(pred)
    assert 'aria-valuenow="1.00"' in out and "width:100.0%" in out and "width:0.0%" in out
    assert "<script" not in out and "truth:" not in out


def test_upload_png_then_controls_update(app):
    app.run()
    app.file_uploader(key="cmp_upload").set_value(("my_upload.png", _png(1), "image/png")).run()
    assert not app.exception
    assert app.selectbox(key="cmp_study").value.startswith("upload:my_upload.png")
    before = _reports(app)
    assert len(before) == 2 and len(_overlay_captions(app)) == 2
    # report controls apply at once, without re-uploading
    app.sidebar.select_slider(key="rc_detail").set_value("brief").run()
    app.sidebar.slider(key="rc_max_tokens").set_value(16).run()
    after = _reports(app)
    assert len(after) == 2 and after != before  # regenerated at once, no re-upload
    assert app.selectbox(key="cmp_study").value.startswith("upload:my_upload.png")
    app.sidebar.radio(key="rc_decoding").set_value("beam").run()
    assert not app.exception
    app.sidebar.slider(key="rc_beams").set_value(2).run()
    app.sidebar.radio(key="rc_decoding").set_value("sample").run()
    app.sidebar.slider(key="rc_temperature").set_value(1.5).run()
    assert not app.exception
    assert len(_reports(app)) == 2
    # CAM controls: opacity and target
    app.slider(key="cam_alpha").set_value(0.8).run()
    target = next(s for s in app.selectbox if s.key and s.key.startswith("cam_target_"))
    target.set_value("finding:nodule").run()
    assert not app.exception
    assert len(_overlay_captions(app)) == 2


def test_bad_upload_shows_loader_message_and_app_keeps_working(app):
    app.run()
    app.file_uploader(key="cmp_upload").set_value(
        ("broken.png", b"definitely not an image", "image/png")
    ).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("broken\\.png" in e for e in errors)  # the name, Markdown-escaped (components.escaping)
    # no other study's reports pass for an answer to the rejected upload: nothing is analysed
    assert app.selectbox(key="cmp_study").value is None
    assert len(_reports(app)) == 0
    assert any("rejected" in i.value for i in app.info)
    # the page still works: choosing a sample shows it, labelled as not the rejected file
    app.selectbox(key="cmp_study").select_index(0).run()
    assert len(_reports(app)) == 2
    assert any("not the rejected file" in i.value for i in app.info)
    # and a good upload afterwards works too
    app.file_uploader(key="cmp_upload").set_value(
        [("broken.png", b"definitely not an image", "image/png"), ("ok.png", _png(2), "image/png")]
    ).run()
    assert not app.exception
    assert app.selectbox(key="cmp_study").value.startswith("upload:ok.png")


def test_dicom_sample_window_presets_and_no_identifiers(app):
    from components.samples import list_samples

    if "pydicom_ct_small" not in list_samples():
        pytest.skip("pydicom test data not installed")
    app.run()
    app.selectbox(key="cmp_study").set_value("sample:pydicom_ct_small").run()
    assert not app.exception
    window = app.selectbox(key="cmp_view_window")
    window.set_value(window.options[-1]).run()
    assert not app.exception
    text = _all_text(app) + "\n".join(str(t.value) for t in app.table)
    assert "CompressedSamples" not in text  # CT_small.dcm's PatientName
    assert len(_reports(app)) == 2


def test_phantom_sample_shows_ground_truth(app):
    from components.samples import list_samples

    samples = [s for s in list_samples() if s.startswith("cxr_")]
    if not samples:
        pytest.skip("no phantom samples shipped yet")
    app.run()
    app.selectbox(key="cmp_study").set_value(f"sample:{samples[0]}").run()
    assert not app.exception
    assert any("Ground truth" in h.value for h in app.subheader)


def test_ood_warning_is_shown_for_flagged_predictions():
    def page():
        from components.prediction_view import render_ood_warning
        from model.types import Prediction

        def pred(flag):
            return Prediction("m", "CXR", {}, {}, [], "", [], [], {}, 7.5 if flag else 1.0, flag)

        render_ood_warning({"teacher": pred(True), "student": pred(False)})

    at = AppTest.from_function(page).run()
    assert any("Out of distribution" in w.value and "7.5" in w.value for w in at.warning)


def test_ct_phantom_sample_is_read_as_ct(app):
    from components.samples import list_samples

    if "ct_malignant" not in list_samples():
        pytest.skip("no CT phantom samples shipped")
    app.run()
    app.selectbox(key="cmp_study").set_value("sample:ct_malignant").run()
    assert not app.exception
    assert any("· CT ·" in c for e in app.get("image") for c in e.captions)
    assert any("Tumour class" in m.value for m in app.markdown)
    # a plain upload is read as what the input guard detects (no global switch)
    app.file_uploader(key="cmp_upload").set_value(("slice.png", _png(5, 256, "CT"), "image/png")).run()
    assert not app.exception
    assert any(c.startswith("slice\\.png · CT") for e in app.get("image") for c in e.captions)
