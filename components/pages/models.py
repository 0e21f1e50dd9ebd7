"""Models page: one card per served model (architecture, size, training data, metrics, sha256)."""

import json

import streamlit as st

from components.layout import render_model_origin, render_page_header
from components.model_store import MODEL_TITLES, describe_origin, load_model_set
from components.training_log import file_sha256

render_page_header("Model cards", "What each model is, what it was trained on, and how big it is.")
ms = load_model_set()
render_model_origin(ms.origin, describe_origin(ms))

PREFERRED = (
    "arch_name",
    "architecture",
    "encoder",
    "training_data",
    "data",
    "trained_on",
    "metrics",
    "created",
)

for model_id, predictor in ms.predictors.items():
    card = dict(getattr(predictor, "card", {}) or {})
    size = ms.sizes.get(model_id, {})
    with st.container(border=True):
        st.subheader(MODEL_TITLES.get(model_id, model_id))
        c1, c2, c3 = st.columns(3)
        c1.metric("Parameters", f"{size.get('params', 0) / 1e6:.2f} M")
        c2.metric("Checkpoint size", f"{size.get('bytes', 0) / 1e6:.1f} MB")
        c3.metric("Architecture", str(card.get("arch_name") or card.get("architecture") or "?"))
        if card.get("untrained"):
            st.error("Untrained demo weights (random initialisation).")
        trained_on = card.get("training_data") or card.get("data") or card.get("trained_on")
        if trained_on:
            st.markdown(
                f"**Training data:** {trained_on if isinstance(trained_on, str) else json.dumps(trained_on)}"
            )
        st.markdown("**Intended use:** demonstration and teaching only; not for clinical use.")
        files = sorted(ms.dirs[model_id].glob("*.safetensors"))
        for f in files:
            st.markdown(f"`{f.name}` sha256 `{file_sha256(str(f), f.stat().st_mtime_ns)}`")
        with st.expander("Full model card (JSON)"):
            st.json(card, expanded=False)
