"""MedDistill Studio: Streamlit entry point (page config + navigation + the disclaimer).

Run: streamlit run app.py --server.headless true --server.fileWatcherType none
"""

import streamlit as st

from components.layout import render_disclaimer

st.set_page_config(page_title="MedDistill Studio", page_icon=":material/radiology:", layout="wide")

PAGES = [
    st.Page("components/pages/compare.py", title="Compare", icon=":material/compare:", default=True),
    st.Page("components/pages/metrics.py", title="Metrics", icon=":material/monitoring:", url_path="metrics"),
    st.Page(
        "components/pages/errors.py",
        title="Error analysis",
        icon=":material/search_insights:",
        url_path="errors",
    ),
    st.Page(
        "components/pages/distillation.py",
        title="Distillation explained",
        icon=":material/school:",
        url_path="distillation",
    ),
    st.Page("components/pages/models.py", title="Models", icon=":material/badge:", url_path="models"),
]

page = st.navigation(PAGES)
render_disclaimer()
page.run()
