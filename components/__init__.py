"""Streamlit UI pieces. They render; model math stays in model/."""
