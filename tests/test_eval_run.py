"""End to end: `meddistill evaluate` on tiny random checkpoints and a tiny generated phantom set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import tiny_checkpoint

from model.evaluate import efficiency, tradeoff
from model.evaluate.run import EvalConfig, evaluate, load_sample_study
from model.types import ReportStyle

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_tiny_checkpoints(data_dir: Path, out: Path) -> dict[str, Path]:
    """Random-weight tiny teacher / students sharing a tokenizer built on the set's reports."""
    from model.networks import build_tokenizer

    ann = json.loads((data_dir / "annotation.json").read_text())
    texts = [t for e in ann["train"] for t in (e.get("reports") or {"standard": e["report"]}).values()]
    tok = build_tokenizer(texts)
    paths = {}
    for seed, (name, preset) in enumerate(
        [("teacher", "tiny-teacher"), ("student", "tiny-student"), ("student_nokd", "tiny-student")]
    ):
        paths[name] = tiny_checkpoint(out / name, tok, preset, name, seed=seed)
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from model.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("eval")
    generate_dataset(root / "data", n_cxr=30, n_ct=14, size=48, val_frac=0.15, test_frac=0.25, progress=False)
    return root / "data", make_tiny_checkpoints(root / "data", root / "ckpt")


FAST = dict(
    latency_runs=20, latency_warmup=1, memory=False, meteor=False, semantic=False, tradeoff_limit=3,
    tradeoff_tokens=(4, 8, 16), cam_limit=4, progress=False, real_limit=4, val_limit=6,
)  # fmt: skip


def test_evaluate_writes_every_section(tiny, tmp_path):
    data, ckpt = tiny
    real = str(SHARED) if SHARED.is_dir() else None
    out = tmp_path / "eval" / "tiny.json"
    evaluate(ckpt, data, out, EvalConfig(real_dir=real, **FAST))
    result = json.loads(out.read_text())  # strict JSON: NaN would have failed allow_nan=False
    assert out.with_suffix(".md").is_file()
    for key in (
        "schema_version",
        "created",
        "protocol",
        "data",
        "models",
        "retention",
        "tradeoff",
        "cases",
        "timing",
    ):
        assert key in result, key
    assert result["model_order"] == ["teacher", "student", "student_nokd"]
    assert result["protocol"]["clinical"]["uncertain"] == "positive"
    m = result["models"]["student"]
    for group in (
        "report",
        "clinical",
        "findings",
        "tumour",
        "treatment",
        "calibration",
        "localization",
        "efficiency",
    ):
        assert group in m["metrics"], group
    for block in ("per_finding", "roc", "reliability", "efficiency", "thresholds", "agreement"):
        assert block in m, block
    grades = m["per_finding"]["findings_by_grade"]  # phantoms: recall per severity, subtle apart (issue 10)
    strata = [g for per in grades.values() for g in per.values()]
    assert strata and all(0 < g["n"] and 0.0 <= g["recall"] <= 1.0 for g in strata)
    assert "Finding recall by severity" in out.with_suffix(".md").read_text()
    assert m["efficiency"]["latency"]["runs"] == 20
    assert m["efficiency"]["flops"]["encode_heads"] > 0
    assert 0 < result["retention"]["ratios"]["student"]["efficiency.parameters"] < 1
    assert m["skipped"]["report.meteor"] == "disabled"
    assert result["data"]["n_cases"] == len(result["cases"]) > 0
    case = result["cases"][0]
    assert set(case["models"]) == {"teacher", "student", "student_nokd"}
    assert {"report", "findings", "tumour", "labels", "heatmap"} <= set(case["models"]["teacher"])
    assert case["heatmap_target"] and case["models"]["student"]["heatmap"]["argmax"]
    # the seed is recorded, and Error analysis can rebuild the case without the data folder
    from model.data.rebuild import rebuild_case

    assert result["data"]["dataset"]["seed"] == 0 and case["seed"] is not None
    assert rebuild_case(result, case).png() == (data / "images" / f"{case['id']}.png").read_bytes()
    curves = result["tradeoff"]["curves"]["teacher"]["brief"]
    assert curves["max_new_tokens"] == [4, 8, 16] and len(curves["bleu_4"]) == 3
    assert curves["mean_tokens"] == sorted(curves["mean_tokens"])
    assert len(curves["statement_recall"]) == len(curves["positives_complete"]) == 3
    assert curves["positives_complete"][-1] == 1.0  # the largest cap is the whole report
    if real:
        assert result["real"], "real sets present but no real section"
        cf = result["real"]["chest_ct_test"]["counterfactual"]
        assert cf["head"] == "tumour" and set(cf["models"]) == {"teacher", "student", "student_nokd"}
        assert 0.0 <= cf["models"]["student"]["normal_to_abnormal"]["flip_rate"] <= 1.0
    loc = m["location"]  # side / zone stated in the reports vs the phantoms' truth
    assert loc["findings"]["n_cases"] == result["data"]["n_cxr"] and loc["tumour"]["n_cases"] == result["data"]["n_ct"]
    assert "location" in result["protocol"] and "counterfactual" in result["protocol"]


