"""Distillation explained: soft targets, temperature and the KD loss terms over training."""

import numpy as np
import streamlit as st

from components.figures import make_loss_curves_figure, make_next_token_figure
from components.layout import render_model_origin, render_page_header
from components.model_store import describe_origin, load_model_set
from components.predictions import next_tokens_cached, predict_cached
from components.study_view import render_study_viewer, study_picker_ui
from components.training_log import train_log_for
from model.types import DETAIL_LEVELS, PatientContext, ReportStyle

render_page_header(
    "Distillation explained",
    "The student learns from the teacher's whole next-word distribution (soft targets), not only from the "
    "one correct word. Raising the temperature T flattens both distributions and shows the 'dark "
    "knowledge': which wrong words the teacher thinks are nearly right.",
)
ms = load_model_set()
render_model_origin(ms.origin, describe_origin(ms))

left, right = st.columns([1, 2])
with left:
    picked = study_picker_ui("dist")
    if picked is not None:
        render_study_viewer(picked.study, key="dist_view")
if picked is None:
    st.stop()

study = picked.study
context = picked.sample.truth.context if picked.sample and picked.sample.truth else PatientContext()
with right:
    detail = st.select_slider("Detail", options=list(DETAIL_LEVELS), value="standard", key="dist_detail")
    style = ReportStyle(detail=detail)
    teacher_pred = predict_cached(ms, "teacher", study, picked.key, style, context)
    tokens = teacher_pred.tokens
    if not tokens:
        st.warning("The teacher wrote an empty report for this study.")
        st.stop()
    st.markdown("**Teacher's report** (both models are teacher-forced on it):")
    st.write(teacher_pred.report)
    position = st.slider(
        "Position in the report",
        0,
        len(tokens) - 1,
        min(3, len(tokens) - 1),
        key="dist_position",
        help="Which next word to look at.",
    )
    temperature = st.slider("Temperature T", 0.5, 10.0, 2.0, step=0.5, key="dist_temperature")
    top_k = st.slider("Words shown", 5, 30, 12, key="dist_top_k")
    prefix = " ".join(tokens[:position])
    st.markdown(f"Context so far: “{prefix} **___**” — the actual next word is **{tokens[position]}**.")
    nt = next_tokens_cached(ms, study, picked.key, tokens, position, temperature, context, detail)
    st.plotly_chart(
        make_next_token_figure(nt.words, nt.teacher, nt.student, top_k=top_k, actual=tokens[position]),
        key="dist_next_token_chart",
    )
    hard = next_tokens_cached(ms, study, picked.key, tokens, position, 1.0, context, detail)

    def entropy(p: np.ndarray) -> float:
        return float(-(p * np.log2(np.clip(p, 1e-30, None))).sum())

    dark = int((nt.teacher > 0.01).sum())
    st.markdown(
        f"A hard label says only **{tokens[position]}** is right (probability 1, every other word 0). "
        f"The teacher's soft target at T = {temperature:g} spreads probability over **{dark}** words above 1%: "
        "that ranking of the wrong answers is what the student learns from it."
    )
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(
        "Teacher entropy (bits)",
        f"{entropy(nt.teacher):.2f}",
        f"{entropy(nt.teacher) - entropy(hard.teacher):+.2f} vs T=1",
    )
    c2.metric("Student entropy (bits)", f"{entropy(nt.student):.2f}")
    c3.metric("JS divergence (bits)", f"{nt.divergence:.3f}")
    c4.metric("KD term T²·KL(p_t‖p_s)", f"{temperature**2 * nt.kl_teacher_student:.3f}")
    st.caption(
        "Hinton et al. (2015): L = α·CE(y, p_s) + (1 − α)·T²·KL(p_t^T ‖ p_s^T). The T² keeps the gradient "
        "scale comparable across temperatures."
    )

st.subheader("KD loss terms over training")
log_cols = st.columns(2)
for col, model_id in zip(log_cols, ("student", "student_nokd"), strict=True):
    with col:
        if model_id not in ms.dirs:
            continue
        records = train_log_for(ms.dirs[model_id])
        if not records:
            st.caption(f"No train_log.jsonl in the {model_id} checkpoint.")
            continue
        stage = next((r.get("stage") for r in records if r.get("stage")), model_id)
        st.plotly_chart(
            make_loss_curves_figure(records, "train", f"{model_id} ({stage}): loss terms per step"),
            key=f"dist_loss_{model_id}",
        )
        if any(r.get("split") == "val" for r in records):
            st.plotly_chart(
                make_loss_curves_figure(records, "val", f"{model_id}: validation per epoch"),
                key=f"dist_val_{model_id}",
            )
