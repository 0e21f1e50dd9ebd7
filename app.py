"""MedDistill Studio: Streamlit entry point (page config + navigation + the disclaimer).

Run: streamlit run app.py   (settings in .streamlit/config.toml: offline, 64 MB uploads, no file watcher)

Icons are emoji, never ``:material/...:``: a Material page icon makes the browser fetch the favicon from
fonts.gstatic.com, and the app must work with no network.
"""

import streamlit as st

from components.layout import render_disclaimer, render_page_style
from model.serving import new_request, start_prewarm

st.set_page_config(page_title="MedDistill Studio", page_icon="🩻", layout="wide")

PAGES = [
    st.Page("components/pages/compare.py", title="Compare", icon="⚖️", default=True),
    st.Page("components/pages/metrics.py", title="Metrics", icon="📊", url_path="metrics"),
    st.Page(
        "components/pages/errors.py",
        title="Error analysis",
        icon="🔍",
        url_path="errors",
    ),
    st.Page(
        "components/pages/distillation.py",
        title="Distillation explained",
        icon="🎓",
        url_path="distillation",
    ),
    st.Page("components/pages/models.py", title="Models", icon="🧾", url_path="models"),
    st.Page("components/pages/updates.py", title="Model updates", icon="🔁", url_path="updates"),
]

new_request()  # this run's model calls are served in arrival order of runs (model/serving.py)
page = st.navigation(PAGES)
render_page_style()
render_disclaimer()
start_prewarm()  # torch and the networks import on a background thread from the first paint on
page.run()