def test_cli_evaluate(tiny, tmp_path, capsys):
    from model.cli import main

    data, ckpt = tiny
    out = tmp_path / "cli.json"
    rc = main(["evaluate", "--checkpoints", f"teacher={ckpt['teacher']}", f"student={ckpt['student']}",
               "--data", str(data), "--out", str(out), "--limit", "4", "--cam-limit", "0", "--tradeoff-limit", "0",
               "--no-memory", "--no-meteor", "--no-real", "--quiet", "--val-limit", "4"])  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["data"]["n_cases"] == 4 and result["tradeoff"] is None
    assert "| Metric | teacher | student |" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoints", "teacher", "--data", str(data)]) == 2
    assert main(["evaluate", "--checkpoints", f"teacher={data}/nowhere", "--data", str(data)]) == 2


def test_tradeoff_truncation_equals_greedy_with_smaller_cap(tiny):
    """The trade-off decodes once at the largest cap: its prefix must be what a smaller cap gives."""
    from model.inference import Predictor
    from model.networks import detokenize

    data, ckpt = tiny
    from model.data.sources import PhantomSource

    sample = PhantomSource(data).samples("test")[0]
    study = load_sample_study(sample)
    p = Predictor.from_dir(ckpt["student"], "student")
    raw = dict(detail="brief", whole_sentences=False)  # the protocol scores raw prefixes
    long = p.predict(study, sample.context, ReportStyle(**raw, max_new_tokens=tradeoff.model_cap(p)))
    for k in (3, 10):
        short = p.predict(study, sample.context, ReportStyle(**raw, max_new_tokens=k))
        assert short.tokens == long.tokens[:k]
        assert short.report == detokenize(long.tokens[:k])


def test_efficiency_helpers(tiny):
    from model.inference import Predictor

    data, ckpt = tiny
    t = Predictor.from_dir(ckpt["teacher"], "teacher")
    s = Predictor.from_dir(ckpt["student"], "student")
    ft, fs = efficiency.flops(t.model, t.image_size), efficiency.flops(s.model, s.image_size)
    assert ft["encode_heads"] > fs["encode_heads"] > 0 and ft["decode_step"] > 0
    size = efficiency.checkpoint_bytes(ckpt["teacher"])
    assert size["checkpoint_bytes"] > size["weights_bytes"] > 0
    state = ckpt["teacher"] / "stage_test"  # resumable training state is not part of the checkpoint
    state.mkdir(exist_ok=True)
    (state / "optimizer.safetensors").write_bytes(b"0" * 4096)
    assert efficiency.checkpoint_bytes(ckpt["teacher"]) == size
    __import__("shutil").rmtree(state)  # the fixture is shared
    study = load_sample_study(
        __import__("model.data.sources", fromlist=["x"]).PhantomSource(data).samples("test")[0]
    )
    lat = efficiency.interleaved_latency({"teacher": t, "student": s}, [study], runs=20, warmup=1, threads=1,
                                         style=ReportStyle(max_new_tokens=4))  # fmt: skip
    assert lat["teacher"]["runs"] == lat["student"]["runs"] == 20
    assert np.isfinite(lat["student"]["median_ms"]) and "decode" in lat["student"]["stages_median_ms"]


@pytest.mark.slow
def test_peak_memory_subprocess(tiny):
    _, ckpt = tiny
    mem = efficiency.peak_memory(ckpt["student"])
    assert mem.get("peak_rss_mb") and mem["peak_rss_mb"] >= mem["baseline_rss_mb"] > 0, mem


def test_batched_predictions_match_predict(tiny):
    """Evaluation scores batches; they must say what Predictor.predict says one study at a time."""
    from model.data.sources import PhantomSource
    from model.inference import Predictor

    data, ckpt = tiny
    samples = PhantomSource(data).samples("test")[:5]  # CXR and CT mixed
    studies = [load_sample_study(s) for s in samples]
    contexts = [s.context for s in samples]
    p = Predictor.from_dir(ckpt["teacher"], "teacher")
    style = ReportStyle(detail="detailed", max_new_tokens=20)
    for one, many in zip([p.predict(s, c, style) for s, c in zip(studies, contexts, strict=True)],
                         p.predict_batch(studies, contexts, style), strict=True):  # fmt: skip
        assert many.tokens == one.tokens and many.report == one.report
        np.testing.assert_allclose(list(many.findings.values()), list(one.findings.values()), atol=1e-5)
        np.testing.assert_allclose(list(many.tumour.values()), list(one.tumour.values()), atol=1e-5)
        assert [t.name for t in many.treatments] == [t.name for t in one.treatments]
        np.testing.assert_allclose(many.token_probs, one.token_probs, atol=1e-4)
        assert many.truncated == one.truncated and many.token_limit == one.token_limit
        np.testing.assert_allclose(many.ood_score, one.ood_score, rtol=1e-4, atol=1e-5)
        assert many.ood_flag == one.ood_flag and many.ood_method == one.ood_method


def test_timed_writes_seconds_only_for_a_block_that_ends():
    from model.evaluate.run import timed

    timing: dict[str, float] = {}
    with timed(timing, "a_s"):
        sum(range(1000))
    assert set(timing) == {"a_s"} and 0 <= timing["a_s"] < 5
    with pytest.raises(ZeroDivisionError), timed(timing, "b_s"):
        raise ZeroDivisionError  # the block fails: its time is not recorded
    assert "b_s" not in timing
