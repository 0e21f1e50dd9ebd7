"""Drawing one model's prediction (and the ground truth beside it). ``render_*`` functions return None."""

from __future__ import annotations

import html

import numpy as np
import streamlit as st

from components.escaping import md
from components.model_store import size_mb_text
from model.types import (
    FINDING_LABELS,
    FINDINGS,
    TREATMENT_LABELS,
    TREATMENT_THRESHOLD,
    TUMOUR_CLASSES,
    CaseTruth,
    GuardVerdict,
    Prediction,
    split_treatments,
)

PUNCT = {".", ",", ";", ":", "!", "?", ")"}


def _join_tokens(tokens: list[str]) -> list[tuple[str, str]]:
    """(separator, token) pairs so punctuation hugs the previous word."""
    out, prev = [], None
    for tok in tokens:
        sep = "" if prev is None or tok in PUNCT or prev == "(" else " "
        out.append((sep, tok))
        prev = tok
    return out


def report_html(tokens: list[str], divergence=None, threshold: float = 0.15, source: str = "") -> str:
    """The report as HTML, words shaded by teacher-student JS divergence (darker = departs more)."""
    if not tokens:
        return "<em>(empty report)</em>"
    parts = []
    for i, (sep, tok) in enumerate(_join_tokens(tokens)):
        text = html.escape(tok)
        if divergence is not None and i < len(divergence.divergence):
            d = float(divergence.divergence[i])
            tip = html.escape(
                f"JS divergence {d:.2f} bits · teacher p={divergence.teacher_prob[i]:.2f} "
                f"(top '{divergence.teacher_top[i]}') · student p={divergence.student_prob[i]:.2f} "
                f"(top '{divergence.student_top[i]}')",
                quote=True,
            )
            if d >= threshold:
                alpha = min(0.85, 0.2 + d)
                text = (
                    f'<span class="md-div" title="{tip}" style="background: rgba(255,140,0,{alpha:.2f}); '
                    f'border-radius: 3px; padding: 0 2px;">{text}</span>'
                )
            else:
                text = f'<span title="{tip}">{text}</span>'
        parts.append(sep + text)
    body = "".join(parts)
    marked = "1" if divergence is not None else "0"
    return (
        f'<div class="md-report" data-source="{html.escape(source, quote=True)}" data-divergence="{marked}" '
        f'style="line-height: 1.7; font-size: 1.02rem;">{body}</div>'
    )


def shortened_note(pred: Prediction) -> str:
    """The line under a report the token cap cut ("" when the report ended by itself)."""
    if not pred.truncated:
        return ""
    n = pred.token_limit or len(pred.tokens)
    if pred.tokens and pred.tokens[-1] == ".":
        return (
            f"(shortened to {n} tokens: the unfinished last sentence was dropped; raise "
            "*Maximum length* in the sidebar to read the rest)"
        )
    return f"(shortened to {n} tokens: not one full sentence fits; raise *Maximum length* in the sidebar)"


def location_note(pred: Prediction) -> str:
    """The caption under a report whose side and zone words come from the model's lesion map."""
    note = (":material/my_location: Side and zone are read from the model's lesion map; "
            "where the map cannot tell, the report names none.")  # fmt: skip
    n = len(pred.location_edits)
    return note + (f" {n} location phrase{'s' if n != 1 else ''} changed." if n else "")


def render_report(pred: Prediction, divergence=None, threshold: float = 0.15, source: str = "") -> None:
    st.markdown("**Report**")
    st.html(report_html(pred.tokens, divergence, threshold, source))
    if pred.truncated:
        st.caption(shortened_note(pred))
    if pred.location_grounded:
        st.caption(location_note(pred))
    with st.expander("Report as plain text"):
        st.text(pred.report)


