"""The model registry: versions of the models, their lineage, and which one the app serves (issue 14).

Each version has a parent (the version it was fine-tuned from), the review ids it learned from, gate
metrics, the sha256 of its weights per role and a status ("current" | "candidate" | "retired" |
"rejected"); exactly one is current. The shipped checkpoints (``assets/checkpoints``) are version 1,
registered the first time a store opens, with the weights' sha256 from their model cards.

``ModelRegistry`` is the registry half of :class:`~model.review.store.ReviewStore` (a mixin over its
transactions); use it through a store.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from model.review import schema as S
from model.review.errors import StoreError
from model.review.types import VERSION_STATUSES, ModelVersion, now_iso

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = ROOT / "assets" / "checkpoints"
#: Roles whose weights a model version holds (a folder each, with a model card).
VERSION_ROLES: tuple[str, ...] = ("teacher", "student", "student_nokd")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class ModelRegistry:
    """Registry methods of a store (needs its ``_read`` / ``_write`` transactions and ``data_dir``)."""

    data_dir: Path
    where: str

    def versions_dir(self) -> Path:
        """Where new model versions are written (``<data dir>/models/vN/<role>/``)."""
        return self.data_dir / "models"

    def register_version(self, mv: ModelVersion) -> int:
        """Add a version (``version`` 0: the next number); a "current" one demotes the old current."""
        if mv.status not in VERSION_STATUSES:
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
            conn.execute(insert(S.model_versions).values(**_version_row(replace(mv, version=number))))
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


def _set_current(conn: Connection, version: int) -> None:
    conn.execute(
        update(S.model_versions).where(S.model_versions.c.status == "current").values(status="retired")
    )
    conn.execute(
        update(S.model_versions).where(S.model_versions.c.version == version).values(status="current")
    )


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
