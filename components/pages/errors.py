"""Error analysis: browse evaluation cases, filter and sort them, open one in Compare, export a teaching set."""

import io

import streamlit as st

from components.eval_data import (
    case_study,
    cases_frame,
    filter_cases,
    model_order,
    result_picker_ui,
    teaching_set_zip,
)
from components.figures import NAMES
from components.layout import render_page_header
from components.samples import Sample
from components.study_view import open_in_compare
from model.data.generate import read_masks
from model.types import FINDING_LABELS, FINDINGS

MAX_ZIP_CASES = 500  # a bigger teaching set is a data set: use `meddistill generate-data`

render_page_header(
    "Error analysis",
    "Every evaluated case with what each model said. Filter by finding, error type and teacher-student "
    "disagreement, sort by the gap between them, open a case in Compare, export a teaching set.",
)
result = result_picker_ui("err")
if result is None:
    st.stop()
models = model_order(result)
df = cases_frame(result)
if df.empty:
    st.info("This result has no per-case records.")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
modality = c1.selectbox("Modality", ["all", "CXR", "CT"], key="err_modality")
finding = c2.selectbox(
    "Finding", ["any", *FINDINGS], format_func=lambda f: FINDING_LABELS.get(f, f), key="err_finding"
)
error_model = c3.selectbox("Errors of", models, format_func=lambda m: NAMES.get(m, m), key="err_model")
error_type = c4.selectbox(
    "Error type", ["any", "false negative", "false positive", "wrong tumour class", "correct"], key="err_type"
)
c1, c2, c3 = st.columns(3)
disagree_only = c1.toggle("Teacher and student disagree", value=False, key="err_disagree")
min_mismatch = c2.slider(
    "Report word mismatch at least", 0.0, 1.0, 0.0, 0.05, key="err_min_div",
    help="1 - Jaccard overlap of the teacher's and the student's report words (0 = same words)",
)
sort_options = [c for c in ("gap", "word_mismatch", "id") if c in df]
sort_by = c3.selectbox(
    "Sort by", sort_options, key="err_sort", help="gap = largest |teacher - student| probability"
)

view = filter_cases(
    df,
    models,
    finding=None if finding == "any" else finding,
    modality=None if modality == "all" else modality,
    error_model=error_model,
    error_type=error_type,
    disagree_only=disagree_only,
    min_mismatch=min_mismatch,
)
view = view.sort_values(sort_by, ascending=sort_by == "id", na_position="last").reset_index(drop=True)
st.caption(f"{len(view)} of {len(df)} cases. Select rows to inspect or export them.")
event = st.dataframe(
    view,
    key="err_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    width="stretch",
    height=320,
    column_config={
        "gap": st.column_config.ProgressColumn("gap", min_value=0.0, max_value=1.0, format="%.2f"),
        "word_mismatch": st.column_config.ProgressColumn(
            "word mismatch", min_value=0.0, max_value=1.0, format="%.2f"
        ),
    },
)
rows = list(event.selection.rows) if event and event.selection else []
chosen = view.iloc[rows] if rows else view

c1, c2, _ = st.columns([1, 1, 2])
c1.download_button(
    f"Export CSV ({len(chosen)} cases)",
    chosen.to_csv(index=False).encode(),
    file_name=f"{result.get('name', 'eval')}_cases.csv",
    mime="text/csv",
    key="err_csv",
)
c2.download_button(
    f"Export teaching set (.zip, {len(chosen)} cases)",
    (lambda cases=chosen: teaching_set_zip(result, cases)),  # built on click (images may be rebuilt)
    file_name=f"{result.get('name', 'eval')}_teaching_set.zip",
    mime="application/zip",
    key="err_zip",
    disabled=len(chosen) > MAX_ZIP_CASES,
    help=f"cases.csv + per-case JSON (reference and every model's report) + images and masks "
    f"(rebuilt from the phantom's seed when the data folder is absent); at most {MAX_ZIP_CASES} cases",
)

if not rows:
    st.info("Select a row to see the case.")
    st.stop()

case_id = view.iloc[rows[0]]["id"]
case = next(c for c in result["cases"] if c["id"] == case_id)
st.subheader(f"Case {case_id} ({case.get('modality')}, {case.get('source')})")
found = case_study(result, case)
left, right = st.columns([1, 2])
with left:
    if isinstance(found, str):
        st.warning(found)
    else:
        st.image(found.png, caption=f"{case_id}: {found.origin}", width=320, output_format="PNG")
        if st.button("Open in Compare", key="err_open", type="primary"):
            masks = read_masks(io.BytesIO(found.mask_png), case.get("modality")) if found.mask_png else None
            open_in_compare(
                Sample(
                    id=case_id,
                    title=f"{case_id} (evaluation case)",
                    data=found.png,
                    name=f"{case_id}.png",
                    truth=found.truth,
                    reports=found.reports,
                    treatments=found.treatments,
                    masks=masks,
                    modality=case.get("modality"),
                )
            )
            st.switch_page("components/pages/compare.py")
with right:
    st.markdown(f"**Reference report:** {case.get('reference') or '—'}")
    truth = case.get("truth") or {}
    st.markdown(
        f"**Truth:** findings {', '.join(truth.get('findings') or []) or 'none'}"
        + (f"; tumour {truth['tumour']}" if truth.get("tumour") else "")
    )
    for m in models:
        r = (case.get("models") or {}).get(m) or {}
        errs = []
        if r.get("missed_findings"):
            errs.append("missed " + ", ".join(r["missed_findings"]))
        if r.get("false_findings"):
            errs.append("false " + ", ".join(r["false_findings"]))
        if r.get("tumour_correct") is False:
            errs.append(f"tumour {r.get('tumour_pred')}")
        f1 = r.get("clinical_f1")
        st.markdown(
            f"**{NAMES.get(m, m)}** ({'; '.join(errs) or 'no label errors'}"
            + (f"; clinical F1 {f1:.2f}" if isinstance(f1, (int, float)) else "")
            + f"):  \n{r.get('report') or '—'}"
        )
