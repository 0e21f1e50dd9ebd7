"""Reviewing a case on Compare (issue 14, Deliver 1 and 6): labels, reports regenerated from them, "more
detail" on one finding, the report draft, a note, Save.

The logic lives in ``model/interactive.py`` (regeneration) and ``model/review_draft.py`` (checks and the
``Review``); the store is ``model.review`` (opened by ``components.model_store.review_store``). Nothing
here stores or shows a file name or a DICOM field: a review is keyed by the sha256 of the de-identified
pixels.
"""

from __future__ import annotations

import html
import logging

import streamlit as st

from components.escaping import md, md_error
from components.model_store import MODEL_TITLES, ModelSet, review_store, version_text
from components.prediction_view import describe_conflicts
from components.predictions import detail_cached, regenerate_cached
from model.interactive import ReportLabels, splice_sentences
from model.review_draft import (
    SEVERITIES,
    SEVERITY_APPLIES,
    SIDE_APPLIES,
    SIDES,
    FindingCall,
    ReviewDraft,
    build_review,
    draft_problem,
)
from model.types import (
    FINDING_LABELS,
    FINDINGS,
    TUMOUR_CLASSES,
    PatientContext,
    Prediction,
    ReportStyle,
    Study,
)

log = logging.getLogger(__name__)
ROLES = ("teacher", "student")
REVIEWED = "reviewed"  # the badge's word


def refused_reason(study: Study, preds: dict[str, Prediction]) -> str | None:
    """Why this study cannot be reviewed (the input guard refused it), or None."""
    if study.verdict is not None and not study.verdict.accepted:
        return study.verdict.reason or "the input guard refused this image"
    for p in preds.values():
        if p.verdict is not None and not p.verdict.accepted:
            return p.verdict.reason or "the input guard refused this image for one of the models"
    return None


def render_review_refused(reason: str) -> None:
    st.info(
        "**This image cannot be reviewed:** the input guard refused it, so the models' outputs on it mean "
        f"nothing to learn from. {md(reason)}",
        icon=":material/rate_review:",
    )


def _image_sha(study: Study) -> str:
    from model.review import pixel_sha256

    return pixel_sha256(study.pixels)


def render_reviewed_badge(store, image_sha: str) -> None:
    """The "reviewed" badge (and when / what) for an image already in the store; nothing otherwise."""
    if store is None:
        return
    try:
        reviews = store.reviews_for_image(image_sha)
    except Exception as err:
        st.caption(f":material/warning: Could not read the review store: {_store_message(err)}")
        return
    if not reviews:
        return
    last = max(reviews, key=lambda r: r.created_at)
    st.badge(REVIEWED, icon=":material/task_alt:", color="green")
    note = f" · note: {md(last.note[:200])}" if last.note else ""
    st.caption(
        f"{len(reviews)} review{'s' * (len(reviews) != 1)} of this image in the store; the last saved "
        f"{md(last.created_at[:19].replace('T', ' '))} UTC{note}"
    )


def _store_message(err: BaseException) -> str:
    """A store error's own sentence (``StoreError`` is written for users); anything else a plain line."""
    from model.review import StoreError

    return md(err) if isinstance(err, StoreError) else md_error(err, "the review store")


#: whether "Review this case" starts open (tests open it; users open it when they want to review)
REVIEW_OPEN_AT_START = False

# ----------------------------------------------------------------------------------------------
# Labels


