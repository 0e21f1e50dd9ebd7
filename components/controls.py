"""Input widgets: report style (sidebar) and patient context. Each ``*_ui()`` returns its values."""

from __future__ import annotations

import streamlit as st

from model.types import ALLERGIES, DETAIL_LEVELS, PatientContext, ReportStyle

DECODING_LABELS = {"greedy": "Greedy", "beam": "Beam search", "sample": "Sampling"}

BEAMS_HELP = (
    "Candidate reports kept at each step; the best-scoring one is returned. On the shipped samples 3 beams "
    "changed 79% of the teacher's reports and 36% of the student's; going from 3 to 6 beams changed few "
    "(14% / 7%; benchmarks/results/decoding.md). Length penalty changes more."
)
LENGTH_PENALTY_HELP = (
    "Candidates are ranked by log-probability / length ^ penalty. 0 prefers the most probable, often "
    "shorter report; values above 1 favour longer reports."
)


def report_style_ui() -> ReportStyle:
    """Sidebar report controls; any change re-runs generation at once (cached per style)."""
    sb = st.sidebar
    sb.header("Report controls")
    detail = sb.select_slider(
        "Detail",
        options=list(DETAIL_LEVELS),
        value="standard",
        key="rc_detail",
        help="The control token the decoder starts from: brief, standard or detailed reports.",
    )
    max_new_tokens = sb.slider(
        "Maximum length (tokens)",
        8,
        160,
        96,
        step=8,
        key="rc_max_tokens",
        help="Hard cap on generated words and punctuation. A report the cap cuts ends at its last "
        "complete sentence and is marked 'shortened'.",
    )
    max_sentences = sb.slider(
        "Maximum sentences (0 = no limit)",
        0,
        12,
        0,
        key="rc_max_sentences",
        help="Cut the report after N sentences.",
    )
    decoding = sb.radio(
        "Decoding",
        list(DECODING_LABELS),
        format_func=DECODING_LABELS.get,
        horizontal=True,
        key="rc_decoding",
        help="Greedy: the most probable word at each step. Beam search: keeps several candidate reports "
        "and returns the best-scoring one. Sampling: draws each word at random from the model's distribution.",
    )
    kwargs: dict = {}
    if decoding == "beam":
        kwargs["num_beams"] = sb.slider("Beams", 2, 6, 3, key="rc_beams", help=BEAMS_HELP)
        kwargs["length_penalty"] = sb.slider(
            "Length penalty",
            0.0,
            2.0,
            1.0,
            step=0.1,
            key="rc_length_penalty",
            help=LENGTH_PENALTY_HELP,
        )
    elif decoding == "sample":
        kwargs["temperature"] = sb.slider(
            "Temperature",
            0.1,
            2.0,
            1.0,
            step=0.1,
            key="rc_temperature",
            help="Below 1 sharpens the distribution toward the greedy choice (where the model is torn between "
            "two words, either can still come out); above 1 flattens it, so rarer words and phrasings appear.",
        )
        kwargs["seed"] = int(
            sb.number_input(
                "Seed", 0, 9999, 0, key="rc_seed", help="Same seed, same draw: change it for another sample."
            )
        )
    return ReportStyle(
        detail=detail,
        max_new_tokens=int(max_new_tokens),
        max_sentences=int(max_sentences) or None,
        decoding=decoding,
        **kwargs,
    )


SEX_OPTIONS = {"unknown": None, "female": "F", "male": "M"}
TRI_STATE = {"unknown": None, "no": False, "yes": True}


def patient_context_ui(default: PatientContext | None = None, key: str = "ctx") -> PatientContext:
    """Optional patient facts for the treatment head (defaults to a phantom's own context)."""
    default = default or PatientContext()
    with st.expander("Patient context (feeds the treatment head)", expanded=False):
        use_age = st.checkbox("Age known", value=default.age is not None, key=f"{key}_age_known")
        age = st.slider("Age", 0, 100, default.age or 60, key=f"{key}_age", disabled=not use_age)
        c1, c2, c3 = st.columns(3)
        sex_names = list(SEX_OPTIONS)
        sex_default = next(k for k, v in SEX_OPTIONS.items() if v == default.sex)
        sex = c1.radio("Sex", sex_names, index=sex_names.index(sex_default), key=f"{key}_sex")
        tri = list(TRI_STATE)
        renal_default = next(k for k, v in TRI_STATE.items() if v == default.renal_impairment)
        renal = c2.radio("Renal impairment", tri, index=tri.index(renal_default), key=f"{key}_renal")
        preg_default = next(k for k, v in TRI_STATE.items() if v == default.pregnant)
        pregnant = c3.radio("Pregnant", tri, index=tri.index(preg_default), key=f"{key}_pregnant")
        allergies = st.multiselect(
            "Allergies",
            list(ALLERGIES),
            default=[a for a in default.allergies if a in ALLERGIES],
            format_func=lambda a: a.replace("_", " "),
            key=f"{key}_allergies",
        )
    return PatientContext(
        age=int(age) if use_age else None,
        sex=SEX_OPTIONS[sex],
        allergies=tuple(allergies),
        renal_impairment=TRI_STATE[renal],
        pregnant=TRI_STATE[pregnant],
    )
