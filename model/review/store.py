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
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from model.review import schema as S
from model.review.pixels import check_pixels, image_path, pixel_sha256, read_png, write_png
from model.review.types import ModelVersion, Review, as_iso, now_iso
from model.review.validation import review_problem

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = ROOT / "assets" / "checkpoints"
#: Roles whose weights a model version holds (a folder each, with a model card).
VERSION_ROLES: tuple[str, ...] = ("teacher", "student", "student_nokd")
DB_FILE = "meddistill.sqlite"
#: Seconds a statement waits for another writer's lock before the store says the database is locked.
DEFAULT_TIMEOUT_S = 10.0

__all__ = ["ReviewStore", "StoreError", "pixel_sha256", "default_data_dir", "default_db_url"]


class StoreError(Exception):
    """Anything a user can cause that stops the store: the message is a sentence for them."""


class InvalidReviewError(StoreError):
    """An empty or absurd review, or pixels that are not a de-identified image."""


class StoreUnavailableError(StoreError):
    """The database is missing, unreachable, read-only, locked or damaged."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer meddistill."""


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


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _classify(err: BaseException) -> str:
    """ "read-only" | "locked" | "unreachable" | "damaged" | "other" from a driver error."""
    text = " ".join(str(a) for a in (getattr(err, "orig", None) or err).args).lower()
    name = type(getattr(err, "orig", None) or err).__name__.lower()
    if "readonly" in text or "read-only" in text or "read only" in text or "permission denied" in text:
        return "read-only"
    if "locked" in text or "lock timeout" in text or "busy" in text or "locknotavailable" in name:
        return "locked"
    if any(
        w in text
        for w in ("unable to open", "could not connect", "connection refused", "connection to server")
    ):
        return "unreachable"
    if "does not exist" in text and "database" in text:
        return "unreachable"
    if "malformed" in text or "not a database" in text or "disk i/o" in text:
        return "damaged"
    return "other"


