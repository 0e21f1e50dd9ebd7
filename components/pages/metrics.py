"""Metrics page: teacher vs KD student vs no-KD student, from ``assets/eval`` (plotly)."""

import streamlit as st

from components.eval_data import (
    data_caption,
    format_scorecard,
    metric,
    model_order,
    protocol_frames,
    result_picker_ui,
    scorecard_frame,
    tradeoff_note,
)
from components.figures import NAMES, fmt, make_bar_figure, make_curve_figure, make_model_bars_figure
from components.layout import render_page_header
from components.limitations import render_counterfactual
from model.types import FINDING_LABELS, FINDINGS, TREATMENT_LABELS, TREATMENTS, TUMOUR_CLASSES

render_page_header(
    "Metrics",
    "What distillation keeps and what it loses, in numbers: every figure here comes from "
    "`meddistill evaluate` (assets/eval/*.json).",
)
result = result_picker_ui("met")
if result is None:
    st.stop()

models = model_order(result)
data = result.get("data") or {}
st.caption(
    f"Result **{result.get('name')}** ({result.get('created', '?')}): {data_caption(data)}. "
    f"Models: {', '.join(NAMES.get(m, m) for m in models)}."
)

st.subheader("Retention scorecard")
st.caption(
    "Each student's value as a percentage of the teacher's. Rows marked *lower* (calibration error, size, "
    "latency) improve below 100 %."
)
st.table(format_scorecard(scorecard_frame(result)))

st.subheader("Per-finding classification (chest X-ray)")
col1, col2 = st.columns(2)
for col, stat, title in (
    (col1, "auroc", "AUROC per finding"),
    (col2, "f1", "F1 per finding (validation threshold)"),
):
    series = {
        m: [
            ((result["models"][m].get("per_finding") or {}).get("findings") or {}).get(f, {}).get(stat)
            for f in FINDINGS
        ]
        for m in models
    }
    col.plotly_chart(
        make_bar_figure([FINDING_LABELS[f] for f in FINDINGS], series, title, stat.upper()),
        key=f"met_pf_{stat}",
    )

st.subheader("ROC and reliability")
heads = {"findings": list(FINDINGS), "tumour": list(TUMOUR_CLASSES), "treatment": list(TREATMENTS)}
labels = {**FINDING_LABELS, **TREATMENT_LABELS}
c1, c2 = st.columns([1, 2])
head = c1.radio("Head", list(heads), horizontal=True, key="met_head")
label = c2.selectbox("Class", heads[head], format_func=lambda x: labels.get(x, x), key="met_label")
col1, col2 = st.columns(2)
roc = {}
for m in models:
    r = ((result["models"][m].get("roc") or {}).get(head) or {}).get(label) or {}
    if r.get("fpr"):
        roc[m] = (r["fpr"], r["tpr"])
if roc:
    col1.plotly_chart(
        make_curve_figure(
            roc, f"ROC: {labels.get(label, label)}", "false-positive rate", "true-positive rate", True
        ),
        key="met_roc",
    )
else:
    col1.info("No ROC curve for this class (one class only in the evaluated cases).")
rel = {}
for m in models:
    bins = ((result["models"][m].get("reliability") or {}).get(head) or {}).get("bins") or []
    pts = [
        (b["confidence"], b["accuracy"]) for b in bins if b.get("count") and b.get("confidence") is not None
    ]
    if pts:
        rel[m] = ([p[0] for p in pts], [p[1] for p in pts])
if rel:
    ece = {m: metric(result, m, f"calibration.{head}_ece") for m in rel}
    rel = {f"{m} · ECE {fmt(ece[m])}" if ece[m] is not None else m: xy for m, xy in rel.items()}
    col2.plotly_chart(
        make_curve_figure(rel, f"Reliability: {head}", "confidence", "accuracy", True),
        key="met_rel",
    )
else:
    col2.info("No reliability bins for this head.")

st.subheader("Length / detail trade-off")
trade = result.get("tradeoff") or {}
curves = trade.get("curves") or {}
TRADE_METRICS = {
    "clinical_f1": "clinical F1 (positive findings)",
    "statement_recall": "statement recall (positives and negations)",
    "positives_complete": "reports with every positive stated",
    "bleu_4": "BLEU-4",
    "clinical_example_f1": "clinical F1 (example-based)",
    "mean_tokens": "mean tokens",
}
present = [k for k in TRADE_METRICS if any(k in cur for per in curves.values() for cur in per.values())]
if curves and present:
    c1, c2 = st.columns([1, 2])
    y_key = c1.radio("Metric", present, format_func=TRADE_METRICS.get, key="met_trade_metric")
    details = c2.multiselect(
        "Detail levels",
        trade.get("details") or [],
        default=trade.get("details") or [],
        key="met_trade_details",
    )
    lines = {}
    for m in models:
        for d in details:
            cur = (curves.get(m) or {}).get(d)
            if cur and y_key in cur:
                lines[f"{m} · {d}"] = (cur["max_new_tokens"], cur[y_key])
    st.plotly_chart(
        make_curve_figure(
            lines, f"{TRADE_METRICS[y_key]} vs maximum length", "max new tokens", TRADE_METRICS[y_key]
        ),
        key="met_tradeoff",
    )
    why = tradeoff_note(trade, models)
    if why:
        st.info(why)
    st.caption(
        f"{fmt(trade.get('n_cases'), 'count')} cases; "
        + ((trade.get("protocol") or {}).get("decoding", "") or "")
    )
else:
    st.info("This result has no length/detail trade-off.")

st.subheader("Latency and size")
col1, col2, col3 = st.columns(3)
for col, key, title, unit in (
    (col1, "efficiency.latency_median_ms", "Median latency (batch 1)", "ms"),
    (col2, "efficiency.parameters", "Parameters", "count"),
    (col3, "efficiency.checkpoint_mb", "Checkpoint size", "MB"),
):
    col.plotly_chart(
        make_model_bars_figure(models, [metric(result, m, key) for m in models], title, unit=unit),
        key=f"met_eff_{key}",
    )

if result.get("real"):
    st.subheader("Real data sets")
    st.caption("The same metrics on the real sets found at evaluation time (percentages of the teacher).")
    for name, section in result["real"].items():
        per_model = section.get("models") or {}
        trained = [NAMES.get(m, m) for m, r in per_model.items() if r.get("trained_on_source")]
        st.markdown(f"**{name}**: {data_caption(section.get('data') or {})}.")
        if trained:
            st.caption(f"Trained on this source (its training split): {', '.join(trained)}.")
        card = scorecard_frame(section)
        if card.empty:
            st.caption("No headline metric for this set.")
        else:
            st.table(format_scorecard(card))
        render_counterfactual(section.get("counterfactual"))

with st.expander("Declared metric protocol"):
    for title, frame in protocol_frames(result.get("protocol") or {}):
        st.markdown(f"**{title}**")
        st.table(frame)
with st.expander("Evaluation config, timing and environment"):
    blocks = {k: result[k] for k in ("config", "timing", "environment") if isinstance(result.get(k), dict)}
    for title, frame in protocol_frames(blocks):
        st.markdown(f"**{title}**")
        st.table(frame)
