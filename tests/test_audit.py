"""Data audit on tiny synthetic sets with planted duplicates, patients and a shortcut (and on ../shared/data)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.cli import main as cli
from model.data.audit import (
    NEAR_CORR,
    NEAR_K,
    AuditConfig,
    audit_samples,
    audit_source,
    deduplicate,
    fingerprint_pixels,
    fingerprint_samples,
    phash,
    summary,
)
from model.data.generate import generate_dataset
from model.data.sources import ClassFolderSource, NIHSource, build_sources, nih_patient_from_name, open_source

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def smooth_image(seed: int, size: int = 48, lo: float = 0.1, hi: float = 0.9) -> np.ndarray:
    """A distinct smooth 'scan': an 6x6 random grid upsampled (its low frequencies are its own)."""
    rng = np.random.default_rng(seed)
    grid = Image.fromarray(rng.random((6, 6)).astype(np.float32), mode="F")
    arr = np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    arr = (arr - arr.min()) / (arr.max() - arr.min() + 1e-9)
    return lo + (hi - lo) * arr


def save(path: Path, arr: np.ndarray, mode: str = "L", fmt: str = "PNG", quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), mode="L").convert(mode)
    img.save(path, fmt, **({"quality": quality} if fmt == "JPEG" else {}))


# ----------------------------------------------------------------------------------------------
# Fingerprints


def test_exact_hash_is_of_decoded_pixels_and_phash_tolerates_reencoding(tmp_path):
    a = smooth_image(1)
    save(tmp_path / "a.png", a)
    save(tmp_path / "a_rgba.png", a, mode="RGBA")  # same pixels, other colour mode
    save(tmp_path / "a.jpg", np.clip(a * 1.1 + 0.03, 0, 1), fmt="JPEG", quality=70)  # brighter, re-encoded
    save(tmp_path / "b.png", smooth_image(2))
    from model.data.imaging import load_study_path

    fp = {
        n: fingerprint_pixels(load_study_path(tmp_path / n).pixels)
        for n in ("a.png", "a_rgba.png", "a.jpg", "b.png")
    }
    assert fp["a.png"].sha256 == fp["a_rgba.png"].sha256
    assert fp["a.png"].sha256 != fp["a.jpg"].sha256
    dist = lambda x, y: bin(fp[x].phash ^ fp[y].phash).count("1")  # noqa: E731
    corr = lambda x, y: float(fp[x].thumb @ fp[y].thumb)  # noqa: E731
    assert dist("a.png", "a.jpg") <= NEAR_K and corr("a.png", "a.jpg") >= NEAR_CORR
    assert not (dist("a.png", "b.png") <= NEAR_K and corr("a.png", "b.png") >= NEAR_CORR)
    # 64 bits, and a different image gives a different hash
    assert 0 < phash(a) < 2**64 and phash(a) != phash(smooth_image(3))


# ----------------------------------------------------------------------------------------------
# A class-folder set with planted copies and a brightness shortcut


def planted_ct(root: Path, shortcut: bool = True, n: int = 24) -> dict:
    """train/valid class folders: distinct images + planted exact, near and within-split copies."""
    lo, hi = (0.45, 0.95) if shortcut else (0.05, 0.55)  # normals bright (the chest_ct shortcut) or not
    for i in range(n):
        save(root / "train" / "normal" / f"n{i}.png", smooth_image(100 + i, lo=lo, hi=hi))
        save(root / "train" / "adenocarcinoma_x" / f"a{i}.png", smooth_image(200 + i, lo=0.05, hi=0.55))
    for i in range(6):
        save(root / "valid" / "normal" / f"vn{i}.png", smooth_image(300 + i, lo=lo, hi=hi))
        save(root / "valid" / "adenocarcinoma_x" / f"va{i}.png", smooth_image(400 + i, lo=0.05, hi=0.55))
    # planted: an exact copy of a train normal in valid (RGBA: same decoded pixels)
    save(root / "valid" / "normal" / "copy_of_n0.png", smooth_image(100, lo=lo, hi=hi), mode="RGBA")
    # a near copy (re-windowed, JPEG) of a train normal in valid
    near = np.clip(smooth_image(101, lo=lo, hi=hi) * 0.9 + 0.05, 0, 1)
    save(root / "valid" / "normal" / "near_n1.jpg", near, fmt="JPEG", quality=75)
    # an exact repeat inside train
    save(root / "train" / "adenocarcinoma_x" / "a0 - Copy.png", smooth_image(200, lo=0.05, hi=0.55))
    # one image under two labels
    save(root / "train" / "normal" / "both.png", smooth_image(999))
    save(root / "train" / "adenocarcinoma_x" / "both.png", smooth_image(999))
    return {"n_train": 2 * n + 3, "n_valid": 14}


def test_audit_finds_planted_copies_and_the_shortcut(tmp_path):
    planted_ct(tmp_path / "ct")
    src = ClassFolderSource(tmp_path / "ct", name="ct")
    rep = audit_source(src, AuditConfig())
    d = rep.duplicates
    assert d["exact"]["cross_split_groups"] == 1  # copy_of_n0
    assert d["exact"]["within_split_extra_copies"].get("train") == 2  # "a0 - Copy" and both.png
    assert d["exact"]["label_conflicts"] == 1  # both.png
    assert sum(d["near"]["pairs_across_splits"].values()) == 1  # near_n1.jpg
    held = d["heldout_with_copy_in_earlier_split"]
    assert held["val"]["images"] + held["test"]["images"] == 2
    assert d["images_with_copy_in_other_split"] == 4  # both copies of both pairs
    assert rep.patients == {"available": False}
    s = rep.shortcut
    assert s["warning"] and s["accuracy_intensity"] >= 0.9 and s["majority_baseline"] < 0.6
    assert any("image statistics alone" in w for w in rep.warnings)
    assert any("appear identically" in w for w in rep.warnings)
    json.dumps(rep.to_dict())  # serialisable as it is (CLI --json, model card)


def test_no_shortcut_no_warning(tmp_path):
    planted_ct(tmp_path / "ct", shortcut=False)
    rep = audit_source(ClassFolderSource(tmp_path / "ct", name="ct"))
    assert not rep.shortcut["warning"] and rep.shortcut["error_reduction"] < 0.5
    assert not any("image statistics" in w for w in rep.warnings)


def test_cleaned_source_keeps_one_copy_in_train(tmp_path):
    planted_ct(tmp_path / "ct")
    raw = ClassFolderSource(tmp_path / "ct", name="ct")
    clean = ClassFolderSource(tmp_path / "ct", name="ct", clean=True)
    kept = clean.all_samples()
    ids = {s.id for s in kept}
    assert "ct:train/normal/n0" in ids and "ct:train/normal/n1" in ids  # the train copies stay
    assert not any("copy_of_n0" in i or "near_n1" in i for i in ids)  # the leaked ones go
    assert sum(i.split("/")[-1].startswith("a0") for i in ids) == 1  # one of the two train repeats
    assert not any(i.endswith("/both") for i in ids)  # conflicting labels: both dropped
    assert len(kept) == len(raw.all_samples()) - 5
    c = clean.cleaning
    assert (
        c["dropped"] == {"train:exact": 1, "train:label_conflict": 2, **c["dropped"]}
        and sum(c["dropped"].values()) == 5
    )
    rep = audit_source(clean)
    assert rep.duplicates["images_with_copy_in_other_split"] == 0
    assert rep.duplicates["exact"]["extra_copies"] == 0 and rep.cleaning == c


def test_deduplicate_keeps_unreadable_and_orders_by_split():
    from model.data.sources import Sample

    a, b = smooth_image(5), smooth_image(6)
    samples = [Sample(f"s{i}", sp, "CT", "x", None) for i, sp in enumerate(["test", "val", "train", "train"])]
    fps = [fingerprint_pixels(a), fingerprint_pixels(a), fingerprint_pixels(a), None]
    kept, info = deduplicate(samples, fps)
    assert [s.id for s in kept] == ["s2", "s3"]  # the train copy wins; the unreadable one is kept
    assert info["dropped"] == {"test:exact": 1, "val:exact": 1}
    fps = [
        fingerprint_pixels(b),
        fingerprint_pixels(a),
        fingerprint_pixels(np.clip(a * 0.8 + 0.1, 0, 1)),
        None,
    ]
    kept, info = deduplicate(samples, fps)
    assert [s.id for s in kept] == ["s0", "s2", "s3"] and info["dropped"] == {"val:near": 1}


# ----------------------------------------------------------------------------------------------
# Patients (NIH file names carry them)


def nih_set(root: Path) -> None:
    """nih1000 layout; patient 7 has images in train and valid, patient 9 only in valid (3 images)."""
    rows = []
    names = [("train", 1, 0), ("train", 2, 0), ("train", 7, 0), ("valid", 7, 1), ("valid", 7, 2)]
    names += [("valid", 9, k) for k in range(3)] + [("train", p, 0) for p in range(20, 40)]
    names += [("valid", p, 0) for p in range(40, 50)]
    for i, (split, patient, k) in enumerate(names):
        rel = f"{split}/0_normal/{patient:08d}_{k:03d}.png"
        save(root / rel, smooth_image(1000 + i, size=32), mode="RGB")
        rows.append(
            [rel, Path(rel).name, "No Finding" if i % 2 else "Effusion", str(patient), "50", "M", "PA"]
        )
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "image_index", "finding_labels", "patient_id", "age", "sex", "view"])
        w.writerows(rows)


def test_nih_patient_from_file_name():
    assert nih_patient_from_name("00000001_000.png") == "1"
    assert nih_patient_from_name("train/0_normal/00012345_007.png") == "12345"
    assert nih_patient_from_name("scan.png") == ""


def test_patient_leak_found_and_cleaned(tmp_path):
    nih_set(tmp_path / "nih")
    raw = NIHSource(tmp_path / "nih" / "labels.csv", tmp_path / "nih", name="nih")
    rep = audit_source(raw)
    assert rep.patients["available"] and rep.patients["patients"] == 34
    assert rep.patients["patients_in_several_splits"] >= 1  # patient 7 at least
    assert any("split by patient" in w for w in rep.warnings)
    clean = NIHSource(tmp_path / "nih" / "labels.csv", tmp_path / "nih", name="nih", clean=True)
    samples = clean.all_samples()
    assert audit_source(clean).patients["patients_in_several_splits"] == 0
    p7 = [s for s in samples if "/00000007_" in s.id]
    assert len(p7) == 3 and {s.split for s in p7} == {"train"}  # the training folder wins
    assert len({s.split for s in samples if "/00000009_" in s.id}) == 1
    assert clean.cleaning["patients_moved_images"] >= 2
    # the group key is a hash, never the patient id itself
    assert all(s.group and s.group not in ("7", "00000007") and len(s.group) == 16 for s in samples)


def test_patient_from_file_name_when_csv_has_no_column(tmp_path):
    root = tmp_path / "nih"
    for name in ("00000003_000.png", "00000003_001.png"):
        save(root / name, smooth_image(len(name)), mode="RGB")
    with (root / "Data_Entry_2017.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels"])
        w.writerows([["00000003_000.png", "No Finding"], ["00000003_001.png", "Effusion"]])
    src = open_source(root)
    assert isinstance(src, NIHSource)
    a, b = src.all_samples()
    assert a.group == b.group is not None and a.split == b.split


# ----------------------------------------------------------------------------------------------
# Source detection, phantoms, the CLI


def test_open_source_detects_every_layout(tmp_path):
    generate_dataset(tmp_path / "ph", 4, 2, seed=0, size=32, val_frac=0.25, test_frac=0.25, progress=False)
    planted_ct(tmp_path / "ct", n=3)
    nih_set(tmp_path / "nih")
    ann = {"train": [{"id": "a", "report": "No effusion.", "image_path": ["a.png"], "subject_id": 5}]}
    save(tmp_path / "r2/a.png", smooth_image(0))
    (tmp_path / "r2/annotation.json").write_text(json.dumps(ann))
    kinds = {p: type(open_source(tmp_path / p)).__name__ for p in ("ph", "ct", "nih", "r2")}
    assert kinds == {
        "ph": "PhantomSource",
        "ct": "ClassFolderSource",
        "nih": "NIHSource",
        "r2": "R2GenSource",
    }
    assert type(open_source(tmp_path / "nih" / "labels.csv")).__name__ == "NIHSource"
    assert type(open_source(tmp_path / "r2" / "annotation.json")).__name__ == "R2GenSource"
    assert open_source(tmp_path / "r2").all_samples()[0].group is not None  # MIMIC-style subject_id
    assert open_source(tmp_path / "nothing") is None
    # the pipeline's mix cleans real sets, never phantoms
    srcs = build_sources(tmp_path / "ph", tmp_path)
    assert len(srcs) == 5  # the phantom set twice: as data_dir and found under the shared folder
    assert all(s.clean == (type(s).__name__ != "PhantomSource") for s in srcs)
    assert not any(s.clean for s in build_sources(None, tmp_path, clean=False))


def test_phantom_audit_has_no_exact_copies(tmp_path):
    generate_dataset(tmp_path / "ph", 12, 8, seed=0, size=48, val_frac=0.25, test_frac=0.25, progress=False)
    rep = audit_source(open_source(tmp_path / "ph"))
    # (phantoms share one template, so some distinct cases pass as near copies: see audit.py)
    assert rep.n_images == 20 and rep.splits == {"train": 10, "val": 5, "test": 5}
    assert rep.duplicates["exact"]["groups"] == 0 and rep.patients == {"available": False}
    assert not any("treat them as leaked" in w for w in rep.warnings)
    assert "summary" not in summary(rep) and summary(rep)["images"] == 20


def test_unreadable_image_is_reported_not_fatal(tmp_path):
    planted_ct(tmp_path / "ct", n=3)
    (tmp_path / "ct" / "train" / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    src = ClassFolderSource(tmp_path / "ct", name="ct")
    fps, errors = fingerprint_samples(src.all_samples())
    assert len(errors) == 1 and "broken" in errors[0]["id"] and fps.count(None) == 1
    rep = audit_samples(src.all_samples(), "ct")
    assert len(rep.unreadable) == 1 and any("could not be read" in w for w in rep.warnings)


def test_cli_text_and_json(tmp_path, capsys):
    planted_ct(tmp_path / "data" / "ct")
    nih_set(tmp_path / "data" / "nih")
    out = tmp_path / "audit.json"
    assert cli(["audit-data", str(tmp_path / "data"), "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "== ct (ClassFolderSource)" in text and "== nih (NIHSource)" in text
    assert "shortcut probe" in text and "WARNING" in text and "in more than one split" in text
    doc = json.loads(out.read_text())
    assert doc["split"] == "raw" and [r["source"] for r in doc["sources"]] == ["ct", "nih"]
    assert cli(["audit-data", str(tmp_path / "data" / "ct"), "--cleaned", "--json", "-", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["split"] == "cleaned" and doc["sources"][0]["duplicates"]["images_with_copy_in_other_split"] == 0
    )
    assert cli(["audit-data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Error" not in err
    (tmp_path / "empty").mkdir()
    assert cli(["audit-data", str(tmp_path / "empty")]) == 2
    assert "no dataset found" in capsys.readouterr().err


def test_pipeline_records_the_audit_in_model_cards(tmp_path):
    from model.commands import pipeline
    from model.data.audit import audit_real_sets

    planted_ct(tmp_path / "shared" / "chest_ct")
    nih_set(tmp_path / "shared" / "nih1000")
    sets = audit_real_sets(tmp_path / "shared")
    assert set(sets) == {"chest_ct", "nih1000"} and set(sets["chest_ct"]) == {"raw", "used"}
    assert sets["chest_ct"]["raw"]["images_with_copy_in_other_split"] == 4
    assert sets["chest_ct"]["used"]["images_with_copy_in_other_split"] == 0
    assert sets["chest_ct"]["used"]["cleaning"]["dropped"]  # what was dropped is on record
    assert sets["nih1000"]["raw"]["patients_in_several_splits"] >= 1
    assert sets["nih1000"]["used"]["patients_in_several_splits"] == 0
    assert sets["chest_ct"]["used"]["shortcut_probe"]["warning"]  # brightness still separates: a caveat
    assert pipeline._audit_real(None) == {}
    for name in ("teacher", "student"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_card.json").write_text(json.dumps({"model_id": name}))
    pipeline._record_audit({"teacher": tmp_path / "teacher", "student": tmp_path / "student",
                            "student_nokd": tmp_path / "not_trained"}, sets)  # fmt: skip
    card = json.loads((tmp_path / "teacher" / "model_card.json").read_text())
    assert card["model_id"] == "teacher" and card["data_audit"] == json.loads(json.dumps(sets))


def test_jpeg_roundtrip_helper_is_lossy():
    # guard for the planted near copy: JPEG really changes the bytes (so it is not an exact copy)
    buf = io.BytesIO()
    Image.fromarray((smooth_image(1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=75)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
    assert np.abs(back - smooth_image(1)).max() > 0


# ----------------------------------------------------------------------------------------------
# The real shared sets


@needs_shared
@pytest.mark.shared_data
def test_shared_sets_raw_leak_and_cleaned_do_not():
    raw = {s.name: audit_source(s) for s in build_sources(None, SHARED, clean=False)}
    ct, nih = raw["chest_ct"], raw["nih1000"]
    assert ct.duplicates["exact"]["cross_split_groups"] > 0 and ct.shortcut["warning"]
    test_normals = ct.duplicates["heldout_with_copy_in_earlier_split"]["test"]["by_label"]["normal"]
    hit, of = map(int, test_normals.split("/"))
    assert hit / of > 0.5  # most held-out normals are copies of training normals
    assert nih.patients["patients_in_several_splits"] > 0
    for src in build_sources(None, SHARED):  # what the pipeline uses
        rep = audit_source(src)
        assert rep.duplicates["images_with_copy_in_other_split"] == 0, src.name
        assert rep.patients.get("patients_in_several_splits", 0) == 0, src.name
        assert src.cleaning["after"] == rep.splits
