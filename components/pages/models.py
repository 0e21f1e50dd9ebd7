"""Models page: one card per served model (architecture, size, training data, metrics, sha256)."""

import streamlit as st

from components.eval_data import list_results, load_result, metric
from components.figures import fmt
from components.layout import render_model_origin, render_page_header
from components.limitations import render_known_limitations
from components.model_store import (
    MODEL_TITLES,
    SIZE_HELP,
    describe_origin,
    load_model_set,
    size_mb_text,
    training_data_summary,
    version_text,
)
from components.training_log import file_sha256
from model.evaluate.summary import HEADLINE

render_page_header("Model cards", "What each model is, what it was trained on, and how big it is.")
ms = load_model_set()
render_model_origin(ms.origin, describe_origin(ms))


def _latest_eval() -> dict | None:
    results = list_results()
    return load_result(next(iter(results.values()))) if results else None


result = _latest_eval()

for model_id, predictor in ms.predictors.items():
    card = dict(getattr(predictor, "card", {}) or {})
    size = ms.sizes.get(model_id, {})
    training = card.get("training") or {}
    with st.container(border=True):
        st.subheader(MODEL_TITLES.get(model_id, model_id))
        c1, c2, c3 = st.columns(3)
        c1.metric("Parameters", f"{size.get('params', 0) / 1e6:.2f} M")
        c2.metric("Checkpoint size", size_mb_text(size), help=SIZE_HELP)
        c3.metric("Preset", str(card.get("arch_name") or card.get("arch") or "?"))
        st.markdown(f"**Serving:** {version_text(ms)}")
        if card.get("untrained"):
            st.error("Untrained demo weights (random initialisation).")
        if card.get("architecture"):
            st.markdown(f"**Architecture:** {card['architecture']}")
        st.markdown(f"**Trained on:** {training_data_summary(card)}")
        if training.get("fair_comparison"):
            st.markdown(f"**Fair comparison:** {training['fair_comparison']}")
        if training.get("command"):
            st.markdown(f"**Command:** `{training['command']}`")
        st.markdown("**Intended use:** demonstration and teaching only; not for clinical use.")
        render_known_limitations(card)
        val = (card.get("metrics") or {}).get("validation")
        if val:
            st.markdown(
                "**Validation metrics (from training):** "
                + ", ".join(
                    f"{k.removeprefix('val_')} {fmt(v)}" for k, v in val.items() if isinstance(v, (int, float))
                )
            )
        if result and model_id in result.get("models", {}):
            row = {h.label: metric(result, model_id, h.key) for h in HEADLINE}
            shown = {k: v for k, v in row.items() if isinstance(v, (int, float))}
            if shown:
                st.markdown(
                    f"**Evaluation** ({result.get('name')}): "
                    + ", ".join(f"{k} {fmt(v)}" for k, v in shown.items())
                )
        for f in sorted(ms.dirs[model_id].glob("*.safetensors")):
            st.markdown(f"`{f.name}` sha256 `{file_sha256(str(f), f.stat().st_mtime_ns)}`")
        with st.expander("Full model card (JSON)"):
            st.json(card, expanded=False)
