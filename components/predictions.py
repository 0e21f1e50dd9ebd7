"""Cached model calls for the pages: predictions, divergence and Grad-CAM per (image, model, style, context).

The functions only call ``model.inference`` / ``model.explain``; caching keys are the image sha256, the
model-set key (so new checkpoints invalidate old results), and reprs of the frozen style/context.
"""

from __future__ import annotations

import streamlit as st

from components.escaping import md_error
from components.model_store import ModelSet
from model.types import Explanation, PatientContext, Prediction, ReportStyle, Study


@st.cache_data(max_entries=256, show_spinner=False)
def _predict(
    set_key: str, model_id: str, study_key: str, style_key: str, ctx_key: str, _ms, _study, _style, _ctx
):
    return _ms.predictors[model_id].predict(_study, context=_ctx, style=_style)


def predict_cached(
    ms: ModelSet, model_id: str, study: Study, study_key: str, style: ReportStyle, context: PatientContext
) -> Prediction:
    return _predict(ms.key, model_id, study_key, repr(style), repr(context), ms, study, style, context)


@st.cache_data(max_entries=128, show_spinner=False)
def _divergence(set_key, study_key, tokens_key, ctx_key, detail, _ms, _study, _tokens, _ctx):
    from model.explain.divergence import token_divergence

    return token_divergence(
        _ms.predictors["teacher"], _ms.predictors["student"], _study, _tokens, context=_ctx, detail=detail
    )


def divergence_cached(ms: ModelSet, study: Study, study_key: str, tokens: list[str], context, detail: str):
    """Per-token JS divergence (teacher vs student) along ``tokens``; None when it cannot be computed."""
    try:
        return _divergence(
            ms.key, study_key, "\x1f".join(tokens), repr(context), detail, ms, study, tokens, context
        )
    except Exception as err:  # the highlight is a bonus: never lose the report over it
        st.caption(f"Divergence unavailable: {md_error(err, 'token divergence')}.")
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def _explain(
    set_key,
    model_id,
    study_key,
    target,
    method,
    style_key,
    ctx_key,
    tokens_key,
    _ms,
    _study,
    _ctx,
    _style,
    _tokens,
):
    import dataclasses

    from components.study_view import display_pixels
    from model.explain.gradcam import explain

    exp = explain(
        _ms.predictors[model_id], _study, target, method=method, context=_ctx, style=_style, tokens=_tokens
    )
    # keep display-size maps in the cache: a 2k x 2k DICOM would otherwise cost 16 MB per entry
    return dataclasses.replace(exp, heatmap=display_pixels(exp.heatmap))


def explain_cached(
    ms: ModelSet,
    model_id: str,
    study: Study,
    study_key: str,
    target: str,
    method: str,
    context: PatientContext,
    style: ReportStyle,
    tokens: list[str] | None = None,
) -> Explanation:
    # Head targets do not depend on the report: share their maps across report styles.
    is_sentence = target.startswith("sentence:")
    tokens_key = "\x1f".join(tokens or []) if is_sentence else ""
    style_key = repr(style) if is_sentence else ""
    return _explain(
        ms.key,
        model_id,
        study_key,
        target,
        method,
        style_key,
        repr(context),
        tokens_key,
        ms,
        study,
        context,
        style,
        tokens,
    )


@st.cache_data(max_entries=64, show_spinner=False)
def _next_tokens(
    set_key, study_key, tokens_key, position, temperature, ctx_key, detail, _ms, _study, _tokens, _ctx
):
    from model.explain.divergence import next_token_distributions

    return next_token_distributions(
        _ms.predictors["teacher"],
        _ms.predictors["student"],
        _study,
        _tokens,
        position,
        temperature=temperature,
        context=_ctx,
        detail=detail,
    )


def next_tokens_cached(ms, study, study_key, tokens, position, temperature, context, detail):
    return _next_tokens(
        ms.key,
        study_key,
        "\x1f".join(tokens),
        int(position),
        float(temperature),
        repr(context),
        detail,
        ms,
        study,
        tokens,
        context,
    )
