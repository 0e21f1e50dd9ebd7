"""Install checks (model/distill/checks.py) and the pipeline refusing a collapsed checkpoint."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from model.distill import checks
from model.types import FINDINGS, TUMOUR_CLASSES, Prediction, Study

torch.set_num_threads(1)


def _cases(n_cxr: int = 30, n_ct: int = 12) -> list[checks.ValCase]:
    from model.data.phantom import sample_truth

    out = []
    for i in range(n_cxr + n_ct):
        modality = "CXR" if i < n_cxr else "CT"
        truth = sample_truth(np.random.default_rng(i), modality, f"c{i}")
        study = Study(pixels=np.zeros((8, 8), np.float32), modality=modality)
        out.append(checks.ValCase(study, truth.context, truth))
    return out


def _pred(case, findings: dict, tumour: dict, report: str) -> Prediction:
    return Prediction(
        "m", case.study.modality, findings, tumour, [], report, report.split(), [], {}, 0.0, False
    )


def _oracle(cases) -> list[Prediction]:
    """Predictions that know the truth: heads and reports say exactly what the phantom shows."""
    from model.data.reports import write_report

    out = []
    for c in cases:
        v = c.truth.finding_vector()
        f = {n: 0.9 * float(x) + 0.05 for n, x in zip(FINDINGS, v, strict=True)}
        t = {k: 0.9 if k == c.truth.tumour else 0.05 for k in TUMOUR_CLASSES}
        out.append(_pred(c, f, t, write_report(c.truth, "standard", np.random.default_rng(0))))
    return out


def _collapsed(cases) -> list[Prediction]:
    """The shipped no-KD student's failure: the same outputs and the same report for every image."""
    f = dict.fromkeys(FINDINGS, 0.2)
    t = {"none": 0.5, "benign": 0.3, "malignant": 0.2}
    return [_pred(c, f, t, "Normal study.") for c in cases]


def test_collapse_check():
    cases, cfg = _cases(), checks.CheckConfig()
    good = checks.collapse_check(_oracle(cases), cases, cfg)
    bad = checks.collapse_check(_collapsed(cases), cases, cfg)
    assert good["passed"] and good["value"] > 0.3
    assert not bad["passed"] and bad["value"] == 0.0
    assert bad["distinct_reports"] == {"CXR": 1, "CT": 1} and "fixed report" in bad["detail"]
    # varying heads but one fixed report still fails
    fixed_report = [dataclasses.replace(p, report="Normal study.") for p in _oracle(cases)]
    assert not checks.collapse_check(fixed_report, cases, cfg)["passed"]


def test_baseline_check_golden():
    cases, cfg = _cases(), checks.CheckConfig()
    good = checks.baseline_check(_oracle(cases), cases, cfg)
    assert good["passed"], good["detail"]
    assert good["value"]["findings_macro_auroc"]["model"] == 1.0
    assert good["value"]["tumour_accuracy"]["model"] == 1.0
    bad = checks.baseline_check(_collapsed(cases), cases, cfg)
    assert not bad["passed"]
    assert set(bad["failed"]) >= {"findings_macro_auroc", "report_micro_f1"}
    # the majority-class baseline: the most common true tumour class over the CT cases
    truth = [c.truth.tumour for c in cases if c.study.modality == "CT"]
    majority = max(truth.count(k) for k in TUMOUR_CLASSES) / len(truth)
    assert bad["value"]["tumour_accuracy"]["baseline"] == pytest.approx(majority, abs=1e-4)


def _tiny_predictor(seed: int = 0):
    from model.inference import Predictor
    from model.networks import TINY_PRESETS, build_model, build_tokenizer
    from model.ood import fit_ood_stats

    tok = build_tokenizer(["Normal study.", "Small left pleural effusion."])
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(TINY_PRESETS["tiny-student"], vocab_size=len(tok))).eval()
    rng = np.random.default_rng(seed)
    dark = torch.from_numpy(rng.uniform(0.0, 0.2, (64, 1, 32, 32)).astype(np.float32))
    return Predictor(model, tok, {"model_id": "tiny"}, fit_ood_stats(model, dark), "tiny")


def test_ood_check_flags_images_unlike_its_statistics():
    p = _tiny_predictor()
    cfg = checks.CheckConfig()
    rng = np.random.default_rng(1)
    near = [
        checks.ValCase(Study(rng.uniform(0, 0.2, (32, 32)).astype(np.float32), "CXR"), None, None)
        for _ in range(20)
    ]
    far = [checks.ValCase(Study(np.ones((32, 32), np.float32), "CXR"), None, None) for _ in range(20)]
    assert checks.ood_check(p, far, cfg)["value"] == 1.0 and not checks.ood_check(p, far, cfg)["passed"]
    assert checks.ood_check(p, near, cfg)["value"] <= 0.2
    p.extras = {}
    assert not checks.ood_check(p, near, cfg)["passed"]  # no statistics: cannot vouch for it


def test_pipeline_refuses_a_collapsed_checkpoint_and_keeps_the_installed_one(tmp_path, monkeypatch):
    from model.checkpoints import load_card, save_checkpoint
    from model.commands import pipeline
    from model.data.generate import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, n_cxr=20, n_ct=10, seed=0, size=64, val_frac=0.3, test_frac=0.1, progress=False)
    p = _tiny_predictor()
    with torch.no_grad():  # collapse it: the heads ignore the image
        for q in p.model.heads.shared.parameters():
            q.zero_()
    run = save_checkpoint(tmp_path / "run" / "student_nokd", p.model, p.tokenizer, {"model_id": "student_nokd"},
                          p.extras)  # fmt: skip
    assets = tmp_path / "assets"
    (assets / "student_nokd").mkdir(parents=True)
    (assets / "student_nokd" / "keep.txt").write_text("the installed one")
    out = pipeline._install({"student_nokd": run}, data, assets)
    assert "student_nokd" in out["refused"] and not out["installed"]
    assert out["refused"]["student_nokd"]["checks"]["collapse"] is False
    assert "Not installing the student_nokd checkpoint" in out["refused"]["student_nokd"]["message"]
    assert (assets / "student_nokd" / "keep.txt").is_file()  # untouched
    assert json.loads((run / "checks.json").read_text())["passed"] is False

    # a checkpoint that passes carries the record and its validation thresholds in the card
    passed = {"passed": True, "checks": {}, "thresholds": {"findings": dict.fromkeys(FINDINGS, 0.3)}}
    monkeypatch.setattr(checks, "run_checks", lambda *a, **k: passed)
    out = pipeline._install({"student_nokd": run}, data, assets)
    assert out["installed"] and not out["refused"]
    card = load_card(assets / "student_nokd")
    assert card["checks"]["passed"] and card["thresholds"]["findings"]["nodule"] == 0.3
