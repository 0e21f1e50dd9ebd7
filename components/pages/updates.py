"""Model updates page: the registry's versions, what an update changed (metrics before/after, the gate's
checks) and each reviewed case's report before and after, the change highlighted (issue 14)."""

import streamlit as st

from components.escaping import md
from components.layout import render_page_header
from components.update_view import (
    is_update,
    metrics_frame,
    open_store_or_reason,
    render_case_reports,
    render_gate,
    version_label,
    versions_frame,
)

render_page_header(
    "Model updates",
    "How the models learn from expert review: `meddistill update` fine-tunes the teacher on reviewed cases "
    "(with replay of its training data), re-distils the student, and promotes the new version only when it "
    "is no worse on reviews it never trained on, the phantom test split and the real sets.",
)

store, reason = open_store_or_reason()
if store is None:
    st.info(
        f"No review store yet: review cases on the Compare page, then run `meddistill update`. ({md(reason)})"
    )
    st.stop()

versions = store.versions()
st.subheader("Versions")
st.dataframe(versions_frame(versions), hide_index=True, use_container_width=True)
current = next((v for v in versions if v.status == "current"), None)
if current is not None:
    st.caption(f"The app serves version {current.version}. Roll back with `meddistill models rollback`.")

updates = [v for v in sorted(versions, key=lambda v: -v.version) if is_update(v)]
if not updates:
    st.info(
        f"No update has run yet ({store.count()} reviewed case(s) in the store): run `meddistill update`."
    )
    st.stop()

version = st.selectbox("Update", updates, format_func=version_label, key="upd_version")

st.subheader("Before and after")
st.dataframe(
    metrics_frame(version),
    hide_index=True,
    use_container_width=True,
    column_config={"Change (points)": st.column_config.NumberColumn(format="%+.1f")},
)
st.caption(f"Reviewed cases in the gate: {md(version.metrics.get('reviews_mode', '-'))}.")
render_gate(version)

st.subheader("Reviewed cases: the report before and after")
c1, c2 = st.columns(2)
only_changed = c1.toggle("Only cases whose report changed", value=False, key="upd_only_changed")
limit = c2.number_input("Cases shown", min_value=1, max_value=500, value=20, step=10, key="upd_limit")
render_case_reports(store, version, only_changed, int(limit))
