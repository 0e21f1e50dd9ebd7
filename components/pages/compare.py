"""Compare page: one study, teacher | student side by side (report, findings, tumour, treatments, Grad-CAM)."""

import streamlit as st

from components.cam_view import render_cam_panel
from components.controls import patient_context_ui, report_style_ui
from components.layout import render_model_origin, render_page_header
from components.model_store import (
    MODEL_TITLES,
    describe_origin,
    load_model_set,
    training_data_summary,
    version_text,
)
from components.prediction_view import (
    divergence_summary,
    render_findings,
    render_ground_truth,
    render_guard_verdict,
    render_latency,
    render_ood_warning,
    render_report,
    render_report_edits,
    render_treatments,
    render_tumour,
    render_withheld,
    show_anyway_ui,
)
from components.predictions import divergence_cached, predict_all
from components.review_view import refused_reason, render_review_panel, render_review_refused
from components.study_view import render_study_viewer, study_picker_ui
from model.guard import with_verdict

render_page_header(
    "Compare teacher and student",
    "Upload a chest X-ray / CT slice or pick a sample; both models report side by side. "
    "Shaded words are where the student's next-token distribution departs from the teacher's.",
)
ms = load_model_set()
render_model_origin(ms.origin, describe_origin(ms))
style = report_style_ui()
show_nokd = "student_nokd" in ms.predictors and st.sidebar.toggle(
    "Also show the no-KD student", value=False, key="cmp_show_nokd"
)
highlight = st.sidebar.toggle("Highlight departing words", value=True, key="cmp_highlight")
threshold = st.sidebar.slider("Highlight threshold (JS bits)", 0.0, 1.0, 0.15, 0.05, key="cmp_threshold")

col_pick, col_img, col_truth = st.columns([1.1, 1.0, 1.1], gap="medium")
with col_pick:
    picked = study_picker_ui("cmp")
if picked is None:
    st.stop()
study, sample = picked.study, picked.sample
truth = sample.truth if sample else None
with col_pick:
    context = patient_context_ui(truth.context if truth else None, key=f"ctx_{study.sha256[:10]}")
with col_img:
    render_study_viewer(study, sample.masks if sample else None, key="cmp_view")
with col_truth:
    if truth is not None:
        st.subheader("Ground truth (phantom)")
        render_ground_truth(truth, sample.reports, sample.treatments, style.detail)
    else:
        st.subheader("Ground truth")
        st.caption("Not available for uploaded or real studies.")

# The input guard (model/guard) spoke when the study was picked: a refused study gets no report unless the
# user explicitly asks for the models' output anyway.
render_guard_verdict(study.verdict)
anyway_key = f"cmp_anyway_{study.sha256[:12]}_{study.modality}"
anyway = None
if study.verdict is not None and not study.verdict.accepted:
    anyway = show_anyway_ui(anyway_key)
    if not anyway:
        render_review_refused(refused_reason(study, {}) or "")
        st.stop()
    st.warning("Shown anyway at your request: the input guard refused this image.", icon=":material/warning:")

model_ids = ["teacher", "student"] + (["student_nokd"] if show_nokd else [])
preds = predict_all(ms, model_ids, study, picked.key, style, context)  # steps shown when slow
if not preds:
    st.stop()
preds = {m: with_verdict(study, p) for m, p in preds.items()}  # each model's own OOD check
render_ood_warning(preds)
if anyway is None and any(not p.verdict.accepted for p in preds.values()):
    anyway = show_anyway_ui(anyway_key)
shown = {m: p for m, p in preds.items() if p.verdict.accepted or anyway}

# Reports first (plain), then Grad-CAM, then the divergence highlights fill the report slots: the
# page shows both reports and both overlays before the four teacher-forced passes finish.
cols = st.columns(len(preds))
slots = {}
for col, (m, pred) in zip(cols, preds.items(), strict=True):
    with col, st.container(border=True):
        st.subheader(MODEL_TITLES[m])
        slots[m] = st.empty()
        if m not in shown:
            with slots[m].container():
                render_withheld(pred)
            continue
        with slots[m].container():
            render_report(pred, None, threshold, source=study.source)
        render_report_edits(pred)
        if study.modality == "CXR":
            render_findings(pred, truth)
        else:
            render_tumour(pred, truth)
        render_treatments(pred)
        render_latency(pred, ms.sizes.get(m))
        st.caption(f"{version_text(ms)} · Trained on: {training_data_summary(ms.predictors[m].card or {})}")

# Review (issue 14): labels, reports regenerated from them, the draft, Save; never on a refused image.
refusal = refused_reason(study, preds)
if refusal is not None:
    render_review_refused(refusal)
else:
    render_review_panel(ms, study, picked.key, preds, style, context)

if shown:
    render_cam_panel(ms, study, picked.key, shown, context, style, sample.masks if sample else None)

if highlight and "teacher" in shown and "student" in shown:
    for m, pred in shown.items():
        div = divergence_cached(ms, study, picked.key, pred.tokens, context, style.detail)
        if div is not None:
            with slots[m].container():
                render_report(pred, div, threshold, source=study.source)
                st.caption(divergence_summary(div))
