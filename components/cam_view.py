"""The Grad-CAM panel: target picker, method, opacity; teacher | student overlays.

It runs as an ``st.fragment`` so moving the opacity slider or picking a target re-runs only this panel,
never report generation. ``model.explain.gradcam`` (torch, the networks) is imported when the panel is
drawn, not when a page imports this module: a page paints before the models load.
"""

from __future__ import annotations

import streamlit as st

from components.escaping import md_error, md_name
from components.model_store import MODEL_TITLES, ModelSet
from components.predictions import explain_cached
from components.study_view import display_pixels, draw_mask_outlines
from model.types import FINDING_LABELS, FINDINGS, PatientContext, Prediction, ReportStyle, Study

CAM_WIDTH = 400  # px per overlay


def cam_default_note() -> str:
    from model.explain.gradcam import DEFAULT_CAM_LAYER, DEFAULT_CAM_METHOD, FALLBACK_CAM_METHOD

    return (
        f'Default: "{DEFAULT_CAM_METHOD}", the model\'s own lesion map (the map its heads pool from, trained on '
        "the phantoms' lesion masks; models with a lesion head only, else "
        f"{FALLBACK_CAM_METHOD}). It had the best pointing game on the validation phantoms "
        "(benchmarks/results/cam.md), yet points at the lesion in only half the teacher's cases and 43% of "
        "the student's. The Grad-CAM methods run on the teacher's "
        f"{DEFAULT_CAM_LAYER['resnet50']} and the student's {DEFAULT_CAM_LAYER['mobilenet_v3_small']} "
        "(stride 16). Treat every map as a hint, not a segmentation."
    )


def offered_methods(ms: ModelSet | None, model_ids) -> tuple[str, ...]:
    """Methods every shown model supports (the lesion map only when each model has one)."""
    from model.explain.gradcam import CAM_METHODS, methods_for

    if ms is None:
        return CAM_METHODS
    preds = [ms.predictors[i] for i in model_ids if i in ms.predictors]
    offered = [m for m in CAM_METHODS if all(m in methods_for(p.model) for p in preds)]
    return tuple(offered)


def default_target(study: Study, preds: dict[str, Prediction]) -> str:
    """The teacher's most likely finding (CXR) or tumour class (CT)."""
    p = preds.get("teacher") or next(iter(preds.values()))
    if study.modality == "CXR":
        return "finding:" + max(FINDINGS, key=lambda n: p.findings.get(n, 0.0))
    return "tumour:" + max(p.tumour, key=p.tumour.get)


def _target_label(target: str, preds: dict[str, Prediction]) -> str:
    kind, _, name = target.partition(":")
    if kind == "finding":
        return f"Finding: {FINDING_LABELS.get(name, name)}"
    if kind == "tumour":
        return f"Tumour class: {name}"
    return f"Report sentence {int(name) + 1}"


def cam_controls_ui(
    study: Study, preds: dict[str, Prediction], key: str, methods: tuple[str, ...] | None = None
) -> tuple[str, str, float]:
    from model.explain.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD, FALLBACK_CAM_METHOD, list_targets

    methods = methods or CAM_METHODS

    longest = max(preds.values(), key=lambda p: len(p.tokens)).tokens
    targets = list_targets(study.modality, longest)
    tkey = f"cam_target_{key}"
    if st.session_state.get(tkey) not in targets:
        st.session_state[tkey] = default_target(study, preds)
    c1, c2, c3 = st.columns([2, 1, 1])
    target = c1.selectbox("Explain", targets, format_func=lambda t: _target_label(t, preds), key=tkey)
    if st.session_state.get("cam_method") not in methods:
        st.session_state["cam_method"] = next(
            m for m in (DEFAULT_CAM_METHOD, FALLBACK_CAM_METHOD, *methods) if m in methods
        )
    note = cam_default_note()
    method = c2.selectbox("Method", methods, key="cam_method", help=note)
    alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.45, step=0.05, key="cam_alpha")
    st.caption(note)
    return target, method, alpha


@st.fragment
def render_cam_panel(
    ms: ModelSet,
    study: Study,
    study_key: str,
    preds: dict[str, Prediction],
    context: PatientContext,
    style: ReportStyle,
    masks=None,
) -> None:
    from model.explain.gradcam import overlay, sentence_texts

    st.subheader("Grad-CAM: where each model looks")
    target, method, alpha = cam_controls_ui(study, preds, study_key[:16], offered_methods(ms, preds))
    show_masks = bool(masks) and st.toggle("Outline ground truth", value=True, key="cam_masks")
    cols = st.columns(len(preds))
    for col, (model_id, pred) in zip(cols, preds.items(), strict=True):
        with col:
            st.markdown(f"**{MODEL_TITLES.get(model_id, model_id)}**")
            kind, _, name = target.partition(":")
            sentences = sentence_texts(pred.tokens)
            if kind == "sentence" and int(name) >= len(sentences):
                st.caption("This model's report has no such sentence.")
                continue
            try:
                with st.spinner("Computing Grad-CAM…"):
                    exp = explain_cached(
                        ms, model_id, study, study_key, target, method, context, style, pred.tokens
                    )
            except Exception as err:
                why = md_error(err, "Grad-CAM")
                st.error(f"Grad-CAM could not be computed: {why}. Try another target or method.")
                continue
            rgb = overlay(display_pixels(study.pixels), exp.heatmap, alpha)  # heat map resized down too
            if show_masks:
                rgb = draw_mask_outlines(rgb, masks)
            caption = f"{md_name(study.source)} · {method} · score {exp.score:.2f}"
            if exp.layer:
                caption += f" · {exp.layer}"
            if exp.flat:  # gradcam.is_flat: no localised positive evidence; the overlay shows no heat
                caption += " · flat map: no localised positive evidence for this target (shown without heat)"
            if kind == "sentence":
                caption += f" · “{sentences[int(name)]}”"
            st.image(rgb, caption=caption, width=CAM_WIDTH)
