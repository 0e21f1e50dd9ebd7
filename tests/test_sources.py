"""Source adapters on tiny fixtures made here, and on ../shared/data when present."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.generate import generate_dataset
from model.data.sources import (
    ClassFolderSource,
    NIHSource,
    PhantomSource,
    R2GenSource,
    Sample,
    build_sources,
    folder_class,
    hash_split,
    nih_finding_targets,
)
from model.types import FINDINGS, TREATMENTS, TUMOUR_CLASSES, TUMOUR_SUBTYPES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def _png(path: Path, size=(20, 20), mode="L", value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * len(mode)).save(path)


def F(name: str) -> int:
    return FINDINGS.index(name)


# ----------------------------------------------------------------------------------------------
# NIH


def test_nih_label_mapping():
    assert (nih_finding_targets("No Finding") == 0).all()
    t = nih_finding_targets("Effusion|Mass")
    assert t[F("pleural_effusion")] == 1 and t[F("nodule")] == 1 and t[F("cardiomegaly")] == 0
    t = nih_finding_targets("Infiltration")
    assert np.isnan(t[F("consolidation")]) and np.nansum(t) == 0 and np.isnan(t).sum() == 1
    t = nih_finding_targets("Infiltration|Pneumonia")
    assert t[F("consolidation")] == 1
    t = nih_finding_targets("Emphysema|Hernia")  # no counterpart: everything known negative
    assert (t == 0).all()


def test_nih_original_csv(tmp_path):
    root = tmp_path / "nih"
    rows = [
        ("00000001_000.png", "Cardiomegaly|Effusion", "1", "058Y", "M"),
        ("00000002_000.png", "No Finding", "2", "412", "F"),  # NIH has impossible ages
        ("00000003_000.png", "Infiltration", "3", "40", "F"),
        ("00000004_000.png", "Edema", "4", "70", "M"),  # image missing: skipped with a warning
    ]
    for name, *_ in rows[:2]:
        _png(root / "images_001" / "images" / name)
    _png(root / rows[2][0], mode="RGB")
    with (root / "Data_Entry_2017.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender"])
        w.writerows(rows)
    src = NIHSource(root / "Data_Entry_2017.csv", root, name="nih")
    with pytest.warns(UserWarning, match="1 images"):
        samples = src.all_samples()
    assert len(samples) == 3 and src.n_missing == 1
    by = {s.id: s for s in samples}
    a = by["nih:00000001_000"]
    assert a.modality == "CXR" and a.report_origin == "composed" and a.source == "nih"
    assert a.finding_targets[F("cardiomegaly")] == 1 and a.context.age == 58 and a.context.sex == "M"
    assert a.tumour_target == -1 and np.isnan(a.treatment_targets).all()
    assert set(a.reports) == {"brief", "standard", "detailed"} and a.report == a.reports["standard"]
    assert by["nih:00000002_000"].context.age is None
    assert all(s.split in ("train", "val", "test") for s in samples)
    # the patient id is used for the split only, never stored
    for s in samples:
        assert "patient" not in json.dumps(s.context.to_dict())
        assert not any("patient" in k for k in vars(s))


def test_nih1000_variant_folder_split(tmp_path):
    root = tmp_path / "nih1000"
    rows = []
    for i, (split, cls, labels) in enumerate(
        [
            ("train", "0_normal", "No Finding"),
            ("train", "1_abnormal", "Atelectasis"),
            ("valid", "1_abnormal", "Pneumothorax"),
        ]
        * 4
    ):
        rel = f"{split}/{cls}/{i:08d}_000.png"
        _png(root / rel, mode="RGB")
        rows.append([rel, f"{i:08d}_000.png", labels, str(100 + i), "61", "F", "PA"])
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "image_index", "finding_labels", "patient_id", "age", "sex", "view"])
        w.writerows(rows)
    src = NIHSource(root / "labels.csv", root, name="nih1000")
    assert len(src.samples("train")) == 8
    held = src.samples("val") + src.samples("test")
    assert len(held) == 4 and all("valid/" in s.id for s in held)
    assert src.samples("valid") == src.samples("val")
    assert all(s.finding_targets[F("pneumothorax")] == 1 for s in held)
    assert all(s.context.age == 61 and s.context.sex == "F" for s in held)


# ----------------------------------------------------------------------------------------------
# Class folders


def test_folder_class_names():
    assert folder_class("adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib") == ("malignant", "adenocarcinoma")
    assert folder_class("large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa") == ("malignant", "large_cell")
    assert folder_class("squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa") == ("malignant", "squamous")
    assert folder_class("normal") == ("none", None)
    assert folder_class("cats") is None


def test_class_folder_source(tmp_path):
    root = tmp_path / "ct"
    for split in ("train", "valid"):
        for cls in ("adenocarcinoma_left.lower.lobe_T2", "normal", "squamous.cell.carcinoma_x"):
            for j in range(3):
                _png(root / split / cls / f"{j:06d}.png", size=(30 + j, 30), mode="RGBA")
    _png(root / "train" / "mystery" / "x.png")
    with pytest.warns(UserWarning, match="mystery"):
        src = ClassFolderSource(root, name="chest_ct")
        train = src.samples("train")
    assert len(train) == 9 and len(src.samples("val")) + len(src.samples("test")) == 9
    ids = [s.id for s in src.all_samples()]
    assert len(set(ids)) == len(ids)  # same file names in different class folders stay distinct
    for s in train:
        assert s.modality == "CT" and s.report_origin == "composed" and s.report
        assert np.isnan(s.finding_targets).all() and np.isnan(s.treatment_targets).all()
        if "normal" in s.id:
            assert s.tumour_target == TUMOUR_CLASSES.index("none") and s.subtype_target == -1
        else:
            assert s.tumour_target == TUMOUR_CLASSES.index("malignant")
            assert TUMOUR_SUBTYPES[s.subtype_target] in ("adenocarcinoma", "squamous")


def test_class_folders_without_split_use_a_stable_hash(tmp_path):
    for j in range(30):
        _png(tmp_path / "normal" / f"{j}.png", size=(8, 8))
    a = ClassFolderSource(tmp_path, name="x").counts()
    assert a == ClassFolderSource(tmp_path, name="x").counts() and sum(a.values()) == 30
    assert hash_split("abc") == hash_split("abc")


# ----------------------------------------------------------------------------------------------
# R2Gen + phantoms


def test_r2gen_source(tmp_path):
    for name in ("a_0.png", "a_1.png", "b_0.png"):
        _png(tmp_path / "images" / name)
    ann = {
        "train": [
            {"id": "a", "report": "Cardiomegaly. No pleural effusion.", "image_path": ["a_0.png", "a_1.png"],
             "split": "train"},
        ],
        "val": [{"id": "b", "report": "", "image_path": ["b_0.png"], "split": "val"}],
        "test": [],
    }  # fmt: skip
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    src = R2GenSource(tmp_path / "annotation.json", tmp_path / "images", name="iu_xray")
    (a,) = src.samples("train")
    assert a.id == "iu_xray:a" and a.report_origin == "written" and a.image_path.endswith("a_0.png")
    assert a.finding_targets[F("cardiomegaly")] == 1 and a.finding_targets[F("pleural_effusion")] == 0
    assert a.reports == {"standard": a.report}
    (b,) = src.samples("val")
    assert b.report is None and b.report_origin == "none" and np.isnan(b.finding_targets).all()


def test_phantom_source_and_build_sources(tmp_path):
    generate_dataset(tmp_path / "ph", 6, 4, seed=0, size=32, val_frac=0.2, test_frac=0.2, progress=False)
    src = PhantomSource(tmp_path / "ph")
    samples = src.all_samples()
    assert len(samples) == 10 and sum(src.counts().values()) == 10
    for s in samples:
        assert isinstance(s, Sample) and s.truth is not None and s.report_origin == "written"
        assert s.treatment_targets.shape == (len(TREATMENTS),) and not np.isnan(s.treatment_targets).any()
        assert Path(s.image_path).is_file() and Path(s.mask_path).is_file()
        if s.modality == "CXR":
            assert s.source == "phantom_cxr" and s.tumour_target == -1
            assert (s.finding_targets == s.truth.finding_vector()).all()
        else:
            assert s.source == "phantom_ct" and np.isnan(s.finding_targets).all()
            assert TUMOUR_CLASSES[s.tumour_target] == s.truth.tumour
    # the default mix: phantoms + every recognised set under a shared folder
    shared = tmp_path / "shared"
    for j in range(2):
        _png(shared / "chest_ct" / "train" / "normal" / f"{j}.png")
    assert [type(s).__name__ for s in build_sources(tmp_path / "ph", shared)] == [
        "PhantomSource",
        "ClassFolderSource",
    ]
    assert len(build_sources(tmp_path / "ph", tmp_path / "absent")) == 1
    with pytest.raises(FileNotFoundError, match="generate-data"):
        PhantomSource(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------
# The real shared sets


@needs_shared
def test_shared_nih1000():
    src = NIHSource(SHARED / "nih1000" / "labels.csv", SHARED / "nih1000", name="nih1000")
    samples = src.all_samples()
    assert len(samples) == 800 and src.n_missing == 0
    assert len(src.samples("train")) == 600
    pos = np.nansum([s.finding_targets for s in samples], axis=0)
    assert pos[F("pleural_effusion")] >= 100 and pos[F("cardiomegaly")] >= 50
    assert all(s.report for s in samples[:20])


@needs_shared
def test_shared_chest_ct():
    src = ClassFolderSource(SHARED / "chest_ct")
    samples = src.all_samples()
    assert len(samples) == 685 and len(src.samples("train")) == 613
    classes = {TUMOUR_CLASSES[s.tumour_target] for s in samples}
    assert classes == {"none", "malignant"}
    assert {TUMOUR_SUBTYPES[s.subtype_target] for s in samples if s.subtype_target >= 0} == set(
        TUMOUR_SUBTYPES
    )


@needs_shared
def test_build_sources_finds_the_shared_sets(tmp_path):
    names = [s.name for s in build_sources(None, SHARED)]
    assert "nih1000" in names and "chest_ct" in names


# ----------------------------------------------------------------------------------------------
# Patient-level splits and cleaning (issue 11)


def test_split_by_patient_moves_whole_patients():
    from model.data.sources import patient_key, split_by_patient

    def s(i, split, patient):
        return Sample(f"x:{i}", split, "CXR", "x", None, group=patient_key("x", patient))

    samples = [s(0, "train", "1"), s(1, "val", "1"), s(2, "test", "1"), s(3, "val", "2"), s(4, "test", "2"),
               s(5, "test", "3"), Sample("x:6", "val", "CXR", "x", None)]  # fmt: skip
    moved = split_by_patient(samples)
    assert [x.split for x in samples[:3]] == ["train"] * 3  # the training folder wins
    assert samples[3].split == samples[4].split in ("val", "test")  # held-out patient: one split
    assert samples[5].split == "test" and samples[6].split == "val"  # untouched
    assert moved == 3
    # the key is stable, source-specific and not the id
    assert (
        patient_key("x", "1") == patient_key("x", " 1 ") != patient_key("y", "1")
        and patient_key("x", "") is None
    )
    assert "1" != patient_key("x", "1") and len(patient_key("x", "1")) == 16


def test_raw_sources_keep_the_collection_split(tmp_path):
    # clean=False (the default outside build_sources) is the collection as shipped: what audit-data audits
    root = tmp_path / "ct"
    for split in ("train", "valid"):
        _png(root / split / "normal" / "same.png", value=200)
    raw = ClassFolderSource(root, name="ct")
    assert len(raw.all_samples()) == 2 and raw.cleaning is None
    clean = ClassFolderSource(root, name="ct", clean=True)
    (kept,) = clean.all_samples()
    assert kept.split == "train" and clean.cleaning["before"]["train"] == 1
    assert clean.cleaning["after"] == {"train": 1}


@needs_shared
def test_shared_sets_as_the_pipeline_uses_them():
    by = {s.name: s for s in build_sources(None, SHARED)}
    nih = by["nih1000"].all_samples()
    splits_of: dict = {}
    for s in nih:
        splits_of.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())  # NIH split by patient
    assert len(nih) == 800 and len(splits_of) == 221
    ct = by["chest_ct"]
    assert 500 < len(ct.all_samples()) < 685 and ct.cleaning["dropped"]  # repeats dropped
    assert len(ct.samples("test")) > 0 and len(ct.samples("val")) > 0


def test_r2gen_broad_words_make_a_finding_unknown_not_negative(tmp_path):
    from model.data.sources import report_finding_targets

    t, _ = report_finding_targets(
        "Right basilar opacity. Mild pulmonary vascular congestion. No pneumothorax."
    )
    assert np.isnan(t[F("consolidation")]) and np.isnan(t[F("edema")])  # maybe: unknown, not 0
    assert t[F("pneumothorax")] == 0 and t[F("cardiomegaly")] == 0  # not mentioned: negative
    t, _ = report_finding_targets("Right lower lobe consolidation. No focal airspace opacity elsewhere.")
    assert t[F("consolidation")] == 1
    t, _ = report_finding_targets("Calcified granuloma. No nodule or mass.")
    assert t[F("nodule")] == 0  # an explicit negative wins over the broad word
