"""The review store's tables and their migrations (SQLAlchemy Core: the same code on SQLite and PostgreSQL).

The tables below are the latest schema. ``MIGRATIONS`` is the ordered list of steps that build it; the
``schema_version`` table records each step applied (one row per step), so opening a store applies the
missing steps in order, and a database with a step this code does not know was written by a newer
meddistill and is refused (``model/review/store.py``).

Adding a migration: append ``(number, description, function)``; never edit an applied step. A step that
changes an existing table writes its own DDL (``sqlalchemy.schema.AddColumn`` style or a new ``Table``),
it does not rely on the definitions below, which describe only the end result.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)
from sqlalchemy import func as sa_func

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", String(40), nullable=False),
)

#: One row per stored image (its pixels are ``images/<sha256>.png`` in the data directory).
images = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("height", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
)

#: One row per review; ``id`` is derived from the image, labels and text (saving twice = one row).
reviews = Table(
    "reviews",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("image_sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("modality", String(8), nullable=False),
    Column("findings", Text, nullable=False),  # JSON list of FindingReview dicts
    Column("tumour", String(32), nullable=True),
    Column("report_text", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("outputs", Text, nullable=False),  # JSON: both models' outputs at review time
    Column("model_version", Integer, nullable=True),
    Column("created_at", String(40), nullable=False),  # ISO 8601 UTC, sorts in time order
    Column("source", String(32), nullable=False),
)

#: The model registry: one row per version (the shipped weights are version 1).
model_versions = Table(
    "model_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("parent", Integer, ForeignKey("model_versions.version"), nullable=True),
    Column("path", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("feedback_ids", Text, nullable=False),  # JSON list of review ids
    Column("metrics", Text, nullable=False),  # JSON
    Column("sha256", Text, nullable=False),  # JSON role -> weights sha256
    Column("status", String(16), nullable=False),
    Column("note", Text, nullable=False),
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=[schema_version, images, reviews, model_versions])


def _index_reviews_by_time(conn: Connection) -> None:
    # Its own Table stand-in: an Index on ``reviews`` above would attach to it and migration 1 would
    # create it too.
    t = Table("reviews", MetaData(), Column("modality", String(8)), Column("created_at", String(40)))
    Index("ix_reviews_modality_created", t.c.modality, t.c.created_at).create(conn)


Migration = tuple[int, str, Callable[[Connection], None]]

#: Ordered steps; step N brings the schema from version N-1 to N.
MIGRATIONS: list[Migration] = [
    (1, "tables: schema_version, images, reviews, model_versions", _create_tables),
    (2, "index reviews by (modality, created_at)", _index_reviews_by_time),
]
LATEST_SCHEMA = MIGRATIONS[-1][0]


def applied_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn`` (0: empty database)."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(select(sa_func.max(schema_version.c.version))).scalar() or 0)
