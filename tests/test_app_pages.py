"""AppTest (headless Streamlit) for the Metrics, Error analysis, Distillation and Models pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from model.types import DISCLAIMER

TIMEOUT = 120
APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    from components.model_store import build_demo_checkpoints

    d = tmp_path_factory.mktemp("ckpt")
    build_demo_checkpoints(d)
    # a training log like model/distill/trainer.py writes
    lines = [
        {"stage": "distill", "split": "train", "epoch": 0, "step": s, "lr": 1e-3, "total": 3 - s / 10,
         "ce_report": 2 - s / 20, "kd_tokens": 1 - s / 30, "grad_norm": 1.0}
        for s in range(1, 11)
    ] + [{"stage": "distill", "split": "val", "epoch": 0, "step": 10, "val_total": 2.5}]  # fmt: skip
    (d / "student" / "train_log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken")
    return d


@pytest.fixture
def app(ckpt_dir, monkeypatch):
    monkeypatch.setenv("MEDDISTILL_CHECKPOINTS", str(ckpt_dir))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    yield at
    st.cache_data.clear()
    st.cache_resource.clear()


def _open(at, page: str):
    at.run()
    at.switch_page(f"components/pages/{page}.py")
    at.run()
    assert not at.exception, at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    return at


def test_models_page_cards(app):
    at = _open(app, "models")
    text = "\n".join(m.value for m in at.markdown)
    assert "sha256" in text
    assert any("Teacher" in s.value for s in at.subheader)
    assert any("Untrained demo weights" in e.value for e in at.error)  # the demo checkpoints say so


def test_distillation_page_temperature_and_losses(app):
    at = _open(app, "distillation")
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # next-token bars + loss curves
    spec = json.loads(charts[0].proto.spec)
    assert spec["data"][0]["name"] == "Teacher"
    before = spec["data"][0]["y"]
    at.slider(key="dist_temperature").set_value(8.0).run()
    assert not at.exception
    after = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    assert after != before  # softer distribution
    at.slider(key="dist_position").set_value(0).run()
    assert not at.exception
    losses = [json.loads(c.proto.spec) for c in at.get("plotly_chart")[1:]]
    names = {t["name"] for f in losses for t in f["data"]}
    assert {"kd_tokens", "ce_report", "total"} <= names and "grad_norm" not in names


@pytest.mark.parametrize("page", ["metrics", "errors"])
def test_eval_pages_without_results_do_not_crash(app, page, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDISTILL_EVAL_DIR", str(tmp_path))
    at = _open(app, page)
    assert at.info  # "no evaluation results yet"