def labels_ui(
    modality: str, base: ReportLabels, key: str, kept: dict | None = None
) -> tuple[ReportLabels, tuple[FindingCall, ...]]:
    """Present / absent per finding (side and severity where they apply) or the CT tumour class; starts
    from ``base`` (the teacher's heads), or from ``kept`` (widget key -> value: what the reviewer had set
    before the panel was closed, when Streamlit dropped the widgets' own state). Returns the labels reports
    are written from and the calls; ``kept`` is updated with the values now shown."""
    kept = {} if kept is None else kept

    def start(wkey: str, default):
        return kept.get(wkey, default) if wkey not in st.session_state else default

    if modality == "CT":
        wkey = f"{key}_tumour"
        tumour = st.radio(
            "Tumour class",
            TUMOUR_CLASSES,
            index=TUMOUR_CLASSES.index(start(wkey, base.tumour or "none")),
            horizontal=True,
            key=wkey,
        )
        kept[wkey] = tumour
        return base.with_tumour(tumour), ()
    calls = []
    for name in FINDINGS:
        c1, c2, c3 = st.columns([1.4, 1, 1])
        fkey = f"{key}_f_{name}"
        present = c1.toggle(FINDING_LABELS[name], value=bool(start(fkey, name in base.present)), key=fkey)
        kept[fkey] = present
        side = severity = None
        if name in SIDE_APPLIES:
            skey = f"{key}_side_{name}"
            was = start(skey, None)
            side = c2.selectbox(
                "Side",
                SIDES,
                index=SIDES.index(was) if was in SIDES else None,
                key=skey,
                disabled=not present,
                placeholder="side",
                label_visibility="collapsed",
            )
            kept[skey] = side
        if name in SEVERITY_APPLIES:
            vkey = f"{key}_sev_{name}"
            was = start(vkey, None)
            severity = c3.selectbox(
                "Severity",
                SEVERITIES,
                index=SEVERITIES.index(was) if was in SEVERITIES else None,
                key=vkey,
                disabled=not present,
                placeholder="severity",
                label_visibility="collapsed",
            )
            kept[vkey] = severity
        calls.append(FindingCall(name, present, side if present else None, severity if present else None))
    labels = ReportLabels("CXR", present=tuple(c.name for c in calls if c.present))
    return labels, tuple(calls)


def report_box_html(text: str) -> str:
    """A report as escaped HTML (the reviewer's and the models' text is never markup)."""
    return f'<div class="md-review-report" style="line-height: 1.6;">{html.escape(text)}</div>'


# ----------------------------------------------------------------------------------------------
# The panel


def render_review_panel(
    ms: ModelSet,
    study: Study,
    study_key: str,
    preds: dict[str, Prediction],
    style: ReportStyle,
    context: PatientContext,
) -> None:
    """The "Review this case" expander under the model columns (call only for a study the guard accepted)."""
    if not all(m in preds for m in ROLES):
        return
    key = f"rv_{study.sha256[:12]}_{study.modality}"
    store, store_problem = review_store(create=False)  # a page view never creates the store; Save does
    image_sha = _image_sha(study)
    badge = st.container()  # filled last: a save in this run shows at once
    teacher = ms.predictors["teacher"]
    base = ReportLabels.from_prediction(preds["teacher"], teacher.finding_thresholds)
    # A stateful expander: while it is closed nothing inside is drawn or sent, so the page a browser renders
    # on every upload is lighter (a quarter less browser CPU per upload, benchmarks/bench_load.py); what the
    # reviewer set lives on in plain session keys (widgets drop their state in runs that do not draw them).
    panel = st.expander(
        "Review this case",
        expanded=REVIEW_OPEN_AT_START,
        key=f"{key}_open",
        on_change="rerun",
        icon=":material/rate_review:",
    )
    if not panel.open:
        with badge:
            render_reviewed_badge(store, image_sha)
        return
    kept = st.session_state.setdefault(f"{key}_kept", {})
    with panel:
        st.caption(
            "Mark what you see; both models rewrite their reports from your labels (the decoder is "
            "label-conditioned). Start from the teacher's calls. Side and severity are saved with the "
            "review; the reports are conditioned on presence only."
        )
        labels, calls = labels_ui(study.modality, base, key, kept)
        edited = labels != base
        reports = {m: preds[m].report for m in ROLES}
        if edited:
            cols = st.columns(2)
            for col, m in zip(cols, ROLES, strict=True):
                try:
                    regen = regenerate_cached(ms, m, study, study_key, labels, style, context)
                except Exception as err:
                    col.error(
                        f"{MODEL_TITLES[m]}: could not rewrite the report ({md_error(err, 'regeneration')})."
                    )
                    continue
                reports[m] = regen.report
                with col:
                    st.markdown(f"**{MODEL_TITLES[m]}, from your labels**")
                    st.html(report_box_html(regen.report))
                    if regen.conflicts:
                        st.caption(
                            f":material/warning: This report still {describe_conflicts(regen.conflicts)} "
                            "against your labels: the decoder did not follow them there."
                        )
                    if regen.edits:
                        st.caption(f":material/rule: Made to follow your labels: {md(regen.edits)}.")
                    st.caption(f":material/timer: {regen.latency_ms['total']:.0f} ms · {version_text(ms)}")
        reports = _more_detail_ui(ms, study, study_key, labels, context, reports, key)
        text = _draft_ui(reports["teacher"], key)
        note_key = f"{key}_note"
        if note_key not in st.session_state and kept.get(note_key):
            st.session_state[note_key] = kept[note_key]  # no default value given: restoring it is allowed
        note = st.text_area("Note (optional)", key=note_key, max_chars=None, height=80)
        kept[note_key] = note
        draft = ReviewDraft(study.modality, calls, labels.tumour, text, note)
        if store_problem:
            st.error(f"Reviews cannot be saved right now: {md(store_problem)}", icon=":material/database:")
        if st.button("Save review", key=f"{key}_save", type="primary"):
            store = _save(draft, image_sha, study, preds, ms.version) or store
    with badge:
        render_reviewed_badge(store, image_sha)


