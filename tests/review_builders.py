"""Builders for the review-store tests: reviews, pixels, and one fresh database per test on each backend.

``db_url`` (a fixture; import it into a test module) is parametrized over SQLite and PostgreSQL. The
PostgreSQL case runs when ``MEDDISTILL_TEST_PG_URL`` names a server (``.ci/run`` starts a throwaway one,
``.ci/pg_throwaway``) and is skipped otherwise; each test gets a database of its own on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model.review import FindingReview, Review, now_iso, pixel_sha256

PG_ENV = "MEDDISTILL_TEST_PG_URL"
BACKENDS = ["sqlite", "postgresql"]


def make_pixels(seed: int, shape: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A distinct de-identified image per seed: float32 in [0, 1]."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def make_review(pixels: np.ndarray, text: str = "Small left pleural effusion.", **changes) -> Review:
    """A plausible CXR review of ``pixels`` (fields overridable)."""
    fields = {
        "image_sha256": pixel_sha256(pixels),
        "modality": "CXR",
        "findings": (
            FindingReview("pleural_effusion", True, side="left", severity="mild"),
            FindingReview("cardiomegaly", False),
        ),
        "tumour": None,
        "report_text": text,
        "note": "",
        "outputs": {
            "teacher": {"report": "No acute findings.", "findings": {"pleural_effusion": 0.31}},
            "student": {"report": "No acute findings.", "findings": {"pleural_effusion": 0.22}},
        },
        "model_version": 1,
        "created_at": now_iso(),
    }
    fields.update(changes)
    return Review(**fields)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meddistill.sqlite'}"


def _pg_database(base_url: str) -> Iterator[str]:
    """A fresh database on the server of ``base_url`` (dropped afterwards); else its tables emptied."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from model.review import schema

    url = make_url(base_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"mdtest_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # no CREATEDB right: share the given database, emptied
        with admin.begin() as conn:
            schema.metadata.drop_all(conn)
        admin.dispose()
        yield url.render_as_string(hide_password=False)
        return
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """A database URL no other test uses: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "store")
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL: set {PG_ENV} (.ci/run starts a throwaway server) to run this case")
    yield from _pg_database(base)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "store"
