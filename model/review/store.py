"""The review store: expert reviews, their de-identified images, and the model registry.

SQLite by default (``<data dir>/meddistill.sqlite``, WAL, a busy timeout, foreign keys on); PostgreSQL
given a URL. One code path through SQLAlchemy Core; the only dialect-specific lines are SQLite's
connection pragmas and its ``BEGIN IMMEDIATE`` for writes (a write transaction takes the write lock up
front, so concurrent writers wait their turn instead of failing on a stale snapshot).

Where things live:
- data directory: ``$MEDDISTILL_DATA_DIR``, else ``<repo root>/userdata/``;
- database: ``$MEDDISTILL_DB_URL``, else ``sqlite:///<data dir>/meddistill.sqlite``;
- images: ``<data dir>/images/<sha256>.png`` (``model/review/pixels.py``).

Every failure a user can cause (a missing, read-only, locked or newer database; an empty or absurd
review) raises :class:`StoreError` with a sentence that says what happened and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from model.review import schema as S
from model.review.engine import WRITE_OPTION, make_engine
from model.review.errors import (  # noqa: F401  (public names stay importable from store)
    InvalidReviewError,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
    unavailable,
)
from model.review.pixels import check_pixels, image_path, pixel_sha256, read_png, write_png
from model.review.registry import ROOT, SHIPPED_DIR, VERSION_ROLES, ModelRegistry, _dumps  # noqa: F401
from model.review.types import Review, as_iso, now_iso
from model.review.validation import review_problem

DB_FILE = "meddistill.sqlite"
#: Seconds a statement waits for another writer's lock before the store says the database is locked.
DEFAULT_TIMEOUT_S = 10.0

__all__ = ["ReviewStore", "StoreError", "pixel_sha256", "default_data_dir", "default_db_url"]


def default_data_dir() -> Path:
    return Path(os.environ.get("MEDDISTILL_DATA_DIR") or ROOT / "userdata")


def default_db_url(data_dir: Path | None = None) -> str:
    if os.environ.get("MEDDISTILL_DB_URL"):
        return os.environ["MEDDISTILL_DB_URL"]
    return f"sqlite:///{Path(data_dir or default_data_dir()) / DB_FILE}"


def review_id(review: Review) -> str:
    """The id of a review: the same image + labels + text gives the same id (saving is idempotent)."""
    key = {
        "image_sha256": review.image_sha256,
        "modality": review.modality,
        "findings": sorted((f.to_dict() for f in review.findings), key=lambda d: d["name"]),
        "tumour": review.tumour,
        "report_text": review.report_text.strip(),
        "note": review.note.strip(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


class ReviewStore(ModelRegistry):
    """Reviews + images + model registry behind one database URL. Open with :meth:`open`."""

    def __init__(self, engine: Engine, data_dir: Path, where: str, timeout_s: float) -> None:
        self.engine = engine
        self.data_dir = Path(data_dir)
        self.images_dir = self.data_dir / "images"
        self.where = where  # the database for messages (password hidden)
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------------------------------
    # opening

    @classmethod
    def open(
        cls,
        url: str | None = None,
        data_dir: Path | None = None,
        create: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        shipped_dir: Path | None = None,
    ) -> ReviewStore:
        """Open (and with ``create``, make) the store; apply missing migrations; register version 1.

        ``url``/``data_dir`` default to ``$MEDDISTILL_DB_URL`` / ``$MEDDISTILL_DATA_DIR`` (see the module
        docstring). ``timeout_s``: how long to wait for another writer's lock. ``shipped_dir``: the
        checkpoints registered as version 1 (default ``assets/checkpoints``).
        """
        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        url = url or default_db_url(data_dir)
        sa_url = make_url(url)
        where = sa_url.render_as_string(hide_password=True)
        is_sqlite = sa_url.get_backend_name() == "sqlite"
        db_file = (
            Path(sa_url.database) if is_sqlite and sa_url.database not in (None, "", ":memory:") else None
        )
        if db_file is not None and sa_url.query.get("uri") and str(sa_url.database).startswith("file:"):
            db_file = Path(str(sa_url.database)[5:].split("?")[0])
        for folder, what in ((data_dir, "data directory"), (data_dir / "images", "image folder")):
            if not folder.is_dir():
                if not create:
                    raise StoreUnavailableError(
                        f"There is no review store at {data_dir} (its {what} {folder} is missing). "
                        "Save a review first, or point --data-dir / MEDDISTILL_DATA_DIR at an existing one."
                    )
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreUnavailableError(
                        f"Cannot create the review {what} {folder}: {e.strerror or e}. "
                        "Choose a writable folder with --data-dir or MEDDISTILL_DATA_DIR."
                    ) from e
        if db_file is not None and not db_file.is_file():
            if not create:
                raise StoreUnavailableError(
                    f"There is no review database at {db_file}. Save a review first, or give the right "
                    "--db-url / MEDDISTILL_DB_URL."
                )
            try:
                db_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailableError(
                    f"Cannot create the folder of {db_file}: {e.strerror or e}."
                ) from e
        if db_file is not None:
            where = str(db_file)
        engine = make_engine(sa_url, timeout_s)
        store = cls(engine, data_dir, where, timeout_s)
        try:
            store._migrate()
            store._register_shipped(Path(shipped_dir) if shipped_dir is not None else SHIPPED_DIR)
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Driver and file errors -> StoreError with a sentence (never a raw traceback on a page)."""
        try:
            yield
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as e:
            raise unavailable(e, self.where, self.data_dir, action, self.timeout_s) from e

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on leaving the block."""
        with self._errors(action), self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with self._errors(action), self.engine.connect() as conn:
            yield conn

    def _migrate(self) -> int:
        """Apply the missing migrations in order; refuse a schema newer than this code knows.

        An up-to-date database is only read here, so a read-only one still opens for reading.
        """
        with self._read("opening the store") as conn:
            have = S.applied_version(conn)
        self._refuse_newer(have)
        if have == S.LATEST_SCHEMA:
            return have
        for attempt in range(5):
            try:
                with self._write("opening the store") as conn:
                    have = S.applied_version(conn)
                    self._refuse_newer(have)
                    for number, description, step in S.MIGRATIONS[have:]:
                        step(conn)
                        conn.execute(
                            insert(S.schema_version).values(
                                version=number, description=description, applied_at=now_iso()
                            )
                        )
                    return S.LATEST_SCHEMA
            except StoreUnavailableError as e:
                # Another process migrating the same empty PostgreSQL database at the same moment:
                # its tables appear under us; read the version again.
                cause = str(getattr(e.__cause__, "orig", e.__cause__)).lower()
                if attempt == 4 or not ("already exists" in cause or "duplicate" in cause):
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _refuse_newer(self, have: int) -> None:
        if have > S.LATEST_SCHEMA:
            raise SchemaTooNewError(
                f"The review database {self.where} has schema version {have}, newer than this "
                f"meddistill understands ({S.LATEST_SCHEMA}): it was written by a newer version. "
                "Upgrade meddistill, or use another --db-url / MEDDISTILL_DB_URL."
            )

    # ------------------------------------------------------------------------------------------
    # reviews

    def save_review(self, review: Review, pixels: np.ndarray) -> str:
        """Store a review and its image; returns its id. Saving the same review again adds nothing."""
        problem = check_pixels(pixels)
        if problem:
            raise InvalidReviewError(f"Cannot save this review: {problem}.")
        sha = pixel_sha256(pixels)
        if review.image_sha256 and review.image_sha256 != sha:
            raise InvalidReviewError(
                "Cannot save this review: its image_sha256 is not the sha256 of the pixels given "
                "(use model.review.pixel_sha256 on the same de-identified pixels)."
            )
        problem = review_problem(review)
        if problem:
            raise InvalidReviewError(f"Cannot save this review: {problem}.")
        review = replace(review, image_sha256=sha, created_at=as_iso(review.created_at))
        rid = review_id(review)
        arr = np.asarray(pixels)
        with self._errors("saving the image"):
            write_png(self.images_dir, arr, sha)  # before the row, so a committed row always has its file
        try:
            with self._write("saving the review") as conn:
                if conn.execute(select(S.reviews.c.id).where(S.reviews.c.id == rid)).first():
                    return rid
                if not conn.execute(select(S.images.c.sha256).where(S.images.c.sha256 == sha)).first():
                    conn.execute(
                        insert(S.images).values(
                            sha256=sha, height=arr.shape[0], width=arr.shape[1], created_at=now_iso()
                        )
                    )
                conn.execute(insert(S.reviews).values(**_review_row(review, rid)))
        except StoreUnavailableError as e:
            # PostgreSQL: another session inserted the same review (or image) between our check and insert.
            if isinstance(e.__cause__, IntegrityError) and self.get(rid) is not None:
                return rid
            if isinstance(e.__cause__, IntegrityError):
                return self.save_review(review, pixels)  # the image row raced; the review is new
            raise
        return rid

    def get(self, review_id: str) -> Review | None:
        with self._read("reading a review") as conn:
            row = conn.execute(select(S.reviews).where(S.reviews.c.id == review_id)).mappings().first()
        return _review_from_row(row) if row else None

    def reviews_for_image(self, sha256: str) -> list[Review]:
        """Every review of one image, oldest first (empty: the image was never reviewed)."""
        q = select(S.reviews).where(S.reviews.c.image_sha256 == sha256)
        with self._read("reading reviews") as conn:
            rows = conn.execute(q.order_by(S.reviews.c.created_at, S.reviews.c.id)).mappings().all()
        return [_review_from_row(r) for r in rows]

    def list_reviews(self, modality: str | None = None, since: str | datetime | None = None) -> list[Review]:
        """Reviews oldest first, optionally of one modality and at or after ``since`` (ISO or datetime)."""
        q = select(S.reviews)
        if modality is not None:
            q = q.where(S.reviews.c.modality == modality)
        if since is not None:
            q = q.where(S.reviews.c.created_at >= as_iso(since))
        with self._read("listing reviews") as conn:
            rows = conn.execute(q.order_by(S.reviews.c.created_at, S.reviews.c.id)).mappings().all()
        return [_review_from_row(r) for r in rows]

    def load_pixels(self, sha256: str) -> np.ndarray:
        """The stored image: float32 H x W in [0, 1], exactly the values its sha256 names."""
        path = image_path(self.images_dir, sha256)
        if not path.is_file():
            raise StoreError(f"The image {sha256[:12]}... is not in the review store at {self.images_dir}.")
        with self._errors("reading an image"):
            return read_png(path)

    def count(self) -> int:
        with self._read("counting reviews") as conn:
            return int(conn.execute(select(func.count()).select_from(S.reviews)).scalar() or 0)

    def integrity_check(self) -> list[str]:
        """Problems found (empty: ok): the database's own check (SQLite), every review's image file and
        its sha256, JSON columns that parse, one current model version."""
        problems: list[str] = []
        with self._read("checking the store") as conn:
            if conn.dialect.name == "sqlite":
                for (line,) in conn.exec_driver_sql("PRAGMA integrity_check").all():
                    if line != "ok":
                        problems.append(f"sqlite integrity_check: {line}")
                for row in conn.exec_driver_sql("PRAGMA foreign_key_check").all():
                    problems.append(f"sqlite foreign_key_check: {tuple(row)}")
            have = S.applied_version(conn)
            if have != S.LATEST_SCHEMA:
                problems.append(f"schema version {have}, expected {S.LATEST_SCHEMA}")
            rows = conn.execute(select(S.reviews)).mappings().all()
            image_rows = {r.sha256 for r in conn.execute(select(S.images.c.sha256)).all()}
            statuses = [r.status for r in conn.execute(select(S.model_versions.c.status)).all()]
        for sha in sorted(image_rows):
            path = image_path(self.images_dir, sha)
            if not path.is_file():
                problems.append(f"image {sha}: file missing")
            elif pixel_sha256(read_png(path)) != sha:
                problems.append(f"image {sha}: file content does not match its sha256")
        for r in rows:
            if r["image_sha256"] not in image_rows:
                problems.append(f"review {r['id']}: no image row")
            try:
                rebuilt = _review_from_row(r)
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"review {r['id']}: unreadable ({e})")
                continue
            if review_id(rebuilt) != r["id"]:
                problems.append(f"review {r['id']}: content does not match its id")
        if statuses and statuses.count("current") != 1:
            problems.append(f"{statuses.count('current')} current model versions (expected exactly 1)")
        return problems


def _review_row(review: Review, rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "image_sha256": review.image_sha256,
        "modality": review.modality,
        "findings": _dumps([f.to_dict() for f in review.findings]),
        "tumour": review.tumour,
        "report_text": review.report_text,
        "note": review.note,
        "outputs": _dumps(review.outputs),
        "model_version": review.model_version,
        "created_at": review.created_at,
        "source": review.source,
    }


def _review_from_row(row: Any) -> Review:
    d = dict(row)
    d["findings"] = json.loads(d["findings"])
    d["outputs"] = json.loads(d["outputs"])
    return Review.from_dict(d)