def _more_detail_ui(ms, study, study_key, labels: ReportLabels, context, reports: dict, key: str) -> dict:
    """ "More detail" on one finding: both models' detailed sentence(s) about it, spliced into their
    reports and into the draft. Returns the reports with the detail in."""
    targets = ["tumour"] if study.modality == "CT" and labels.tumour != "none" else list(labels.present)
    if not targets:
        st.caption("More detail: mark a finding present (or a tumour class on CT) to ask for it.")
        return reports
    c1, c2 = st.columns([2, 1])
    target = c1.selectbox(
        "More detail on",
        targets,
        format_func=lambda n: "the tumour" if n == "tumour" else FINDING_LABELS[n],
        key=f"{key}_detail_target",
    )
    asked_key = f"{key}_detail_asked"
    if c2.button("More detail", key=f"{key}_detail_btn"):
        st.session_state[asked_key] = (labels, target)
        st.session_state[f"{key}_detail_pending"] = True
    asked = st.session_state.get(asked_key)
    if asked != (labels, target):
        return reports
    out = dict(reports)
    for m in ROLES:
        try:
            detail = detail_cached(ms, m, study, study_key, labels, target, context)
        except Exception as err:
            st.error(f"{MODEL_TITLES[m]}: no detail ({md_error(err, 'more detail')}).")
            continue
        if not detail.sentences:
            st.caption(f"{MODEL_TITLES[m]}: its detailed report says nothing about this finding.")
            continue
        out[m] = splice_sentences(reports[m], target, detail.sentences, labels)
        st.markdown(f"**{MODEL_TITLES[m]}, detailed:**")
        st.html(report_box_html(" ".join(detail.sentences)))
    pending = st.session_state.pop(f"{key}_detail_pending", False)
    if pending and st.session_state.get(f"{key}_draft_edited"):  # the click: detail into the reviewer's text
        draft_key = f"{key}_draft"
        teacher = detail_cached(ms, "teacher", study, study_key, labels, target, context)
        st.session_state[draft_key] = splice_sentences(
            st.session_state.get(draft_key) or "", target, teacher.sentences, labels
        )
    return out


def _draft_ui(auto: str, key: str) -> str:
    """The report text to save: it follows the teacher's report (rewritten from the labels, with any detail
    asked for) until the reviewer types in it; from then on the reviewer's text stays."""
    draft_key, edited_key = f"{key}_draft", f"{key}_draft_edited"
    # Streamlit drops a widget's state after a run that does not draw it; this plain key keeps the last text
    keep_key = f"{key}_draft_keep"
    if draft_key not in st.session_state and st.session_state.get(keep_key, "").strip():
        st.session_state[draft_key] = st.session_state[keep_key]
    if not st.session_state.get(edited_key) and (auto.strip() or draft_key not in st.session_state):
        st.session_state[draft_key] = auto  # an empty report (none yet on a slow rerun) keeps the last draft

    def _mark_edited() -> None:
        st.session_state[edited_key] = True

    text = st.text_area(
        "Report (accept the teacher's or edit it; your text is what the review keeps)",
        key=draft_key,
        height=160,
        on_change=_mark_edited,
    )
    if text.strip():
        st.session_state[keep_key] = text
    return text


def _save(draft: ReviewDraft, image_sha: str, study: Study, preds: dict, version: int | None):
    """Check and save the draft; the store it saved into (None when nothing was saved)."""
    problem = draft_problem(draft)
    if problem:
        st.error(md(problem), icon=":material/block:")
        return None
    store, store_problem = review_store(create=True)
    if store is None:
        st.error(f"The review was not saved: {md(store_problem)}", icon=":material/database:")
        return None
    try:
        review = build_review(draft, image_sha, preds, version)
        review_id = store.save_review(review, study.pixels)
    except Exception as err:
        st.error(f"The review was not saved: {_store_message(err)}", icon=":material/database:")
        return None
    st.success(
        f"Review saved (id {md(str(review_id)[:12])}). Saving it again changes nothing.",
        icon=":material/check:",
    )
    return store
