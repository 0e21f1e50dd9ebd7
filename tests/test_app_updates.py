"""The Model updates page (AppTest) and its word diff: the registry's versions, an update's before/after
metrics and gate checks, each reviewed case's report before and after with the change marked."""

from __future__ import annotations

from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "components" / "pages" / "updates.py"
TIMEOUT = 120


@pytest.fixture
def page():
    """A fresh AppTest of the page script alone (app.py adds the navigation and the disclaimer banner)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)


def test_report_diff_marks_words_and_escapes():
    from components.report_diff import changed, report_diff_html, word_diff

    before = "No pleural effusion. Heart size is normal."
    after = "Small right pleural effusion. Heart size is normal."
    ops = word_diff(before, after)
    assert ops == [
        ("removed", "No"),
        ("added", "Small right"),
        ("same", "pleural effusion. Heart size is normal."),
    ]
    html = report_diff_html(before, after)
    assert '<del style="' in html and ">No</del>" in html and ">Small right</ins>" in html
    assert changed(before, after) and not changed(before, " ".join(before.split()))
    hostile = report_diff_html("ok", 'ok <script>alert(1)</script> <img src=x onerror="y">')
    assert "<script>" not in hostile and "<img" not in hostile and "&lt;script&gt;" in hostile
    assert report_diff_html("same text", "same text").count("<ins") == 0


def test_updates_page_without_a_store(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDISTILL_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("MEDDISTILL_DB_URL", raising=False)
    at = page.run()
    assert not at.exception, at.exception
    assert any("No review store yet" in i.value for i in at.info)
    assert not (tmp_path / "nothing").exists()  # the page only reads: it never creates a store


def test_updates_page_shows_versions_metrics_and_report_diffs(page, tmp_path, monkeypatch):
    from test_update import LENIENT, make_store, tiny_config

    from model.review.update import run_update

    store = make_store(tmp_path)
    result = run_update(store, tiny_config(LENIENT), show_progress=False, log=lambda *a: None)
    monkeypatch.setenv("MEDDISTILL_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("MEDDISTILL_DB_URL", raising=False)
    at = page.run()
    assert not at.exception, at.exception
    tables = [d.value for d in at.dataframe]
    versions = tables[0]
    assert list(versions["Version"]) == ["v2", "v1"]
    assert "current" in versions["Status"].iloc[0] and "retired" in versions["Status"].iloc[1]
    assert versions["Teacher sha256"].iloc[0] == store.version(2).sha256["teacher"][:12]
    assert versions["Learned from"].iloc[0] == f"{len(result.feedback_ids)} reviewed case(s)"
    metrics = tables[1]
    assert {"v1 (before)", "v2 (after)", "Change (points)"} <= set(metrics.columns)
    assert "phantom test: clinical-efficacy F1 (micro)" in set(metrics["Metric"])
    assert any("Promoted" in s.value for s in at.success)
    # one bordered card per reviewed case, each model's report before/after as an HTML diff
    diffs = at.get("html")
    assert len(diffs) == 2 * len(store.list_reviews())
    text = "\n".join(m.value for m in at.markdown)
    assert "trained on" in text and "v1 → v2" in text
    at.number_input(key="upd_limit").set_value(1).run()
    assert not at.exception
    assert len(at.get("html")) == 2
