"""Page chrome shared by every page: title, disclaimer, model-origin banner."""

from __future__ import annotations

import streamlit as st

from model.types import DISCLAIMER


def render_disclaimer() -> None:
    """The not-for-clinical-use notice; app.py draws it on every page."""
    st.warning(DISCLAIMER, icon=":material/warning:")


def render_page_header(title: str, caption: str = "") -> None:
    st.title(title)
    if caption:
        st.caption(caption)


def render_model_origin(origin: str, detail: str) -> None:
    """Say plainly which weights are loaded (trained, from an env dir, or untrained demo weights)."""
    if origin == "demo":
        st.error(
            "**Untrained demo weights.** No trained checkpoints were found in assets/checkpoints, so the "
            "app built tiny random-weight models on the fly: reports and heat maps are noise. " + detail,
            icon=":material/science:",
        )
    else:
        st.caption(detail)
