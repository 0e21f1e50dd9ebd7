"""`meddistill generate-data`: files, splits, masks, determinism, refusal to clobber."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from model.cli import main as cli_main
from model.data.generate import (
    assign_splits,
    case_seed,
    decode_masks,
    encode_masks,
    generate_dataset,
)
from model.types import FINDINGS, TREATMENTS, CaseTruth

N_CXR, N_CT, SIZE = 8, 4, 64


@pytest.fixture
def phantom_set(tmp_path):
    out = tmp_path / "ph"
    rc = cli_main(
        ["generate-data", "--out", str(out), "--n-cxr", str(N_CXR), "--n-ct", str(N_CT), "--seed", "3"]
        + ["--size", str(SIZE), "--val-frac", "0.25", "--test-frac", "0.25", "--quiet"]
    )
    assert rc == 0
    return out


def test_files_and_annotation(phantom_set):
    ann = json.loads((phantom_set / "annotation.json").read_text())
    assert set(ann) == {"train", "val", "test"}
    entries = [e for split in ann.values() for e in split]
    assert len(entries) == N_CXR + N_CT
    assert len({e["id"] for e in entries}) == len(entries)
    # exact split sizes per modality: round(8 * .25) = 2 and round(4 * .25) = 1
    for split, entries_ in ann.items():
        assert all(e["split"] == split for e in entries_)
        if split != "train":
            assert sum(e["modality"] == "CXR" for e in entries_) == 2
            assert sum(e["modality"] == "CT" for e in entries_) == 1
    for e in entries:
        assert set(e) >= {"id", "report", "image_path", "split", "modality", "reports"}
        assert e["report"] == e["reports"]["standard"] and e["report"]
        img = Image.open(phantom_set / e["image_path"][0])
        assert img.mode == "L" and img.size == (SIZE, SIZE)
        assert Image.open(phantom_set / "masks" / f"{e['id']}.png").mode == "L"
        label = json.loads((phantom_set / "labels" / f"{e['id']}.json").read_text())
        truth = CaseTruth.from_dict({k: v for k, v in label.items() if k not in ("treatments", "reports")})
        assert truth.case_id == e["id"] and truth.modality == e["modality"]
        assert all(t["name"] in TREATMENTS and t["reason"] for t in label["treatments"])
        assert label["reports"] == e["reports"]
    info = json.loads((phantom_set / "dataset.json").read_text())
    assert info["complete"] and info["seed"] == 3 and info["n_cxr"] == N_CXR and info["n_ct"] == N_CT
    assert info["generator"] and info["version"] and info["created"]


def test_masks_decode_to_the_findings(phantom_set):
    for label_path in sorted((phantom_set / "labels").glob("*.json")):
        label = json.loads(label_path.read_text())
        bitmask = np.asarray(Image.open(phantom_set / "masks" / f"{label['case_id']}.png"))
        decoded = decode_masks(bitmask, label["modality"])
        if label["modality"] == "CXR":
            assert set(decoded) == {f["name"] for f in label["findings"]}
            assert set(decoded) <= set(FINDINGS)
        else:
            assert set(decoded) == ({"tumour"} if label["tumour"] != "none" else set())


def test_deterministic_for_a_seed(tmp_path, phantom_set):
    again = tmp_path / "again"
    assert (
        cli_main(
            ["generate-data", "--out", str(again), "--n-cxr", str(N_CXR), "--n-ct", str(N_CT), "--seed", "3"]
            + ["--size", str(SIZE), "--val-frac", "0.25", "--test-frac", "0.25", "--quiet"]
        )
        == 0
    )
    for sub in ("labels", "images", "masks"):
        names = sorted(p.name for p in (phantom_set / sub).iterdir())
        assert names == sorted(p.name for p in (again / sub).iterdir())
        for name in names:
            assert (phantom_set / sub / name).read_bytes() == (again / sub / name).read_bytes(), name
    assert (phantom_set / "annotation.json").read_bytes() == (again / "annotation.json").read_bytes()


def test_other_seed_differs_and_cases_do_not_depend_on_counts():
    assert case_seed(0, "CXR", 5) != case_seed(1, "CXR", 5)
    assert case_seed(0, "CXR", 5) != case_seed(0, "CT", 5)
    s = assign_splits(100, 0, "CXR", 0.1, 0.2)
    assert s.count("val") == 10 and s.count("test") == 20
    assert s == assign_splits(100, 0, "CXR", 0.1, 0.2)
    with pytest.raises(ValueError):
        assign_splits(4, 0, "CXR", 0.6, 0.6)


def test_mask_codec_roundtrip():
    rng = np.random.default_rng(0)
    masks = {f: rng.random((8, 8)) < 0.3 for f in FINDINGS}
    back = decode_masks(encode_masks(masks, "CXR", (8, 8)), "CXR")
    assert set(back) == set(masks) and all((back[k] == masks[k]).all() for k in masks)
    ct = decode_masks(encode_masks({"tumour": masks["nodule"]}, "CT", (8, 8)), "CT")
    assert (ct["tumour"] == masks["nodule"]).all()
    with pytest.raises(ValueError):
        encode_masks({"tumour": masks["nodule"]}, "CXR", (8, 8))


def test_refuses_foreign_folder_and_replaces_its_own(tmp_path, capsys):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.docx").write_text("precious")
    rc = cli_main(["generate-data", "--out", str(user), "--n-cxr", "2", "--n-ct", "0", "--quiet"])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["thesis.docx"]
    # --overwrite writes beside the user's file without deleting it
    args = ["--n-cxr", "2", "--n-ct", "1", "--size", "32", "--val-frac", "0", "--test-frac", "0", "--quiet"]
    assert cli_main(["generate-data", "--out", str(user), *args, "--overwrite"]) == 0
    assert (user / "thesis.docx").read_text() == "precious"
    # a previous phantom set is replaced without --overwrite, stale cases removed
    ph = tmp_path / "ph"
    assert cli_main(["generate-data", "--out", str(ph), *args]) == 0
    args[1] = "1"
    assert cli_main(["generate-data", "--out", str(ph), *args]) == 0
    assert len(list((ph / "images").iterdir())) == 2


def test_workers_give_the_same_bytes(tmp_path):
    one = generate_dataset(tmp_path / "one", 3, 2, seed=5, size=48, progress=False)
    two = generate_dataset(tmp_path / "two", 3, 2, seed=5, size=48, workers=2, progress=False)
    assert one["counts"] == two["counts"]
    for sub in ("labels", "images", "masks"):
        for p in sorted((tmp_path / "one" / sub).iterdir()):
            assert p.read_bytes() == (tmp_path / "two" / sub / p.name).read_bytes()
