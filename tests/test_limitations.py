"""Model-card known limitations: regenerated from results JSON, written into the card, rendered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluate.limitations import REAL_RESULTS, known_limitations, write_card_limitations

REPO = Path(__file__).resolve().parents[1]
MODELS = ("teacher", "student", "student_nokd")


def _swap(to_abn: float, to_norm: float) -> dict:
    side = {"flip_rate": 0.5, "n": 10, "n_not_other_before": 8, "positive_before": 0.2, "positive_after": 0.9}
    return {"normal_to_abnormal": {**side, "to_other_class": to_abn},
            "abnormal_to_normal": {**side, "to_other_class": to_norm}}  # fmt: skip


EVAL = {
    "models": {"student": {"location": {
        "tumour": {"side_agreement": 0.5, "zone_agreement": 0.3, "invented_rate": 0.6, "side_majority_baseline": 0.52,
                   "zone_majority_baseline": 0.36},
        "findings": {"side_agreement": 0.4, "invented_rate": 0.7, "n_statements": 12, "side_stated": 9}}}},
    "real": {"chest_ct_test": {"counterfactual": {"models": {"student": _swap(1.0, 0.44)}}},
             "nih1000_test": {"models": {"student": {"metrics": {"findings": {"macro_auroc": 0.47}}}}}},
}  # fmt: skip


def test_items_carry_the_measured_figures():
    items = known_limitations("student", evaluation=EVAL)
    assert [i["title"].split(":")[0] for i in items] == [
        "Real CT",
        "Real chest X-rays",
        "Lesion location in reports is not reliable",
    ]
    swap, cxr, loc = items
    assert "100%" in swap["figure"] and "44%" in swap["figure"] and "n=8" in swap["figure"]
    assert "0.47" in cxr["figure"] and "chance" in cxr["figure"]
    assert "50%" in loc["figure"] and "52%" in loc["figure"] and "60%" in loc["figure"]
    for item in items:
        assert set(item) == {"title", "figure", "meaning", "source"} and len(item["meaning"]) > 60


def test_a_model_that_calls_everything_tumour_gets_its_own_item():
    always = _swap(None, 0.0)
    always["normal_to_abnormal"].update(n_not_other_before=0, positive_before=1.0, flip_rate=0.0)
    evaluation = {"real": {"chest_ct_test": {"counterfactual": {"models": {"m": always}}}}}
    (item,) = known_limitations("m", evaluation=evaluation)
    assert item["title"] == "Real CT: every slice is called tumour" and "100% of 10 normal" in item["figure"]


def test_missing_figures_give_no_item():
    assert known_limitations("teacher", evaluation=EVAL) == []  # nothing measured for it here
    assert known_limitations("student") == []
    no_swap = {**EVAL, "real": {"chest_ct_test": {"counterfactual": {"skipped": "one class"}}}}
    assert [i["title"] for i in known_limitations("student", evaluation=no_swap)][0].startswith("Lesion")


def test_write_card_limitations_keeps_everything_else(tmp_path):
    card = tmp_path / "model_card.json"
    original = {"model_id": "s", "training": {"a": [1, 2]}, "weights_sha256": "abc"}
    card.write_text(json.dumps(original, indent=2))
    items = known_limitations("student", evaluation=EVAL)
    write_card_limitations(card, items)
    out = json.loads(card.read_text())
    assert out.pop("known_limitations") == items and out == original
    assert not card.read_text().endswith("\n")  # the file's own layout kept


@pytest.mark.parametrize("model", MODELS)
def test_shipped_cards_match_their_regeneration(model):
    """The cards' lists are exactly what the function makes from the committed results."""
    card = json.loads((REPO / "assets" / "checkpoints" / model / "model_card.json").read_text())
    evaluation = json.loads((REPO / "assets" / "eval" / "phantom_test.json").read_text())
    real = json.loads((REPO / REAL_RESULTS).read_text())
    assert card["known_limitations"] == known_limitations(model, evaluation=evaluation, real=real)
    titles = [i["title"] for i in card["known_limitations"]]
    assert titles[0].startswith("Real CT") and any("location" in t.lower() for t in titles)


def test_models_page_block_renders_the_items():
    from streamlit.testing.v1 import AppTest

    def page():
        from components.limitations import render_known_limitations

        render_known_limitations({"known_limitations": [
            {"title": "Real CT: brightness", "figure": "100% flip", "meaning": "do not trust it"}]})  # fmt: skip

    at = AppTest.from_function(page).run(timeout=120)
    assert not at.exception
    assert "100% flip" in at.warning[0].value and "do not trust it" in at.warning[0].value


def test_counterfactual_table_renders():
    from streamlit.testing.v1 import AppTest

    def page():
        from components.limitations import render_counterfactual
        from tests.test_limitations import _swap

        render_counterfactual(
            {"head": "tumour", "n_normal": 3, "n_abnormal": 4, "models": {"teacher": _swap(1.0, 0.25)}}
        )

    at = AppTest.from_function(page).run(timeout=120)
    assert not at.exception
    assert "100%" in at.table[0].value.to_string() and "25%" in at.table[0].value.to_string()
