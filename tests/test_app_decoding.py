"""AppTest on the shipped weights: a capped report says it was shortened, treatments follow the one rule
(supported by the rulebook and above TREATMENT_THRESHOLD), and every page gives one size per checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from model.evaluate.efficiency import checkpoint_bytes

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
SHIPPED = ROOT / "assets" / "checkpoints"


@pytest.fixture
def app(monkeypatch):
    """A fresh AppTest on the shipped checkpoints, with Streamlit's process-wide caches cleared."""
    monkeypatch.delenv("MEDDISTILL_CHECKPOINTS", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield AppTest.from_file(str(APP), default_timeout=240)
    st.cache_data.clear()
    st.cache_resource.clear()


def test_compare_shortened_report_and_treatments(app):
    app.run()
    assert not app.exception, app.exception
    app.sidebar.select_slider(key="rc_detail").set_value("detailed").run()
    app.sidebar.slider(key="rc_max_tokens").set_value(24).run()
    assert not app.exception, app.exception
    notes = [c.value for c in app.caption if "shortened to 24 tokens" in c.value]
    assert notes, [c.value for c in app.caption]
    others = [e for e in app.expander if e.label.startswith("Other suggestions")]
    assert len(others) >= 2  # one per model column
    text = "\n".join(m.value for m in app.markdown)
    assert "not supported by the rulebook" in text  # the reasons sit with the other suggestions


def test_one_size_figure_per_checkpoint(app):
    app.run()
    app.switch_page("components/pages/models.py")
    app.run()
    assert not app.exception, app.exception
    sizes = [m.value for m in app.metric if m.label == "Checkpoint size"]
    expected = [
        f"{checkpoint_bytes(SHIPPED / m)['checkpoint_mb']:.1f} MB"
        for m in ("teacher", "student", "student_nokd")
    ]
    assert sizes == expected
    # the evaluation shown on the same card measured the same files
    result = json.loads((ROOT / "assets" / "eval" / "phantom_test.json").read_text())
    for m, shown in zip(("teacher", "student", "student_nokd"), sizes, strict=True):
        assert f"{result['models'][m]['efficiency']['checkpoint_mb']:.1f} MB" == shown
    # no other MB figure on the page disagrees
    text = "\n".join(m.value for m in app.markdown)
    others = {f"{float(x):.1f} MB" for x in re.findall(r"(\d+(?:\.\d+)?) ?MB", text)}
    assert others <= set(sizes)
    # card figures are formatted like the Metrics page: never "3.42724e+07"
    assert not re.search(r"\d\.?\d*e[+-]\d+", text), re.findall(r"\S*\d\.?\d*e[+-]\d+\S*", text)
