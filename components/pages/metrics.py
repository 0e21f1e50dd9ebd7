"""Metrics page (placeholder until the evaluation schema lands)."""

import streamlit as st

from components.layout import render_page_header

render_page_header("Metrics", "Teacher vs KD student vs no-KD student, from assets/eval.")
st.info("No evaluation results yet: run `meddistill evaluate`.")
