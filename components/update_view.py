"""Pieces of the Model updates page: the registry as a table, an update's before/after metrics, the gate's
checks and each reviewed case's report before and after (``components/report_diff.py``).

The ``*_frame`` functions are pure (no Streamlit): they shape ``ModelVersion`` records for display.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components.escaping import md
from components.report_diff import changed, report_diff_html

ROLES = ("teacher", "student")
ROLE_TITLES = {"teacher": "Teacher", "student": "KD student"}
STATUS_ICONS = {
    "current": "🟢 current",
    "candidate": "🟡 candidate",
    "retired": "⚪ retired",
    "rejected": "🔴 rejected",
}
#: (evaluation key, metric key, label) rows of the before/after table, in order
METRIC_ROWS = (
    ("reviews", "head_accuracy", "reviews not trained on: head accuracy"),
    ("reviews", "report_accuracy", "reviews not trained on: report accuracy"),
    ("phantom_test", "ce_f1", "phantom test: clinical-efficacy F1 (micro)"),
    ("phantom_test", "findings_macro_f1", "phantom test: finding-head macro F1"),
    ("phantom_test", "tumour_accuracy", "phantom test: tumour-head accuracy"),
)


def open_store_or_reason():
    """(store, None), or (None, a sentence) when there is no store to read (nothing saved yet, locked...)."""
    from model.review import ReviewStore, StoreError

    try:
        return ReviewStore.open(create=False), None
    except StoreError as e:
        return None, str(e)


def is_update(version) -> bool:
    """True for a version an update produced (it carries the gate's before/after metrics)."""
    return isinstance(version.metrics, dict) and "candidate" in version.metrics


def short_sha(value: str | None) -> str:
    return (value or "")[:12] or "-"


def versions_frame(versions) -> pd.DataFrame:
    """One row per registry version, newest first."""
    rows = []
    for v in sorted(versions, key=lambda v: -v.version):
        ids = list(v.feedback_ids)
        rows.append(
            {
                "Version": f"v{v.version}",
                "Status": STATUS_ICONS.get(v.status, v.status),
                "Parent": f"v{v.parent}" if v.parent is not None else "-",
                "Created (UTC)": v.created_at.replace("T", " ")[:19],
                "Learned from": f"{len(ids)} reviewed case(s)" if ids else "-",
                "Review ids": ", ".join(i[:8] for i in ids[:4])
                + (f" +{len(ids) - 4}" if len(ids) > 4 else ""),
                "Teacher sha256": short_sha(v.sha256.get("teacher")),
                "Student sha256": short_sha(v.sha256.get("student")),
                "Note": v.note,
            }
        )
    return pd.DataFrame(rows)


def metrics_frame(version) -> pd.DataFrame:
    """Before (the parent) and after (this version) for each model and metric the gate measured."""
    m = version.metrics
    before_col, after_col = f"v{version.parent} (before)", f"v{version.version} (after)"
    rows = []
    for role in ROLES:
        cur, cand = (m.get("current") or {}).get(role) or {}, (m.get("candidate") or {}).get(role) or {}
        pairs = [
            (label, (cur.get(ev) or {}).get(k), (cand.get(ev) or {}).get(k)) for ev, k, label in METRIC_ROWS
        ]
        for name in sorted(set(cur.get("real") or {}) | set(cand.get("real") or {})):
            pairs.append(
                (
                    f"real set {name}: head accuracy",
                    ((cur.get("real") or {}).get(name) or {}).get("head_accuracy"),
                    ((cand.get("real") or {}).get(name) or {}).get("head_accuracy"),
                )
            )
        for label, a, b in pairs:
            if a is None and b is None:
                continue
            rows.append(
                {
                    "Model": ROLE_TITLES[role],
                    "Metric": label,
                    before_col: a,
                    after_col: b,
                    "Change (points)": 100 * (b - a)
                    if isinstance(a, float | int) and isinstance(b, float | int)
                    else None,
                }
            )
    return pd.DataFrame(rows)


def version_label(v) -> str:
    n = len(v.feedback_ids)
    return f"v{v.version} ({v.status}) from v{v.parent}, learned from {n} reviewed case(s)"


# ----------------------------------------------------------------------------------------------
# Rendering


def render_gate(version) -> None:
    """The gate's verdict and every check, with its numbers."""
    m = version.metrics
    if m.get("passed"):
        st.success(f"Promoted: every gate check passed ({md(m.get('reviews_mode', ''))}).")
    else:
        st.error(f"Not promoted: {md(version.note or 'the gate failed')}")
    for check in m.get("checks") or []:
        st.markdown(("✅ " if check.get("passed") else "❌ ") + md(check.get("sentence", "")))


def render_case_reports(store, version, only_changed: bool, limit: int) -> None:
    """For each reviewed case of the update: its labels, then each model's report before and after."""
    reports = version.metrics.get("reports") or {}
    trained = set(version.feedback_ids)
    shown = 0
    for rid, per_role in reports.items():
        if only_changed and not any(
            changed(r.get("before", ""), r.get("after", "")) for r in per_role.values()
        ):
            continue
        if shown >= limit:
            st.caption(f"{len(reports) - shown} more case(s) not shown: raise the limit above.")
            break
        shown += 1
        review = store.get(rid)
        with st.container(border=True):
            role_of_case = "trained on" if rid in trained else "held out: checked, never trained on"
            head = f"**Case {md(rid[:8])}** · {role_of_case}"
            if review is not None:
                labels = ", ".join(review.present_findings()) or "no finding"
                if review.modality == "CT":
                    labels = f"tumour: {review.tumour or 'not set'}"
                head += f" · {review.modality} · reviewer: {md(labels)}"
            st.markdown(head)
            if review is not None and review.report_text.strip():
                st.caption("Reviewer's report: " + md(review.report_text))
            for role in ROLES:
                r = per_role.get(role)
                if not r:
                    continue
                tag = "changed" if changed(r.get("before", ""), r.get("after", "")) else "unchanged"
                st.markdown(f"{ROLE_TITLES[role]} (v{version.parent} → v{version.version}, {tag}):")
                st.html(report_diff_html(r.get("before", ""), r.get("after", "")))
    if shown == 0:
        st.info("No reviewed case's report changed in this update." if only_changed else "No reviewed cases.")
