"""Error analysis page (placeholder until the evaluation schema lands)."""

import streamlit as st

from components.layout import render_page_header

render_page_header("Error analysis", "Browse evaluation cases where the models disagree or fail.")
st.info("No evaluation results yet: run `meddistill evaluate`.")