def findings_html(pred: Prediction, truth: CaseTruth | None = None) -> str:
    """Every finding's probability as a labelled bar, in one HTML block (escaped text only): one element
    instead of seven progress bars per model, so the browser redraws less on every upload."""
    present = set() if truth is None else {f.name for f in truth.findings}
    rows = []
    for name in FINDINGS:
        p = min(max(float(pred.findings.get(name, 0.0)), 0.0), 1.0)
        mark = ""
        if truth is not None and truth.modality == "CXR":
            mark = " · truth: present" if name in present else " · truth: absent"
        label = html.escape(f"{FINDING_LABELS[name]}: {p:.2f}{mark}")
        rows.append(
            f'<div class="md-finding" style="margin:0 0 .55rem 0;font-size:.875rem;">{label}'
            f'<div role="meter" aria-valuemin="0" aria-valuemax="1" aria-valuenow="{p:.2f}" '
            f'aria-label="{label}" style="height:.4rem;border-radius:.2rem;background:rgba(151,166,195,.25);'
            f'margin-top:.2rem;"><div style="width:{100 * p:.1f}%;height:100%;border-radius:.2rem;'
            f'background:#1c83e1;"></div></div></div>'
        )
    return '<div class="md-findings">' + "".join(rows) + "</div>"


def render_findings(pred: Prediction, truth: CaseTruth | None = None) -> None:
    st.markdown("**Findings** (probability)")
    st.html(findings_html(pred, truth))


def render_tumour(pred: Prediction, truth: CaseTruth | None = None) -> None:
    best = max(pred.tumour, key=pred.tumour.get) if pred.tumour else "none"
    probs = " · ".join(f"{c} {pred.tumour.get(c, 0.0):.2f}" for c in TUMOUR_CLASSES)
    line = f"**Tumour class:** {best} ({probs})"
    if pred.tumour_subtype and best == "malignant":
        sub = max(pred.tumour_subtype, key=pred.tumour_subtype.get)
        line += f"; subtype {sub.replace('_', ' ')} {pred.tumour_subtype[sub]:.2f}"
    if truth is not None and truth.tumour is not None:
        line += f" — truth: **{truth.tumour}**"
    st.markdown(line)


def render_treatments(pred: Prediction) -> None:
    """Suggestions the rulebook supports for this model's findings at p >= TREATMENT_THRESHOLD, each with
    its reason; every other formulary item sits in an "Other suggestions" expander with its reason."""
    st.markdown("**Treatment suggestions** (educational formulary, not advice)")
    shown, others = split_treatments(pred.treatments)
    if shown:
        st.markdown(
            "\n".join(
                f"- **{TREATMENT_LABELS.get(t.name, t.name)}** ({t.probability:.2f})  \n"
                f"  <small>{html.escape(t.reason)}</small>"
                for t in shown
            ),
            unsafe_allow_html=True,
        )
    else:
        st.markdown(
            f"No suggestion: no formulary item is both at p ≥ {TREATMENT_THRESHOLD:.2f} and supported by "
            "the rulebook for this model's findings."
        )
    with st.expander(f"Other suggestions ({len(others)}): below {TREATMENT_THRESHOLD:.2f} or not supported"):
        if others:  # one element for the list: less for the browser to redraw on every upload
            st.markdown(
                "\n".join(
                    f"- {TREATMENT_LABELS.get(t.name, t.name)} ({t.probability:.2f})  \n"
                    f"  <small>{html.escape(t.reason)}</small>"
                    for t in others
                ),
                unsafe_allow_html=True,
            )


def describe_conflicts(conflicts) -> str:
    """"denied:NAME" / "asserted:NAME" as words: "denies pleural effusion, states the benign tumour"."""
    words = {"denied": "denies", "asserted": "states"}
    parts = []
    for c in conflicts:
        kind, _, name = c.partition(":")
        label = FINDING_LABELS.get(name, name.replace("tumour_", "a ").replace("_", " ") + " tumour")
        parts.append(f"{words.get(kind, kind)} {label.lower()}")
    return ", ".join(parts)


def render_report_edits(pred: Prediction) -> None:
    """What making the report follow the model's own heads changed (model/follow_labels.py), and any
    contradiction that remains (the decoder wrote no sentence for a finding its head calls)."""
    if pred.report_edits:
        st.caption(f":material/rule: Made to follow its own findings: {md(pred.report_edits)}.")
    if pred.report_conflicts:
        said = describe_conflicts(pred.report_conflicts)
        st.caption(f":material/warning: The report still {md(said)} against its own findings head.")


