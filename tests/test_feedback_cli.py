"""`meddistill feedback list|export|import` and `meddistill models list|promote|rollback` (issue 14).

An export must be a dataset the existing R2Gen adapter reads (``open_source`` -> ``R2GenSource``), and
importing it must give back the same reviews and pixels, once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from review_builders import data_dir, db_url, make_pixels, make_review  # noqa: F401  (fixtures)

from model.cli import main as cli
from model.review import ModelVersion, ReviewStore, now_iso, pixel_sha256


def _store_args(url: str, folder: Path) -> list[str]:
    return ["--db-url", url, "--data-dir", str(folder)]


@pytest.fixture
def filled(db_url, data_dir):  # noqa: F811
    """A store with 6 CXR reviews, one CT review, and a second review of the first image."""
    with ReviewStore.open(db_url, data_dir=data_dir) as store:
        for i in range(6):
            px = make_pixels(i)
            store.save_review(make_review(px, text=f"Small left pleural effusion, case {i}."), px)
        ct = make_pixels(99)
        store.save_review(
            make_review(ct, modality="CT", findings=(), tumour="malignant", report_text="Spiculated mass."),
            ct,
        )
        first = make_pixels(0)
        store.save_review(
            make_review(
                first, text="Moderate left pleural effusion.", created_at="2099-01-01T00:00:00+00:00"
            ),
            first,
        )
    return db_url, data_dir


def test_export_is_read_by_the_r2gen_adapter(filled, tmp_path, capsys):
    from model.data.imaging import load_study_path
    from model.data.sources import R2GenSource, open_source

    url, folder = filled
    out = tmp_path / "export"
    assert cli(["feedback", "export", str(out), *_store_args(url, folder)]) == 0
    assert "wrote 7 review(s) and 7 image(s)" in capsys.readouterr().out
    annotation = json.loads((out / "annotation.json").read_text())
    assert set(annotation) == {"train", "val", "test"}
    entries = [e for split in annotation.values() for e in split]
    assert len(entries) == 7  # one per image: the latest review of image 0
    for e in entries:
        assert {"id", "image_path", "report", "split", "modality", "review"} <= set(e)
        png = out / e["image_path"][0]
        assert png.is_file() and png.stem == e["review"]["image_sha256"]

    source = open_source(out)
    assert isinstance(source, R2GenSource)
    samples = source.all_samples()
    assert len(samples) == 7
    by_report = {s.report: s for s in samples}
    latest = by_report["Moderate left pleural effusion."]  # the 2099 review replaced the first one
    assert "Small left pleural effusion, case 0." not in by_report
    assert latest.modality == "CXR" and latest.finding_targets[1] == 1.0  # pleural_effusion, from the labeler
    assert by_report["Spiculated mass."].modality == "CT"
    study = load_study_path(latest.image_path)
    assert study.pixels.shape == make_pixels(0).shape


def test_export_all_reviews_and_by_modality(filled, tmp_path):
    url, folder = filled
    assert cli(["feedback", "export", str(tmp_path / "all"), "--all-reviews", *_store_args(url, folder)]) == 0
    all_entries = [
        e for v in json.loads((tmp_path / "all" / "annotation.json").read_text()).values() for e in v
    ]
    assert len(all_entries) == 8 and len({e["id"] for e in all_entries}) == 8
    assert (
        len({e["split"] for e in all_entries if e["review"]["image_sha256"] == pixel_sha256(make_pixels(0))})
        == 1
    )
    assert (
        cli(["feedback", "export", str(tmp_path / "ct"), "--modality", "CT", *_store_args(url, folder)]) == 0
    )
    ct = [e for v in json.loads((tmp_path / "ct" / "annotation.json").read_text()).values() for e in v]
    assert [e["modality"] for e in ct] == ["CT"]


def test_import_round_trip_is_idempotent(filled, tmp_path, capsys):
    url, folder = filled
    out = tmp_path / "export"
    assert cli(["feedback", "export", str(out), "--all-reviews", *_store_args(url, folder)]) == 0
    other = tmp_path / "other"
    other_url = f"sqlite:///{other / 'meddistill.sqlite'}"
    capsys.readouterr()
    assert cli(["feedback", "import", str(out), *_store_args(other_url, other)]) == 0
    assert "imported 8 new review(s); 0 already" in capsys.readouterr().out
    assert cli(["feedback", "import", str(out / "annotation.json"), *_store_args(other_url, other)]) == 0
    assert "imported 0 new review(s); 8 already" in capsys.readouterr().out

    with ReviewStore.open(url, data_dir=folder) as a, ReviewStore.open(other_url, data_dir=other) as b:
        assert b.count() == 8
        for ra in a.list_reviews():
            rb = b.get(ra.id)
            assert rb is not None and rb.to_dict() == ra.to_dict()
            assert np.array_equal(a.load_pixels(ra.image_sha256), b.load_pixels(rb.image_sha256))
        assert b.integrity_check() == []


def test_import_skips_entries_it_cannot_trust(filled, tmp_path, capsys):
    url, folder = filled
    out = tmp_path / "export"
    assert cli(["feedback", "export", str(out), *_store_args(url, folder)]) == 0
    annotation = json.loads((out / "annotation.json").read_text())
    split = next(k for k, v in annotation.items() if v)
    entries = annotation[split]
    entries.append({"id": "iu-1", "image_path": ["images/x.png"], "report": "Normal chest.", "split": split})
    tampered = dataclasses.replace(make_review(make_pixels(0)), note="edited")
    entries.append({**entries[0], "id": "t", "review": {**tampered.to_dict(), "image_sha256": "ab" * 32}})
    entries.append({**entries[0], "id": "e", "image_path": ["../../etc/passwd"]})
    (out / "annotation.json").write_text(json.dumps(annotation))
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    assert cli(["feedback", "import", str(out), *_store_args(f"sqlite:///{fresh}/db.sqlite", fresh)]) == 0
    text = capsys.readouterr().out
    assert "imported 7 new review(s)" in text and "3 skipped" in text
    assert "no review" in text and "does not match" in text and "image missing" in text


def test_list_and_check(filled, capsys):
    url, folder = filled
    assert cli(["feedback", "list", "--check", *_store_args(url, folder)]) == 0
    out = capsys.readouterr().out
    assert "8 review(s) of 8" in out and "integrity check: ok" in out
    assert "malignant" in out and "pleural_effusion" in out
    assert cli(["feedback", "list", "--json", "--modality", "CT", *_store_args(url, folder)]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n\n")[0])
    assert [r["tumour"] for r in listed] == ["malignant"]


def test_models_list_promote_rollback(db_url, data_dir, capsys):  # noqa: F811
    args = _store_args(db_url, data_dir)
    assert cli(["models", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "* v1" in out and "current" in out and "the shipped weights" in out
    with ReviewStore.open(db_url, data_dir=data_dir) as store:
        store.register_version(
            ModelVersion(
                0, 1, "userdata/models/v2", now_iso(), ("a", "b", "c"), {}, {"teacher": "f" * 64}, "candidate"
            )
        )
    assert cli(["models", "promote", "2", *args]) == 0
    assert "v2 is now the current version" in capsys.readouterr().out
    assert cli(["models", "list", *args]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].startswith("  v1") and "retired" in rows[2]
    assert rows[3].startswith("* v2") and " 3 " in rows[3] and "teacher:ffffffffff" in rows[3]
    assert cli(["models", "rollback", *args]) == 0
    assert "from v2 to v1" in capsys.readouterr().out
    assert cli(["models", "rollback", *args]) == 2
    assert "no earlier version" in capsys.readouterr().err
    assert cli(["models", "promote", "7", *args]) == 2


def test_errors_are_sentences_not_tracebacks(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert (
        cli(["feedback", "list", "--data-dir", str(missing), "--db-url", f"sqlite:///{missing}/x.sqlite"])
        == 2
    )
    err = capsys.readouterr().err
    assert "no review store" in err and "Traceback" not in err
    assert not missing.exists()  # list does not create a store
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    store = tmp_path / "s"
    ReviewStore.open(f"sqlite:///{store}/x.sqlite", data_dir=store).close()
    assert (
        cli(
            [
                "feedback",
                "export",
                str(junk),
                "--data-dir",
                str(store),
                "--db-url",
                f"sqlite:///{store}/x.sqlite",
            ]
        )
        == 2
    )
    assert "not empty" in capsys.readouterr().err
    assert (junk / "notes.txt").read_text() == "mine"
    assert cli(["feedback", "import", str(tmp_path / "nope"), "--data-dir", str(store)]) == 2
    assert "Cannot read" in capsys.readouterr().err
