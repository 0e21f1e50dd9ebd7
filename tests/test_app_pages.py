"""AppTest (headless Streamlit) for the Metrics, Error analysis, Distillation and Models pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from model.types import DISCLAIMER

TIMEOUT = 120
APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    from model.demo import build_demo_checkpoints

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


# ----------------------------------------------------------------------------------------------
# A small result in the layout `meddistill evaluate` writes (docs/eval_schema.md)

MODELS = ("teacher", "student", "student_nokd")


def _model_block(m: str, k: float) -> dict:
    from model.types import FINDINGS

    return {
        "metrics": {
            "findings": {"macro_auroc": 0.9 * k, "macro_f1": 0.8 * k},
            "tumour": {"accuracy": 0.7 * k},
            "treatment": {"macro_f1": 0.6 * k},
            "report": {"bleu_4": 0.3 * k, "rouge_l": 0.5 * k, "cider_d": 1.0 * k, "semantic": None},
            "clinical": {"micro_f1": 0.7 * k, "example_f1": 0.75 * k},
            "calibration": {"findings_ece": 0.05, "tumour_ece": 0.04, "treatment_ece": 0.03},
            "localization": {"pointing_game": 0.8 * k, "iou": 0.3 * k},
            "efficiency": {"parameters": int(3e7 * k**4), "checkpoint_mb": 120 * k**4, "latency_median_ms": 300 * k**2},
        },
        "per_finding": {"findings": {f: {"auroc": 0.9 * k, "f1": 0.7 * k} for f in FINDINGS}},
        "roc": {"findings": {f: {"fpr": [0, 0.2, 1], "tpr": [0, 0.8 * k, 1]} for f in FINDINGS}},
        "reliability": {"findings": {"ece": 0.05, "bins": [
            {"lo": 0.0, "hi": 0.5, "count": 4, "confidence": 0.2, "accuracy": 0.25},
            {"lo": 0.5, "hi": 1.0, "count": 6, "confidence": 0.8, "accuracy": 0.7},
        ]}},
    }  # fmt: skip


def _case(i: int, images_dir) -> dict:
    from PIL import Image

    from model.data.generate import to_uint8
    from model.data.phantom import make_case

    cid = f"cxr_{i:05d}"
    # a real phantom (the input guard refuses flat fields before any model speaks)
    Image.fromarray(to_uint8(make_case(100 + i, "CXR", size=128).image)).save(images_dir / f"{cid}.png")
    models = {
        m: {
            "report": ["Small left effusion.", "Normal heart.", "Large right effusion."][(i + j) % 3],
            "findings": {"pleural_effusion": 0.2 + 0.3 * j * (i % 2), "cardiomegaly": 0.1},
            "missed_findings": ["pleural_effusion"] if (i + j) % 2 else [],
            "false_findings": ["cardiomegaly"] if i == 2 and m == "student" else [],
            "tumour_pred": None, "tumour_correct": None, "clinical_f1": 0.5, "bleu_4": 0.1, "ood_score": 1.0,
        }
        for j, m in enumerate(MODELS)
    }  # fmt: skip
    return {
        "id": cid, "modality": "CXR", "source": "phantom_cxr", "reference": "Small left pleural effusion.",
        "truth": {"findings": ["pleural_effusion"], "tumour": None, "structured": None},
        "models": models,
        "disagreement": {"student": {"findings": bool(i % 2), "tumour": False, "report_labels": False}},
    }  # fmt: skip


@pytest.fixture
def eval_result(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    result = {
        "schema_version": 1, "name": "unit", "created": "now", "model_order": list(MODELS),
        "data": {"dir": str(data), "n_cases": 4, "n_cxr": 4, "n_ct": 0, "sources": ["phantom_cxr"], "split": "test"},
        "models": {m: _model_block(m, k) for m, k in zip(MODELS, (1.0, 0.95, 0.85), strict=True)},
        "retention": {"reference": "teacher", "ratios": {"student": {"findings.macro_auroc": 0.95}}},
        "tradeoff": {"details": ["brief", "standard"], "curves": {
            m: {d: {"max_new_tokens": [16, 48], "clinical_f1": [0.3, 0.6], "bleu_4": [0.1, 0.2]}
                for d in ("brief", "standard")} for m in MODELS}},
        "protocol": {"clinical": {"labeler": "model.data.labeler.label_report"}},
        "cases": [_case(i, data / "images") for i in range(4)],
    }  # fmt: skip
    out = tmp_path / "eval"
    out.mkdir()
    (out / "unit.json").write_text(json.dumps(result))
    monkeypatch.setenv("MEDDISTILL_EVAL_DIR", str(out))
    return result


def test_metrics_page_charts(app, eval_result):
    at = _open(app, "metrics")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert any("AUROC per finding" in t for t in titles)
    assert any(t.startswith("ROC") for t in titles) and any(t.startswith("Reliability") for t in titles)
    assert any("maximum length" in t for t in titles) and any("latency" in t.lower() for t in titles)
    auroc = next(s for s in specs if "AUROC per finding" in s["layout"]["title"]["text"])
    assert [t["name"] for t in auroc["data"]] == ["Teacher", "Student (KD)", "Student (no KD)"]
    card = at.table[0].value  # the retention scorecard, formatted
    assert card.loc["Parameters", "teacher"] == "30,000,000"
    assert card.loc["Checkpoint (MB)", "teacher"] == "120 MB"
    assert card.loc["Finding macro-AUROC", "student / teacher"] == "95.0 %"
    assert not at.get("json")  # the protocol is a table, not raw JSON
    protocol = at.table[1].value
    assert protocol.loc["labeler", "protocol"] == "model.data.labeler.label_report"
    at.radio(key="met_trade_metric").set_value("bleu_4").run()
    assert not at.exception


def test_metrics_page_readable_on_the_shipped_result(app, shipped_result_without_data):
    result = shipped_result_without_data
    at = _open(app, "metrics")
    assert not at.get("json"), "protocol / real-set results must be tables, not raw JSON"
    cells = [str(v) for t in at.table for v in t.value.to_numpy().ravel()]
    assert cells and not [c for c in cells if re.search(r"\de[+-]\d", c)], "scientific notation in a table"
    card = at.table[0].value
    params = result["models"]["teacher"]["metrics"]["efficiency"]["parameters"]
    assert card.loc["Parameters", "teacher"] == f"{params:,}"
    assert card.loc["Checkpoint (MB)", "student"].endswith(" MB")
    assert card.loc["Median latency (ms)", "student / teacher"].endswith(" %")
    if result.get("real"):  # one table per real set beside the scorecard
        assert len([m for m in at.markdown if m.value.split(":")[0].strip("*") in result["real"]]) == len(result["real"])
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        layout = spec["layout"]
        assert layout["xaxis"]["automargin"] and layout["yaxis"]["automargin"]
        assert layout["title"]["automargin"]
        assert len(layout["title"]["text"]) <= 60, layout["title"]["text"]  # fits a half-width column
        for trace in spec["data"]:
            assert not any(re.search(r"\de[+-]\d", str(t)) for t in trace.get("text") or [])
    rel = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Reliability" in c.proto.spec)
    assert all("ECE" in t["name"] for t in rel["data"] if t["name"] != "chance")  # ECE in the legend
    flat = all(
        max(c["clinical_f1"]) - min(c["clinical_f1"]) < 0.05
        for per in result["tradeoff"]["curves"].values() for c in per.values()
    )  # fmt: skip
    notes = [i.value for i in at.info if "clinical-F1 curves are flat" in i.value]
    assert bool(notes) == flat  # the page says why, exactly when the curves are flat


def test_error_analysis_filters_and_export(app, eval_result):
    from components.eval_data import cases_frame, filter_cases, teaching_set_zip

    at = _open(app, "errors")
    assert at.dataframe[0].value.shape[0] == 4
    at.selectbox(key="err_model").set_value("teacher").run()
    at.selectbox(key="err_type").set_value("false negative").run()
    assert not at.exception
    assert 0 < at.dataframe[0].value.shape[0] < 4
    at.toggle(key="err_disagree").set_value(True).run()
    assert not at.exception
    # the pure pieces behind the widgets
    df = cases_frame(eval_result)
    assert list(df.columns[:4]) == ["id", "modality", "gap", "word_mismatch"]
    fp = filter_cases(df, list(MODELS), error_model="student", error_type="false positive")
    assert list(fp["id"]) == ["cxr_00002"]
    assert len(filter_cases(df, list(MODELS), finding="cardiomegaly")) == 1
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(teaching_set_zip(eval_result, df))).namelist()
    assert "cases.csv" in names and "images/cxr_00001.png" in names and "cases/cxr_00003.json" in names
    assert sorted(n for n in names if n.startswith("images/")) == sorted(f"images/{c}.png" for c in df["id"])


def _select_row(at, row: int = 0):
    """Select a row of the cases table the way a click does (its selection state) and rerun."""
    at.session_state["err_table"] = {"selection": {"rows": [row], "columns": []}}
    at.run()
    assert not at.exception, at.exception
    subheaders = [h.value for h in at.subheader]
    assert any(h.startswith("Case ") for h in subheaders), (
        f"row selection was not applied (this Streamlit's dataframe selection state changed?): {subheaders}"
    )
    return at


def test_error_analysis_open_case_in_compare(app, eval_result):
    at = _select_row(_open(app, "errors"))
    at.button(key="err_open").click().run()
    assert not at.exception
    assert at.selectbox(key="cmp_study").value.startswith("opened:")
    assert len([h for h in at.get("html") if "md-report" in h.proto.body]) == 2


@pytest.fixture
def shipped_result_without_data(tmp_path, monkeypatch):
    """A clean install: the shipped evaluation, its data folder absent (on a developer's machine it may exist:
    the copy points at a folder that does not)."""
    src = Path(__file__).resolve().parents[1] / "assets" / "eval" / "phantom_test.json"
    result = json.loads(src.read_text())
    result["data"]["dir"] = "runs/absent-on-a-clean-install/data"
    assert not (Path(__file__).resolve().parents[1] / result["data"]["dir"]).exists()
    out = tmp_path / "eval"
    out.mkdir()
    (out / "phantom_test.json").write_text(json.dumps(result))
    monkeypatch.setenv("MEDDISTILL_EVAL_DIR", str(out))
    return result


def test_error_analysis_opens_a_rebuilt_case_in_compare(app, shipped_result_without_data):
    result = shipped_result_without_data
    at = _open(app, "errors")
    at.selectbox(key="err_modality").set_value("CT").run()  # a CT case: tumour truth to check
    at.selectbox(key="err_sort").set_value("id").run()
    at = _select_row(at)
    case = min((c for c in result["cases"] if c["modality"] == "CT"), key=lambda c: c["id"])  # row 0
    assert any(h.value.startswith(f"Case {case['id']}") for h in at.subheader)
    assert not [w.value for w in at.warning if "not on this machine" in w.value]
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert any("rebuilt from" in c for c in captions), captions
    at.button(key="err_open").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_study").value.startswith("opened:")
    assert any(h.value == "Ground truth (phantom)" for h in at.subheader)
    text = "\n".join(m.value for m in at.markdown)
    assert case["truth"]["tumour"] in text.lower()
    assert case["reference"] in [i.value for i in at.info]  # rebuilt standard report = recorded reference


@pytest.mark.parametrize(
    "cxr",
    [
        "first",
        "normal",  # normal chest X-rays (and CT) are drawn as before and still rebuild
    ],
)
def test_teaching_set_has_one_image_per_row_without_data(shipped_result_without_data, cxr):
    import io
    import zipfile

    import pandas as pd
    from PIL import Image

    from components.eval_data import cases_frame, teaching_set_zip

    result = shipped_result_without_data
    df = cases_frame(result)
    cxr_rows = df[df["modality"] == "CXR"]
    if cxr == "normal":
        normal = [c for c in result["cases"] if c["modality"] == "CXR" and not c["truth"]["findings"]]
        normal_ids = {c["id"] for c in normal}
        cxr_rows = cxr_rows[cxr_rows["id"].isin(normal_ids)]
    rows = pd.concat([cxr_rows.head(3), df[df["modality"] == "CT"].head(2)])
    zf = zipfile.ZipFile(io.BytesIO(teaching_set_zip(result, rows)))
    names = zf.namelist()
    pngs = sorted(n for n in names if n.startswith("images/"))
    assert pngs == sorted(f"images/{cid}.png" for cid in rows["id"])  # one PNG per CSV row
    assert len([n for n in names if n.startswith("masks/")]) == len(rows)
    assert list(pd.read_csv(zf.open("cases.csv"))["id"]) == list(rows["id"])
    img = np.asarray(Image.open(zf.open(pngs[0])))
    assert img.shape == (256, 256) and img.dtype == np.uint8 and img.std() > 10  # a real phantom
    assert "Cases without an image" not in zf.read("README.txt").decode()


def test_broken_checkpoint_falls_back_to_demo_weights(tmp_path, monkeypatch):
    for m in ("teacher", "student"):
        (tmp_path / m).mkdir()
        (tmp_path / m / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv("MEDDISTILL_CHECKPOINTS", str(tmp_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Could not load the checkpoints" in e.value for e in at.error)
    assert any("Untrained demo weights" in e.value for e in at.error)
    st.cache_resource.clear()
