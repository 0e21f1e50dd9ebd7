"""Rebuilding evaluated phantom cases from their seed (model/data/rebuild.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.generate import generate_dataset
from model.data.rebuild import (
    RebuildError,
    dataset_provenance,
    parse_case_id,
    rebuild_case,
    rebuildable,
    seed_from_id,
)

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "eval" / "phantom_test.json"


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    generate_dataset(out, n_cxr=4, n_ct=3, seed=7, size=96, val_frac=0.0, test_frac=0.3, progress=False)
    return out


def _record(data_dir: Path, cid: str, with_seed: bool) -> dict:
    """An evaluation case record as model/evaluate/run.py writes it (the fields rebuilding reads)."""
    label = json.loads((data_dir / "labels" / f"{cid}.json").read_text())
    structured = {k: label[k] for k in ("case_id", "modality", "findings", "tumour", "tumour_subtype", "context")}
    rec = {"id": cid, "modality": label["modality"], "source": f"phantom_{label['modality'].lower()}",
           "reference": label["reports"]["standard"], "truth": {"structured": structured}}  # fmt: skip
    if with_seed:
        rec["seed"] = seed_from_id(dataset_provenance(data_dir)["seed"], cid)
    return rec


def _png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("with_seed", [True, False])
def test_rebuilt_case_equals_the_generated_files(phantom_set, with_seed):
    result = {"name": "unit", "data": {"dir": "/nowhere", "dataset": dataset_provenance(phantom_set)}}
    assert result["data"]["dataset"]["seed"] == 7 and result["data"]["dataset"]["size"] == 96
    ids = sorted(p.stem for p in (phantom_set / "images").glob("*.png"))
    assert len(ids) == 7
    for cid in ids:
        rec = _record(phantom_set, cid, with_seed)
        rebuilt = rebuild_case(result, rec)
        on_disk = _png_pixels((phantom_set / "images" / f"{cid}.png").read_bytes())
        # bit for bit: the same 8-bit pixels, and the same PNG bytes
        assert np.array_equal(rebuilt.image, on_disk)
        assert rebuilt.png() == (phantom_set / "images" / f"{cid}.png").read_bytes()
        assert rebuilt.mask_png() == (phantom_set / "masks" / f"{cid}.png").read_bytes()
        label = json.loads((phantom_set / "labels" / f"{cid}.json").read_text())
        assert rebuilt.reports == label["reports"]
        assert rebuilt.reports["standard"] == rec["reference"]
        assert rebuilt.treatments == label["treatments"]
        assert rebuilt.truth.case_id == cid and not rebuilt.assumed


def test_wrong_seed_is_refused_not_shown(phantom_set):
    cid = "cxr_00001"
    rec = _record(phantom_set, cid, with_seed=False)
    wrong = {"name": "unit", "data": {"dataset": {"seed": 8, "size": 96}}}
    with pytest.raises(RebuildError, match=f"Case {cid} of unit could not be rebuilt"):
        rebuild_case(wrong, rec)


def test_not_a_phantom_says_what_to_do():
    case = {"id": "patient_17", "modality": "CXR", "source": "nih1000"}
    assert not rebuildable(case)
    with pytest.raises(RebuildError, match="data folder back"):
        rebuild_case({"name": "real"}, case)
    assert parse_case_id("ct_00012") == ("CT", 12) and parse_case_id("nih_1") is None


def _check_rebuilds(result: dict, picked: list[dict]) -> None:
    for case in picked:
        rebuilt = rebuild_case(result, case)  # raises if the truth differs from the recorded one
        assert rebuilt.reports["standard"] == case["reference"]
        assert rebuilt.image.shape == (256, 256) and rebuilt.image.dtype == np.uint8
        assert sorted(f.name for f in rebuilt.truth.findings if f.name != "tumour") == sorted(
            case["truth"]["findings"]
        )
        if case["modality"] == "CT":
            assert rebuilt.truth.tumour == case["truth"]["tumour"]


def test_shipped_result_rebuilds_every_case_it_lists():
    """assets/eval/phantom_test.json predates data.dataset: its cases rebuild from id + defaults."""
    result = json.loads(SHIPPED.read_text())
    cases = result["cases"]
    assert all(rebuildable(c) for c in cases)
    first = [next(c for c in cases if c["modality"] == m) for m in ("CXR", "CT")]
    _check_rebuilds(result, first + cases[-2:])


def test_shipped_result_rebuilds_its_ct_and_normal_cases():
    """Cases the severity-range change left alone (CT, normal chest X-rays) still rebuild from id + defaults."""
    result = json.loads(SHIPPED.read_text())
    cases = result["cases"]
    ct = [c for c in cases if c["modality"] == "CT"]
    normal = [c for c in cases if c["modality"] == "CXR" and not c["truth"]["findings"]]
    assert ct and normal
    _check_rebuilds(result, ct[:1] + ct[-1:] + normal[:2])
