"""Compare page: one study, teacher | student side by side (report, findings, tumour, treatments, Grad-CAM)."""

import streamlit as st

from components.cam_view import render_cam_panel
from components.controls import patient_context_ui, report_style_ui
from components.escaping import md_error
from components.layout import render_model_origin, render_page_header
from components.model_store import MODEL_TITLES, describe_origin, load_model_set, training_data_summary
from components.prediction_view import (
    divergence_summary,
    render_findings,
    render_ground_truth,
    render_latency,
    render_ood_warning,
    render_report,
    render_treatments,
    render_tumour,
)
from components.predictions import divergence_cached, predict_cached
from components.study_view import render_study_viewer, study_picker_ui

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

model_ids = ["teacher", "student"] + (["student_nokd"] if show_nokd else [])
preds = {}
with st.spinner("Writing reports…"):
    for m in model_ids:
        try:
            preds[m] = predict_cached(ms, m, study, picked.key, style, context)
        except Exception as err:
            st.error(f"{MODEL_TITLES[m]} failed on this study: {md_error(err, 'prediction')}.")
if not preds:
    st.stop()
render_ood_warning(preds)

# Reports first (plain), then Grad-CAM, then the divergence highlights fill the report slots: the
# page shows both reports and both overlays before the four teacher-forced passes finish.
cols = st.columns(len(preds))
slots = {}
for col, (m, pred) in zip(cols, preds.items(), strict=True):
    with col, st.container(border=True):
        st.subheader(MODEL_TITLES[m])
        slots[m] = st.empty()
        with slots[m].container():
            render_report(pred, None, threshold, source=study.source)
        if study.modality == "CXR":
            render_findings(pred, truth)
        else:
            render_tumour(pred, truth)
        render_treatments(pred)
        render_latency(pred, ms.sizes.get(m))
        st.caption(f"Trained on: {training_data_summary(ms.predictors[m].card or {})}")

render_cam_panel(ms, study, picked.key, preds, context, style, sample.masks if sample else None)

if highlight and "teacher" in preds and "student" in preds:
    for m, pred in preds.items():
        div = divergence_cached(ms, study, picked.key, pred.tokens, context, style.detail)
        if div is not None:
            with slots[m].container():
                render_report(pred, div, threshold, source=study.source)
                st.caption(divergence_summary(div))
