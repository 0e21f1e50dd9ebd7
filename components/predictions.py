"""Cached model calls for the pages: predictions, divergence and Grad-CAM per (image, model, style, context).

The functions only call ``model.inference`` / ``model.explain``, always through the process-wide
inference queue (``model.serving.shared_queue``: the thread policy, one FIFO for every session), so
that concurrent sessions never oversubscribe the CPU. Caching keys are the image sha256, the model-set
key (so new checkpoints invalidate old results), and reprs of the frozen style/context. Entries expire
after ``TTL_S`` and all ``st.cache_data`` entries share the byte budget ``server.maxCacheDataSize`` of
``.streamlit/config.toml``; what is cached here is small (no full-resolution arrays).
"""

from __future__ import annotations

import streamlit as st

from components.escaping import md_error
from components.model_store import MODEL_TITLES, ModelSet
from components.progress import StepProgress
from model.serving import shared_queue
from model.types import Explanation, PatientContext, Prediction, ReportStyle, Study

TTL_S = 3600  # s: results of a study nobody looked at for an hour go


def _on_queue(fn, *args, **kwargs):
    return shared_queue().run(fn, *args, **kwargs)


def _on_queue_later(fn, *args, **kwargs):
    """Extras drawn after the reports and overlays: behind every session's urgent model work."""
    return shared_queue().run_deferred(fn, *args, **kwargs)


def _waiting_note() -> str:
    n = shared_queue().pending()
    return f" (after {n} job{'s' * (n != 1)} from other sessions)" if n else ""


@st.cache_data(max_entries=256, ttl=TTL_S, show_spinner=False)
def _predict(
    set_key: str, model_id: str, study_key: str, style_key: str, ctx_key: str, _ms, _study, _style, _ctx
):
    return _on_queue(_ms.predictors[model_id].predict, _study, context=_ctx, style=_style)


def predict_cached(
    ms: ModelSet, model_id: str, study: Study, study_key: str, style: ReportStyle, context: PatientContext
) -> Prediction:
    return _predict(ms.key, model_id, study_key, repr(style), repr(context), ms, study, style, context)


def _decoding_words(style: ReportStyle) -> str:
    decoding = getattr(style, "decoding", "greedy")
    beams = getattr(style, "num_beams", 1) or 1
    return f"beam search, {beams} beams" if decoding == "beam" and beams > 1 else str(decoding)


def predict_all(
    ms: ModelSet,
    model_ids: list[str],
    study: Study,
    study_key: str,
    style: ReportStyle,
    context: PatientContext,
) -> dict[str, Prediction]:
    """Each model's prediction, with a step-by-step progress box when it takes a while (first run,
    beam search, a busy queue); a model that fails gets an error box and is left out."""
    preds: dict[str, Prediction] = {}
    with StepProgress("Writing reports…") as progress:
        for m in model_ids:
            title = MODEL_TITLES.get(m, m)
            progress.step(f"{title}: findings and report ({_decoding_words(style)}){_waiting_note()}")
            try:
                preds[m] = predict_cached(ms, m, study, study_key, style, context)
            except Exception as err:
                st.error(f"{title} failed on this study: {md_error(err, 'prediction')}.")
    return preds


@st.cache_data(max_entries=128, ttl=TTL_S, show_spinner=False)
def _divergence(set_key, study_key, tokens_key, ctx_key, detail, _ms, _study, _tokens, _ctx):
    from model.explain.divergence import token_divergence

    return _on_queue_later(
        token_divergence,
        _ms.predictors["teacher"],
        _ms.predictors["student"],
        _study,
        _tokens,
        context=_ctx,
        detail=detail,
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


@st.cache_data(max_entries=64, ttl=TTL_S, show_spinner=False)
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

    exp = _on_queue(
        explain,
        _ms.predictors[model_id],
        _study,
        target,
        method=method,
        context=_ctx,
        style=_style,
        tokens=_tokens,
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
    with StepProgress("Grad-CAM…") as progress:
        progress.step(f"{MODEL_TITLES.get(model_id, model_id)}: {method} for {target}{_waiting_note()}")
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


@st.cache_data(max_entries=64, ttl=TTL_S, show_spinner=False)
def _next_tokens(
    set_key, study_key, tokens_key, position, temperature, ctx_key, detail, _ms, _study, _tokens, _ctx
):
    from model.explain.divergence import next_token_distributions

    return _on_queue(
        next_token_distributions,
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


@st.cache_data(max_entries=256, ttl=TTL_S, show_spinner=False)
def _regenerate(set_key, model_id, study_key, labels, style_key, ctx_key, _ms, _study, _style, _ctx):
    from model.interactive import regenerate_report

    return _on_queue(regenerate_report, _ms.predictors[model_id], _study, labels, _style, _ctx)


def regenerate_cached(ms: ModelSet, model_id: str, study: Study, study_key: str, labels, style, context):
    """``model.interactive.regenerate_report``: one model's report from the user's labels (cached per labels)."""
    return _regenerate(
        ms.key, model_id, study_key, labels, repr(style), repr(context), ms, study, style, context
    )


@st.cache_data(max_entries=128, ttl=TTL_S, show_spinner=False)
def _detail(set_key, model_id, study_key, labels, finding, ctx_key, _ms, _study, _ctx):
    from model.interactive import finding_detail

    return _on_queue(finding_detail, _ms.predictors[model_id], _study, labels, finding, _ctx)


def detail_cached(ms: ModelSet, model_id: str, study: Study, study_key: str, labels, finding: str, context):
    """``model.interactive.finding_detail``: one model's detailed sentence(s) about one finding."""
    return _detail(ms.key, model_id, study_key, labels, finding, repr(context), ms, study, context)
