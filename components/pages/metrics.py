"""Metrics page: teacher vs KD student vs no-KD student, from ``assets/eval`` (plotly)."""

import streamlit as st

from components.eval_data import metric, model_order, result_picker_ui, scorecard_frame
from components.figures import NAMES, make_bar_figure, make_curve_figure, make_model_bars_figure
from components.layout import render_page_header
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
    f"Result **{result.get('name')}** ({result.get('created', '?')}): {data.get('n_cases', '?')} cases "
    f"({data.get('n_cxr', '?')} CXR, {data.get('n_ct', '?')} CT) from {', '.join(data.get('sources') or [])}, "
    f"split `{data.get('split', '?')}`. Models: {', '.join(NAMES.get(m, m) for m in models)}."
)

st.subheader("Retention scorecard")
st.caption("Each student's value divided by the teacher's, next to size and speed ratios.")
card = scorecard_frame(result)
st.table(
    card.map(
        lambda v: (
            f"{v:,.4g}" if isinstance(v, (int, float)) and v == v else ("–" if v is None or v != v else v)
        )
    )
)

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
    ece = ", ".join(f"{NAMES.get(m, m)} {metric(result, m, f'calibration.{head}_ece') or 0:.3f}" for m in rel)
    col2.plotly_chart(
        make_curve_figure(rel, f"Reliability ({head}); ECE: {ece}", "confidence", "accuracy", True),
        key="met_rel",
    )

st.subheader("Length / detail trade-off")
trade = result.get("tradeoff") or {}
curves = trade.get("curves") or {}
if curves:
    c1, c2 = st.columns([1, 2])
    y_key = c1.radio("Metric", ["clinical_f1", "bleu_4", "clinical_example_f1"], key="met_trade_metric")
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
        make_curve_figure(lines, f"{y_key} vs maximum length", "max new tokens", y_key), key="met_tradeoff"
    )
    st.caption((trade.get("protocol") or {}).get("decoding", ""))
else:
    st.info("This result has no length/detail trade-off.")

st.subheader("Latency and size")
col1, col2, col3 = st.columns(3)
for col, key, title in (
    (col1, "efficiency.latency_median_ms", "Median latency (ms, batch 1)"),
    (col2, "efficiency.parameters", "Parameters"),
    (col3, "efficiency.checkpoint_mb", "Checkpoint (MB)"),
):
    col.plotly_chart(
        make_model_bars_figure(models, [metric(result, m, key) for m in models], title), key=f"met_eff_{key}"
    )

if result.get("real"):
    st.subheader("Real data sets")
    for name, section in result["real"].items():
        st.markdown(f"**{name}**")
        st.json(section, expanded=False)

with st.expander("Declared metric protocol"):
    st.json(result.get("protocol") or {}, expanded=True)
with st.expander("Evaluation config and environment"):
    st.json(
        {
            "config": result.get("config"),
            "environment": result.get("environment"),
            "timing": result.get("timing"),
        },
        expanded=False,
    )