def render_latency(pred: Prediction, size: dict | None = None) -> None:
    lat = pred.latency_ms
    parts = [f"{k} {v:.0f} ms" for k, v in lat.items() if k != "total"]
    text = f":material/timer: {lat.get('total', sum(lat.values())):.0f} ms ({', '.join(parts)})"
    if size:
        text += f" · :material/memory: {size['params'] / 1e6:.2f} M params, {size_mb_text(size)} checkpoint"
    st.caption(text)


def render_ground_truth(
    truth: CaseTruth, reports: dict[str, str] | None, treatments: list[dict] | None, detail: str
) -> None:
    st.markdown("**Report**")
    text = (reports or {}).get(detail) or next(iter((reports or {}).values()), None)
    st.info(text or "(no ground-truth report)")
    if truth.modality == "CXR":
        st.markdown("**Findings**")
        if not truth.findings:
            st.markdown("- none (normal study)")
        for f in truth.findings:
            attrs = ", ".join(f"{k}: {v}" for k, v in f.to_dict().items() if k != "name")
            st.markdown(f"- {FINDING_LABELS.get(f.name, f.name)}" + (f" ({attrs})" if attrs else ""))
    if truth.tumour is not None:
        sub = f" ({truth.tumour_subtype.replace('_', ' ')})" if truth.tumour_subtype else ""
        st.markdown(f"**Tumour class:** {truth.tumour}{sub}")
    if treatments:
        st.markdown("**Rulebook treatments**")
        for t in treatments:
            st.markdown(
                f"- {TREATMENT_LABELS.get(t['name'], t['name'])}  \n  <small>{html.escape(t.get('reason', ''))}</small>",
                unsafe_allow_html=True,
            )


#: the one label of the escape hatch on a refused image (page); the CLI's is --force
ANYWAY_LABEL = (
    "Show the models' output anyway (the input guard refused this image: outputs are not meaningful for it)"
)
CHECK_TITLES = {
    "modality": "not a chest X-ray or chest CT slice",
    "modality_mismatch": "DICOM header and pixels disagree",
}


def _check_title(check: str) -> str:
    if check.startswith("ood:"):
        return f"{check[4:]} out-of-distribution score"
    return CHECK_TITLES.get(check, check)


def show_anyway_ui(key: str) -> bool:
    """The explicit, clearly labelled choice to see the models' output on a refused image."""
    return st.checkbox(ANYWAY_LABEL, value=False, key=key)


def render_guard_verdict(verdict: GuardVerdict | None) -> None:
    """The input guard's sentence for a study: a caption when accepted, an error box when refused."""
    if verdict is None:
        return
    if verdict.accepted:
        if verdict.reason:
            st.caption(f":material/verified_user: {md(verdict.reason)}")
        return
    st.error(
        f"**Input guard: no report for this image** ({_check_title(verdict.check)}; score {verdict.score:.2f}, "
        f"threshold {verdict.threshold:.2f}). {md(verdict.reason)}",
        icon=":material/gpp_bad:",
    )


def render_withheld(pred: Prediction) -> None:
    """What a model column shows instead of its output when the guard withheld it."""
    st.info(
        f"**Report withheld.** {md(pred.verdict.reason if pred.verdict else '')}", icon=":material/block:"
    )


def render_ood_warning(preds: dict[str, Prediction]) -> None:
    """One line per model whose own OOD check fired (the guard's sentence when the verdict is attached)."""
    for m, p in preds.items():
        v = p.verdict
        if v is not None and not v.accepted and v.check.startswith("ood:"):
            st.warning(f"**Out of distribution ({md(m)}):** {md(v.reason)}", icon=":material/report:")
        elif p.ood_flag:  # an uncalibrated (Mahalanobis) flag: a warning, not a refusal
            st.warning(
                f"**Out of distribution ({md(m)}):** this image is unlike the training data (OOD score "
                f"{p.ood_score:.1f}). Treat every output below with extra suspicion.",
                icon=":material/report:",
            )


def divergence_summary(divergence) -> str:
    if divergence is None or len(divergence.divergence) == 0:
        return ""
    d = np.asarray(divergence.divergence)
    return (
        f"mean JS divergence {d.mean():.2f} bits, max {d.max():.2f} at '{divergence.tokens[int(d.argmax())]}'"
    )
