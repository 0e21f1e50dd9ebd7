"""Drawing one model's prediction (and the ground truth beside it). ``render_*`` functions return None."""

from __future__ import annotations

import html

import numpy as np
import streamlit as st

from model.types import FINDING_LABELS, FINDINGS, TREATMENT_LABELS, TUMOUR_CLASSES, CaseTruth, Prediction

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


def render_report(pred: Prediction, divergence=None, threshold: float = 0.15, source: str = "") -> None:
    st.markdown("**Report**")
    st.html(report_html(pred.tokens, divergence, threshold, source))
    with st.expander("Report as plain text"):
        st.text(pred.report)


def render_findings(pred: Prediction, truth: CaseTruth | None = None) -> None:
    present = set() if truth is None else {f.name for f in truth.findings}
    st.markdown("**Findings** (probability)")
    for name in FINDINGS:
        p = float(pred.findings.get(name, 0.0))
        mark = ""
        if truth is not None and truth.modality == "CXR":
            mark = " · truth: present" if name in present else " · truth: absent"
        st.progress(min(max(p, 0.0), 1.0), text=f"{FINDING_LABELS[name]}: {p:.2f}{mark}")


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


def render_treatments(pred: Prediction, top: int = 3) -> None:
    """The most probable formulary items; the rulebook's reasons sit in an expander."""
    st.markdown("**Treatment suggestions** (educational formulary, not advice)")
    shown = pred.treatments[:top]
    st.markdown("\n".join(f"- {TREATMENT_LABELS.get(t.name, t.name)}: {t.probability:.2f}" for t in shown))
    with st.expander("Why (rulebook reasons)"):
        for t in shown:
            st.markdown(f"**{TREATMENT_LABELS.get(t.name, t.name)}**: {t.reason}")


def render_latency(pred: Prediction, size: dict | None = None) -> None:
    lat = pred.latency_ms
    parts = [f"{k} {v:.0f} ms" for k, v in lat.items() if k != "total"]
    text = f":material/timer: {lat.get('total', sum(lat.values())):.0f} ms ({', '.join(parts)})"
    if size:
        text += f" · :material/memory: {size['params'] / 1e6:.2f} M params, {size['bytes'] / 1e6:.1f} MB"
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


def render_ood_warning(preds: dict[str, Prediction]) -> None:
    flagged = [m for m, p in preds.items() if p.ood_flag]
    if flagged:
        scores = ", ".join(f"{m} {preds[m].ood_score:.1f}" for m in flagged)
        st.warning(
            "**Out of distribution:** this image is unlike the training data "
            f"(OOD score {scores}). Treat every output below with extra suspicion.",
            icon=":material/report:",
        )


def divergence_summary(divergence) -> str:
    if divergence is None or len(divergence.divergence) == 0:
        return ""
    d = np.asarray(divergence.divergence)
    return (
        f"mean JS divergence {d.mean():.2f} bits, max {d.max():.2f} at '{divergence.tokens[int(d.argmax())]}'"
    )
