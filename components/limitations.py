"""Known limitations (model cards) and the intensity-swap test (real sets): honest figures, shown plainly."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components.figures import NAMES


def counterfactual_frame(block: dict | None) -> pd.DataFrame:
    """One row per model: how many decisions the intensity swap flipped (empty when not run)."""
    if not block or "models" not in block:
        return pd.DataFrame()
    rows = []
    for model, b in block["models"].items():
        a, z = b["normal_to_abnormal"], b["abnormal_to_normal"]
        rows.append({
            "model": NAMES.get(model, model),
            "normal with abnormal histogram: called abnormal": a.get("to_other_class"),
            "flip rate (normal)": a.get("flip_rate"),
            "abnormal with normal histogram: called normal": z.get("to_other_class"),
            "flip rate (abnormal)": z.get("flip_rate"),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("model")


def render_counterfactual(block: dict | None) -> None:
    """The intensity-swap table of one real set (nothing when the evaluation did not run it)."""
    frame = counterfactual_frame(block)
    if frame.empty:
        return
    st.markdown(
        f"Intensity swap ({block.get('head')} head, {block.get('n_normal')} normal / "
        f"{block.get('n_abnormal')} abnormal cases): each image takes the grey-level histogram of an image of "
        "the other class, anatomy unchanged. A head that reads the lesion keeps its answer; flips mean it "
        "reads brightness."
    )
    st.table(frame.map(lambda v: "-" if v is None or pd.isna(v) else f"{100 * v:.0f}%"))


def render_known_limitations(card: dict) -> None:
    """The card's ``known_limitations`` list (measured figure + what it means for a user)."""
    items = card.get("known_limitations") or []
    if not items:
        return
    st.markdown("**Known limitations** (measured; see benchmarks/results/real.md)")
    for item in items:
        st.warning(f"**{item.get('title', '')}.** {item.get('figure', '')}\n\n{item.get('meaning', '')}")
