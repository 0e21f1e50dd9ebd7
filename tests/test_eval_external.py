"""`meddistill evaluate --external DIR --format ... --label-map FILE` on tiny synthetic sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_training import tiny_checkpoint

from model.evaluate.external import LabelMapError, build_external_source, evaluate_external, load_label_map
from model.types import FINDINGS, TUMOUR_CLASSES, TUMOUR_SUBTYPES

torch.set_num_threads(1)
FAST = dict(latency_runs=20, memory=False, meteor=False, semantic=False, progress=False, max_new_tokens=8,
            counterfactual_limit=3)  # fmt: skip


def _png(path: Path, seed: int, bright: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    px = np.clip(bright + 0.2 * np.random.default_rng(seed).random((40, 40)), 0, 1)
    Image.fromarray((px * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from model.networks import build_tokenizer

    root = tmp_path_factory.mktemp("ext")
    tok = build_tokenizer(["Consolidation in the right lower zone.", "Normal study.", "No nodule or mass."])
    out = {}
    for seed, name in enumerate(("teacher", "student")):
        out[name] = tiny_checkpoint(root / name, tok, "tiny-student", name, seed=seed)
    return out


@pytest.fixture
def cxr_folders(tmp_path):
    root = tmp_path / "my_cxr"
    for i in range(4):
        _png(root / "test" / "PNEUMONIA" / f"p{i}.png", i, 0.2)
        _png(root / "test" / "NORMAL" / f"n{i}.png", 10 + i, 0.6)
        _png(root / "test" / "OTHER" / f"o{i}.png", 20 + i, 0.4)
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps({"modality": "CXR", "labels": {"PNEUMONIA": "consolidation", "NORMAL": "normal"}})
    )
    return root, labels


def test_label_map_targets(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"PNEUMONIA": "consolidation", "adeno": "adenocarcinoma",
                                "ben": "tumour:benign", "x": "ignore", "ok": "normal"}))  # fmt: skip
    m, modality = load_label_map(path)
    assert modality is None
    c = FINDINGS.index("consolidation")
    assert m["PNEUMONIA"].findings[c] == 1.0 and np.isnan(m["PNEUMONIA"].findings[0])
    assert m["adeno"].tumour == TUMOUR_CLASSES.index("malignant")
    assert m["adeno"].subtype == TUMOUR_SUBTYPES.index("adenocarcinoma")
    assert m["ben"].tumour == 1 and m["x"].ignore and m["ok"].findings == (0.0,) * len(FINDINGS)
    path.write_text(json.dumps({"PNEUMONIA": "pneumonia"}))
    with pytest.raises(LabelMapError, match="m.json.*'PNEUMONIA'.*Use one of"):
        load_label_map(path)
    with pytest.raises(LabelMapError, match="not found"):
        load_label_map(tmp_path / "nope.json")


def test_folder_source_applies_the_map(cxr_folders):
    root, labels = cxr_folders
    source = build_external_source(root, "folders", labels)
    samples = source.all_samples()
    assert len(samples) == 8 and source.unmapped == ["OTHER"]  # unmapped folder left out, and said so
    pneu = [s for s in samples if "PNEUMONIA" in s.id]
    assert all(
        s.modality == "CXR" and s.finding_targets[FINDINGS.index("consolidation")] == 1.0 for s in pneu
    )
    assert all("consolidation" in s.report.lower() for s in pneu)
    normal = [s for s in samples if "NORMAL" in s.id]
    assert all((s.finding_targets == 0).all() for s in normal)


def test_nih_csv_source_applies_the_map(tmp_path):
    root = tmp_path / "nih"
    rows = [("a.png", "Pneumonia|Weird"), ("b.png", "No Finding"), ("c.png", "Weird")]
    for i, (name, _) in enumerate(rows):
        _png(root / name, i, 0.4)
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels", "Patient ID"])
        w.writerows([(n, lab, str(i)) for i, (n, lab) in enumerate(rows)])
    (tmp_path / "m.json").write_text(json.dumps({"Pneumonia": "consolidation", "No Finding": "normal"}))
    source = build_external_source(root, "nih-csv", tmp_path / "m.json")
    by_id = {s.id.split(":")[1]: s for s in source.all_samples()}
    assert set(by_id) == {"a", "b"} and source.unmapped == {"Weird"}
    assert by_id["a"].finding_targets[FINDINGS.index("consolidation")] == 1.0
    assert (by_id["b"].finding_targets == 0).all()


def test_evaluate_external_writes_json(ckpt, cxr_folders, tmp_path):
    root, labels = cxr_folders
    out = tmp_path / "out" / "ext.json"
    from model.evaluate.run import EvalConfig

    evaluate_external(ckpt, root, "folders", out, labels, EvalConfig(**FAST))
    result = json.loads(out.read_text())
    assert out.with_suffix(".md").is_file()
    assert result["external"]["format"] == "folders" and result["external"]["unmapped_labels"] == ["OTHER"]
    assert result["data"]["n_cases"] == 8 and result["model_order"] == ["teacher", "student"]
    f = result["models"]["student"]["metrics"]["findings"]
    assert f["n_cases"] == 8 and "macro_auroc" in f
    cf = result["counterfactual"]
    assert cf["head"] == "findings" and cf["n_normal"] == 3 and cf["n_abnormal"] == 3
    assert set(cf["models"]) == {"teacher", "student"}


def test_cli_external(ckpt, cxr_folders, tmp_path, capsys):
    from model.cli import main

    root, labels = cxr_folders
    out = tmp_path / "cli.json"
    args = ["evaluate", "--checkpoints", f"teacher={ckpt['teacher']}", "--external", str(root), "--format",
            "folders", "--label-map", str(labels), "--out", str(out), "--no-memory", "--no-meteor", "--quiet",
            "--max-tokens", "8", "--counterfactual-limit", "0"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(out.read_text())["counterfactual"] is None
    assert "Left out (not in the label map): OTHER" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([*args[:7], "--label-map", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "not valid JSON" in err and "Error" not in err
    assert (
        main(["evaluate", "--checkpoints", f"teacher={ckpt['teacher']}", "--external", str(tmp_path / "no")])
        == 2
    )
    assert "is not a folder" in capsys.readouterr().err
