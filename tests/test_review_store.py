"""The review store (model/review): round trip, idempotence, de-identification, durability under SIGKILL,
concurrent writers, every user-caused failure as a StoreError, migrations and the model registry.

Every test runs on SQLite and, when ``MEDDISTILL_TEST_PG_URL`` is set, on PostgreSQL (``db_url``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from review_builders import data_dir, db_url, make_pixels, make_review  # noqa: F401  (fixtures)
from sqlalchemy import insert, select, text

from model.review import (
    FindingReview,
    InvalidReviewError,
    ModelVersion,
    ReviewStore,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    now_iso,
    pixel_sha256,
)
from model.review import schema as S
from model.review.engine import make_engine
from model.review.registry import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "review_worker.py"


@pytest.fixture
def store(db_url, data_dir):  # noqa: F811
    s = ReviewStore.open(db_url, data_dir=data_dir)
    yield s
    s.close()


def _worker_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------------------------
# round trip and idempotence


def test_round_trip(store):
    px = make_pixels(1)
    review = make_review(px, tumour=None, note="Check the costophrenic angle.")
    rid = store.save_review(review, px)
    got = store.get(rid)
    assert got == dataclasses.replace(review, id=rid)
    assert got.finding("pleural_effusion") == FindingReview("pleural_effusion", True, "left", "mild")
    back = store.load_pixels(review.image_sha256)
    assert back.dtype == np.float32 and back.shape == px.shape
    assert np.abs(back - px).max() <= 0.5 / 65535 + 1e-7  # 16-bit storage
    assert pixel_sha256(back) == review.image_sha256  # the stored copy has the same address
    assert [r.id for r in store.reviews_for_image(review.image_sha256)] == [rid]
    assert store.reviews_for_image("0" * 64) == []
    assert store.get("missing") is None
    assert store.integrity_check() == []


def test_list_reviews_filters(store):
    ct_px = make_pixels(2)
    old = make_review(make_pixels(1), created_at="2026-01-01T00:00:00+00:00")
    ct = make_review(ct_px, modality="CT", findings=(), tumour="malignant", report_text="Spiculated mass.")
    store.save_review(old, make_pixels(1))
    store.save_review(ct, ct_px)
    assert [r.modality for r in store.list_reviews()] == ["CXR", "CT"]  # oldest first
    assert [r.tumour for r in store.list_reviews(modality="CT")] == ["malignant"]
    assert len(store.list_reviews(since="2026-06-01T00:00:00Z")) == 1
    assert store.count() == 2


def test_save_is_idempotent(store, data_dir):  # noqa: F811
    px = make_pixels(3)
    review = make_review(px)
    first = store.save_review(review, px)
    again = store.save_review(dataclasses.replace(review, created_at=now_iso()), px.copy())
    assert again == first and store.count() == 1
    edited = store.save_review(dataclasses.replace(review, report_text="Moderate left effusion."), px)
    assert edited != first and store.count() == 2
    assert len(list((data_dir / "images").glob("*.png"))) == 1  # one image file for both reviews
    assert len(store.reviews_for_image(review.image_sha256)) == 2


# ----------------------------------------------------------------------------------------------
# nothing identifying is stored


def test_no_file_name_or_dicom_identifier_stored(store, data_dir, db_url):  # noqa: F811
    from imaging_builders import ID_STRINGS, make_dicom

    from model.data.imaging import load_study

    upload_name = "Quentina_Testpatient_scan_0042.dcm"
    raw = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) + 100
    study = load_study(make_dicom(raw), upload_name)
    review = make_review(study.pixels, modality=study.modality, findings=(), tumour="benign")
    store.save_review(review, study.pixels)
    # An outputs dict that would carry a header field or the file name is refused, not stored.
    for key in ("PatientName", "file_name", "meta"):
        bad = dataclasses.replace(review, note="x", outputs={"teacher": {key: "Quentina"}})
        with pytest.raises(InvalidReviewError, match="could identify"):
            store.save_review(bad, study.pixels)

    needles = [s.encode() for s in ID_STRINGS if len(s) >= 4] + [b"Quentina", b"scan_0042", b".dcm"]
    blobs = [p.read_bytes() for p in (data_dir / "images").iterdir()]
    if db_url.startswith("sqlite"):
        store.close()  # checkpoint the WAL into the file
        blobs += [p.read_bytes() for p in data_dir.glob("meddistill.sqlite*")]
    else:
        with store.engine.connect() as conn:
            for table in S.metadata.sorted_tables:
                blobs.append(repr(conn.execute(select(table)).all()).encode())
    assert blobs
    for needle in needles:
        assert not any(needle.lower() in b.lower() for b in blobs), needle


# ----------------------------------------------------------------------------------------------
# durability and concurrency


def test_sigkill_mid_save_loses_no_committed_review(db_url, data_dir):  # noqa: F811
    ReviewStore.open(db_url, data_dir=data_dir).close()  # schema in place before the writer starts
    pause_at = 6
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "killable", db_url, str(data_dir), str(pause_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_worker_env(),
    )
    committed = []
    watchdog = threading.Timer(300, proc.kill)  # a writer that hangs fails the test instead of the run
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("saved "):
                committed.append(line.split()[1])
            if line.strip() == "committing":
                break
        else:
            pytest.fail(f"writer exited early: {proc.stderr.read()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)  # between the INSERT and the COMMIT of save number pause_at
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=30)
    assert len(committed) == pause_at
    with ReviewStore.open(db_url, data_dir=data_dir) as store:
        assert store.integrity_check() == []
        assert store.count() == pause_at  # every committed review, and not the half-saved one
        for rid in committed:
            assert store.get(rid) is not None
        px = make_pixels(50_000 + pause_at)  # the killed save can simply be done again
        store.save_review(make_review(px, text=f"Durable {pause_at}."), px)
        assert store.count() == pause_at + 1


@pytest.mark.slow
def test_eight_concurrent_writers_lose_and_duplicate_nothing(db_url, data_dir, tmp_path):  # noqa: F811
    ReviewStore.open(db_url, data_dir=data_dir).close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "saves", db_url, str(data_dir), str(w), "25", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_worker_env(),
        )
        for w in range(8)
    ]
    time.sleep(1.0)
    go.touch()  # all start saving at once
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outputs.append(out.split())
    assert all(len(lines) == 30 for lines in outputs)
    ids = [rid for lines in outputs for rid in lines[:25]]
    assert len(ids) == len(set(ids)) == 200  # 8 x 25 distinct reviews
    for lines in outputs:  # everyone saving worker 0's first five again got worker 0's ids
        assert lines[25:] == outputs[0][:5]
    with ReviewStore.open(db_url, data_dir=data_dir) as store:
        assert store.count() == 200  # and the 8 x 5 repeated saves added none
        assert {r.id for r in store.list_reviews()} == set(ids)
        assert store.integrity_check() == []
    assert len(list((data_dir / "images").glob("*.png"))) == 200


# ----------------------------------------------------------------------------------------------
# bad input: every failure is a StoreError with a sentence, and nothing is lost


def test_missing_directory_is_created_or_refused(tmp_path):
    where = tmp_path / "a" / "b"
    with pytest.raises(StoreUnavailableError, match="no review store"):
        ReviewStore.open(data_dir=where, url=f"sqlite:///{where}/db.sqlite", create=False)
    assert not where.exists()
    with ReviewStore.open(data_dir=where, url=f"sqlite:///{where}/db.sqlite") as store:
        assert store.count() == 0
    assert (where / "images").is_dir() and (where / "db.sqlite").is_file()


def test_missing_database_file_refused_without_create(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(StoreUnavailableError, match="no review database"):
        ReviewStore.open(f"sqlite:///{tmp_path}/nope.sqlite", data_dir=tmp_path, create=False)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"findings": (), "tumour": None, "report_text": " ", "note": ""}, "empty"),
        ({"findings": (FindingReview("dragon", True),)}, "unknown finding"),
        ({"findings": (FindingReview("nodule", True), FindingReview("nodule", False))}, "twice"),
        ({"findings": (FindingReview("nodule", True, side="upside"),)}, "side"),
        ({"findings": (FindingReview("nodule", False, severity="severe"),)}, "absent"),
        ({"tumour": "enormous"}, "tumour class"),
        ({"modality": "MRI"}, "modality"),
        ({"report_text": "x" * 20_001}, "limit"),
        ({"model_version": -3}, "model version"),
        ({"created_at": "yesterday"}, "ISO"),
        ({"image_sha256": "f" * 64}, "sha256"),
    ],
)
def test_absurd_review_refused(store, change, match):
    px = make_pixels(4)
    with pytest.raises(InvalidReviewError, match=match):
        store.save_review(make_review(px, **change), px)
    assert store.count() == 0


@pytest.mark.parametrize(
    "pixels, match",
    [
        (np.full((32, 32), np.nan, np.float32), "NaN"),
        (np.zeros((3, 32, 32), np.float32), "shape"),
        (np.zeros((4, 4), np.float32), "at least"),
        (np.full((32, 32), 7.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_absurd_pixels_refused(store, pixels, match):
    with pytest.raises(InvalidReviewError, match=match):
        store.save_review(make_review(make_pixels(5), image_sha256=""), pixels)
    assert store.count() == 0


def _read_only_url(db_url: str, data_dir: Path) -> str:  # noqa: F811
    if db_url.startswith("sqlite"):
        return f"sqlite:///file:{data_dir / 'meddistill.sqlite'}?mode=ro&uri=true"
    return db_url + ("&" if "?" in db_url else "?") + "options=-c%20default_transaction_read_only%3Don"


def test_read_only_database(store, db_url, data_dir):  # noqa: F811
    px = make_pixels(6)
    kept = store.save_review(make_review(px), px)
    store.close()
    with ReviewStore.open(_read_only_url(db_url, data_dir), data_dir=data_dir) as ro:
        assert ro.count() == 1 and ro.get(kept) is not None  # reading still works
        px2 = make_pixels(7)
        with pytest.raises(StoreUnavailableError, match="read-only") as err:
            ro.save_review(make_review(px2), px2)
        assert "Traceback" not in str(err.value) and "sqlalchemy" not in str(err.value).lower()
        with pytest.raises(StoreUnavailableError, match="read-only"):
            ro.register_version(ModelVersion(0, 1, "v2", now_iso(), (), {}, {}, "candidate"))
    with ReviewStore.open(db_url, data_dir=data_dir) as again:
        assert again.count() == 1 and again.integrity_check() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_file_permissions(tmp_path):
    url = f"sqlite:///{tmp_path}/meddistill.sqlite"
    ReviewStore.open(url, data_dir=tmp_path).close()
    for p in [tmp_path, *tmp_path.glob("meddistill.sqlite*")]:
        p.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            with ReviewStore.open(url, data_dir=tmp_path) as s:
                px = make_pixels(8)
                s.save_review(make_review(px), px)
    finally:
        for p in [tmp_path, *tmp_path.glob("meddistill.sqlite*")]:
            p.chmod(0o755)


def test_locked_database(db_url, data_dir):  # noqa: F811
    with ReviewStore.open(db_url, data_dir=data_dir, timeout_s=0.5) as store:
        px = make_pixels(9)
        kept = store.save_review(make_review(px), px)
        if db_url.startswith("sqlite"):
            other = sqlite3.connect(str(data_dir / "meddistill.sqlite"), isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            release = other.rollback
        else:
            engine = make_engine(store.engine.url, 5)
            other = engine.connect()
            tx = other.begin()
            other.execute(text("LOCK TABLE reviews IN ACCESS EXCLUSIVE MODE"))
            release = tx.rollback
        px2 = make_pixels(10)
        try:
            start = time.perf_counter()
            with pytest.raises(StoreUnavailableError, match="locked by another program"):
                store.save_review(make_review(px2), px2)
            assert time.perf_counter() - start < 10  # waited about timeout_s, not forever
        finally:
            release()
            other.close()
        assert store.get(kept) is not None  # nothing lost
        store.save_review(make_review(px2), px2)  # and it works again once the lock is gone
        assert store.count() == 2


def test_newer_schema_refused(store, db_url, data_dir):  # noqa: F811
    with store.engine.begin() as conn:
        conn.execute(
            insert(S.schema_version).values(
                version=S.LATEST_SCHEMA + 1, description="from the future", applied_at=now_iso()
            )
        )
    store.close()
    with pytest.raises(SchemaTooNewError, match="newer") as err:
        ReviewStore.open(db_url, data_dir=data_dir)
    assert f"schema version {S.LATEST_SCHEMA + 1}" in str(err.value)


def test_not_a_database(tmp_path):
    (tmp_path / "meddistill.sqlite").write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(StoreUnavailableError, match="not a meddistill database"):
        ReviewStore.open(data_dir=tmp_path, url=f"sqlite:///{tmp_path}/meddistill.sqlite")


def test_unreachable_postgresql(tmp_path):
    with pytest.raises(StoreUnavailableError, match="Cannot open"):
        ReviewStore.open(
            "postgresql://nobody@/nodb?host=/nonexistent-socket-dir", data_dir=tmp_path, timeout_s=1
        )


# ----------------------------------------------------------------------------------------------
# migrations


def test_migrates_an_old_schema_keeping_its_data(db_url, data_dir):  # noqa: F811
    from sqlalchemy.engine import make_url

    data_dir.mkdir(parents=True)
    engine = make_engine(make_url(db_url), 5)
    number, description, first_step = S.MIGRATIONS[0]
    with engine.begin() as conn:  # a database as version 1 left it, with one review
        first_step(conn)
        conn.execute(insert(S.schema_version).values(version=number, description=description, applied_at="x"))
    engine.dispose()
    with ReviewStore.open(db_url, data_dir=data_dir) as store:
        px = make_pixels(11)
        rid = store.save_review(make_review(px), px)
        with store.engine.connect() as conn:
            assert S.applied_version(conn) == S.LATEST_SCHEMA
            assert [r.version for r in conn.execute(select(S.schema_version)).all()] == [
                n for n, _, _ in S.MIGRATIONS
            ]
    with ReviewStore.open(db_url, data_dir=data_dir) as store:  # opening again applies nothing twice
        assert store.get(rid) is not None and store.integrity_check() == []


# ----------------------------------------------------------------------------------------------
# model registry


def test_shipped_weights_are_version_one(store):
    import json

    v1 = store.current_version()
    assert (v1.version, v1.parent, v1.status) == (1, None, "current")
    for role in ("teacher", "student"):
        card = json.loads((SHIPPED_DIR / role / "model_card.json").read_text())
        assert v1.sha256[role] == card["weights_sha256"]
    assert [v.version for v in store.versions()] == [1]


def test_register_promote_rollback(store):
    mv = ModelVersion(
        0, 1, "userdata/models/v2", now_iso(), ("r1", "r2"), {"f1": 0.8}, {"teacher": "ab"}, "candidate"
    )
    assert store.register_version(mv) == 2
    assert store.current_version().version == 1
    assert store.version(2).feedback_ids == ("r1", "r2")
    assert store.promote(2).version == 2
    assert [v.status for v in store.versions()] == ["retired", "current"]
    with pytest.raises(StoreError, match="already the current"):
        store.promote(2)
    back = store.rollback()
    assert back.version == 1 and "rolled back" in store.version(2).note
    with pytest.raises(StoreError, match="no earlier version"):
        store.rollback()
    rejected = dataclasses.replace(mv, version=0, status="rejected", note="gate: F1 dropped 3 points")
    n = store.register_version(rejected)
    with pytest.raises(StoreError, match="rejected"):
        store.promote(n)
    assert store.promote(n, force=True).version == n
    with pytest.raises(StoreError, match="no model version 99"):
        store.promote(99)
    with pytest.raises(StoreError, match="parent 42"):
        store.register_version(dataclasses.replace(mv, parent=42))
    assert store.integrity_check() == []


def test_integrity_check_finds_a_damaged_image(store, data_dir):  # noqa: F811
    px = make_pixels(12)
    review = make_review(px)
    store.save_review(review, px)
    path = data_dir / "images" / f"{review.image_sha256}.png"
    from PIL import Image

    Image.fromarray(np.zeros((48, 40), np.uint16)).save(path)
    assert any("does not match" in p for p in store.integrity_check())
    path.unlink()
    assert any("file missing" in p for p in store.integrity_check())


def test_engine_is_not_psycopg2(db_url):  # noqa: F811
    from sqlalchemy.engine import make_url

    engine = make_engine(make_url(db_url), 5)
    assert engine.dialect.driver in ("pysqlite", "psycopg")
    engine.dispose()