class ReviewStore:
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
        engine = _make_engine(sa_url, timeout_s)
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
            db = self.where
            if isinstance(e, OSError):
                raise StoreUnavailableError(
                    f"The review store's files under {self.data_dir} could not be written or read, so "
                    f"{action} did not happen: {e.strerror or e}. Check the folder's permissions and free space."
                ) from e
            kind = _classify(e)
            if kind == "read-only":
                msg = (
                    f"The review database {db} is read-only, so {action} did not happen. Make it writable "
                    "or point --db-url / MEDDISTILL_DB_URL at a writable database; nothing stored was lost."
                )
            elif kind == "locked":
                msg = (
                    f"The review database {db} is locked by another program (waited {self.timeout_s:g} s), "
                    f"so {action} did not happen. Try again when it is done; nothing stored was lost."
                )
            elif kind == "unreachable":
                msg = f"Cannot open the review database {db}, so {action} did not happen: {_first_line(e)}."
            elif kind == "damaged":
                msg = (
                    f"The review database {db} is damaged or is not a meddistill database, so {action} did "
                    f"not happen ({_first_line(e)}). Restore it from a backup or use another --db-url."
                )
            else:
                msg = f"The review database {db} failed while {action}: {_first_line(e)}."
            raise StoreUnavailableError(msg) from e

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on leaving the block."""
        with self._errors(action), self.engine.connect().execution_options(store_write=True) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with self._errors(action), self.engine.connect() as conn:
            yield conn

    def _migrate(self) -> int:
        """Apply the missing migrations in order; refuse a schema newer than this code knows."""
        for attempt in range(5):
            try:
                with self._write("opening the store") as conn:
                    have = S.applied_version(conn)
                    if have > S.LATEST_SCHEMA:
                        raise SchemaTooNewError(
                            f"The review database {self.where} has schema version {have}, newer than this "
                            f"meddistill understands ({S.LATEST_SCHEMA}): it was written by a newer version. "
                            "Upgrade meddistill, or use another --db-url / MEDDISTILL_DB_URL."
                        )
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
        review = _replace(review, image_sha256=sha, created_at=as_iso(review.created_at))
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

    # ------------------------------------------------------------------------------------------
    # model registry

    def versions_dir(self) -> Path:
        """Where new model versions are written (``<data dir>/models/vN/<role>/``)."""
        return self.data_dir / "models"

    def register_version(self, mv: ModelVersion) -> int:
        """Add a version (``version`` 0: the next number); a "current" one demotes the old current."""
        if mv.status not in ("current", "candidate", "retired", "rejected"):
            raise StoreError(f"Unknown model version status {mv.status!r}.")
        with self._write("registering a model version") as conn:
            number = mv.version
            if number <= 0:
                number = int(conn.execute(select(func.max(S.model_versions.c.version))).scalar() or 0) + 1
            elif conn.execute(
                select(S.model_versions.c.version).where(S.model_versions.c.version == number)
            ).first():
                raise StoreError(f"Model version {number} is already registered.")
            if (
                mv.parent is not None
                and not conn.execute(
                    select(S.model_versions.c.version).where(S.model_versions.c.version == mv.parent)
                ).first()
            ):
                raise StoreError(f"Model version {number}: its parent {mv.parent} is not registered.")
            if mv.status == "current":
                conn.execute(
                    update(S.model_versions)
                    .where(S.model_versions.c.status == "current")
                    .values(status="retired")
                )
            conn.execute(insert(S.model_versions).values(**_version_row(_replace(mv, version=number))))
        return number

    def versions(self) -> list[ModelVersion]:
        with self._read("listing model versions") as conn:
            rows = (
                conn.execute(select(S.model_versions).order_by(S.model_versions.c.version)).mappings().all()
            )
        return [_version_from_row(r) for r in rows]

    def version(self, number: int) -> ModelVersion:
        for mv in self.versions():
            if mv.version == number:
                return mv
        raise StoreError(
            f"There is no model version {number} (known: {[v.version for v in self.versions()]})."
        )

    def current_version(self) -> ModelVersion:
        with self._read("reading the current model version") as conn:
            row = (
                conn.execute(select(S.model_versions).where(S.model_versions.c.status == "current"))
                .mappings()
                .first()
            )
        if row is None:
            raise StoreError(f"The review database {self.where} has no current model version.")
        return _version_from_row(row)

    def promote(self, version: int, force: bool = False) -> ModelVersion:
        """Make ``version`` the current one (the old current becomes "retired").

        A version the update gate rejected is promoted only with ``force``.
        """
        with self._write(f"promoting version {version}") as conn:
            row = (
                conn.execute(select(S.model_versions).where(S.model_versions.c.version == version))
                .mappings()
                .first()
            )
            if row is None:
                raise StoreError(f"There is no model version {version} to promote.")
            if row["status"] == "current":
                raise StoreError(f"Model version {version} is already the current one.")
            if row["status"] == "rejected" and not force:
                raise StoreError(
                    f"Model version {version} was rejected ({row['note'] or 'by the update gate'}); "
                    "promote it anyway with --force."
                )
            _set_current(conn, version)
        return self.current_version()

    def rollback(self) -> ModelVersion:
        """Go back from the current version to its nearest ancestor that was not rejected."""
        with self._write("rolling back") as conn:
            rows = {r["version"]: r for r in conn.execute(select(S.model_versions)).mappings().all()}
            current = next((r for r in rows.values() if r["status"] == "current"), None)
            if current is None:
                raise StoreError("There is no current model version to roll back from.")
            parent = current["parent"]
            while parent is not None and rows[parent]["status"] == "rejected":
                parent = rows[parent]["parent"]
            if parent is None:
                raise StoreError(
                    f"Model version {current['version']} has no earlier version to roll back to "
                    "(version 1 is the shipped weights)."
                )
            note = (
                current["note"] + "; " if current["note"] else ""
            ) + f"rolled back to {parent} at {now_iso()}"
            conn.execute(
                update(S.model_versions)
                .where(S.model_versions.c.version == current["version"])
                .values(note=note)
            )
            _set_current(conn, parent)
        return self.current_version()

    def _register_shipped(self, shipped_dir: Path) -> None:
        """Version 1 = the shipped checkpoints, with the weights' sha256 from their model cards."""
        with self._read("reading the model registry") as conn:
            if conn.execute(select(S.model_versions.c.version)).first():
                return
        sha, metrics = {}, {}
        for role in VERSION_ROLES:
            card = shipped_dir / role / "model_card.json"
            if card.is_file():
                data = json.loads(card.read_text())
                sha[role] = data.get("weights_sha256", "")
                metrics[role] = data.get("metrics", {})
        path = str(shipped_dir.relative_to(ROOT)) if shipped_dir.is_relative_to(ROOT) else str(shipped_dir)
        try:
            self.register_version(
                ModelVersion(1, None, path, now_iso(), (), metrics, sha, "current", "the shipped weights")
            )
        except StoreError:
            if not self.versions():  # another process registered it first: fine
                raise


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)


def _set_current(conn: Connection, version: int) -> None:
    conn.execute(
        update(S.model_versions).where(S.model_versions.c.status == "current").values(status="retired")
    )
    conn.execute(
        update(S.model_versions).where(S.model_versions.c.version == version).values(status="current")
    )


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


def _version_row(mv: ModelVersion) -> dict[str, Any]:
    d = mv.to_dict()
    for key in ("feedback_ids", "metrics", "sha256"):
        d[key] = _dumps(d[key])
    return d


def _version_from_row(row: Any) -> ModelVersion:
    d = dict(row)
    for key in ("feedback_ids", "metrics", "sha256"):
        d[key] = json.loads(d[key])
    return ModelVersion.from_dict(d)


def _make_engine(url: Any, timeout_s: float) -> Engine:
    """An engine with the store's connection settings (SQLite pragmas; PostgreSQL timeouts)."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3 (a dependency), not psycopg2
        ms = int(timeout_s * 1000)
        options = " ".join(filter(None, [url.query.get("options"), f"-c lock_timeout={ms}"]))
        url = url.difference_update_query(["options"])
        return create_engine(
            url,
            connect_args={"connect_timeout": max(1, int(timeout_s)), "options": options},
            pool_pre_ping=True,
        )
    if backend != "sqlite":
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": timeout_s})
    ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={ms}")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")  # a committed review survives a crash of the machine too
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("store_write") else "BEGIN"
        )

    return engine
