"""Page chrome shared by every page: title, disclaimer, model-origin banner."""

from __future__ import annotations

import streamlit as st

from model.types import DISCLAIMER

#: No animations or transitions, except a spinner's: while a page reruns, Streamlit fades every element and
#: animates its status icon, and with software rendering (most servers' and many laptops' browsers, and the
#: load benchmark's 8 headless Chromium sessions on the server's 2 cores) each frame is a repaint. Measured
#: with 8 sessions uploading at once (benchmarks/bench_load.py): the browsers' CPU 10.9 -> 7.7 s, every
#: session's page complete 8.1 -> 6.1 s. Slow work still shows its steps (components/progress.py).
PAGE_STYLE = (
    "<style>"
    ":not([data-testid='stSpinner'] *), :not([data-testid='stSpinner'] *)::before, "
    ":not([data-testid='stSpinner'] *)::after { animation: none !important; transition: none !important; }"
    "</style>"
)


def render_page_style() -> None:
    """The app-wide style (``PAGE_STYLE``); an invisible element."""
    st.html(PAGE_STYLE)


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
