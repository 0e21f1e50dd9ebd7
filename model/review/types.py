"""What the review store keeps: an expert's review of one image, and a version of the models.

Plain frozen dataclasses with ``to_dict`` / ``from_dict`` (JSON-ready), shared by the store, the CLI,
``meddistill update`` and the dashboard. A review holds the de-identified pixels' sha256, never a DICOM
header field or an uploaded file name (issue 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: The statuses a model version can have; exactly one version is "current" at a time.
VERSION_STATUSES: tuple[str, ...] = ("current", "candidate", "retired", "rejected")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds (``2026-12-03T10:35:12.123456+00:00``).

    One fixed format, so that ISO strings sort in time order (``list_reviews(since=...)``).
    """
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def as_iso(when: str | datetime) -> str:
    """A datetime (naive = UTC) or an ISO string -> the store's ISO format."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class FindingReview:
    """The reviewer's call on one finding (a name in ``model.types.FINDINGS``)."""

    name: str
    present: bool
    side: str | None = None  # "left" | "right" | "bilateral" where it applies
    severity: str | None = None  # "mild" | "moderate" | "severe" where it applies

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "present": self.present, "side": self.side, "severity": self.severity}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FindingReview:
        return cls(
            name=str(d["name"]),
            present=bool(d["present"]),
            side=d.get("side"),
            severity=d.get("severity"),
        )


@dataclass(frozen=True)
class Review:
    """An expert's review of one de-identified image.

    ``outputs`` holds both models' outputs at review time:
    ``{"teacher": {"report": str, "findings": {name: prob}, "tumour": {...}}, "student": {...}}``.
    ``id`` is None until saved; the store derives it from the image, the labels and the text, so the
    same review saved twice has one id and one row.
    """

    image_sha256: str  # pixel_sha256 of the de-identified pixels (model/review/store.py)
    modality: str  # "CXR" | "CT"
    findings: tuple[FindingReview, ...]  # the reviewer's labels, one per finding they marked
    tumour: str | None  # tumour class set by the reviewer (CT), None when not set
    report_text: str  # the accepted or edited report
    note: str  # free-text note of the reviewer
    outputs: dict[str, Any]  # both models' outputs at review time (see above)
    model_version: int | None  # registry version that produced ``outputs``
    created_at: str  # ISO 8601 UTC (``now_iso()``)
    id: str | None = None  # set by the store
    source: str = "dashboard"  # where the review came from: "dashboard" | "import" | "phantom" ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image_sha256": self.image_sha256,
            "modality": self.modality,
            "findings": [f.to_dict() for f in self.findings],
            "tumour": self.tumour,
            "report_text": self.report_text,
            "note": self.note,
            "outputs": self.outputs,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Review:
        return cls(
            image_sha256=str(d["image_sha256"]),
            modality=str(d["modality"]),
            findings=tuple(FindingReview.from_dict(f) for f in d.get("findings") or ()),
            tumour=d.get("tumour"),
            report_text=str(d.get("report_text") or ""),
            note=str(d.get("note") or ""),
            outputs=dict(d.get("outputs") or {}),
            model_version=None if d.get("model_version") is None else int(d["model_version"]),
            created_at=str(d.get("created_at") or now_iso()),
            id=d.get("id"),
            source=str(d.get("source") or "dashboard"),
        )

    def finding(self, name: str) -> FindingReview | None:
        """The reviewer's call on one finding, None when they did not mark it."""
        return next((f for f in self.findings if f.name == name), None)

    def present_findings(self) -> list[str]:
        """Names of the findings the reviewer marked present."""
        return [f.name for f in self.findings if f.present]


@dataclass(frozen=True)
class ModelVersion:
    """One version of the models in the registry (the shipped weights are version 1)."""

    version: int  # 1, 2, ...; 0 asks register_version for the next free number
    parent: int | None  # the version it was fine-tuned from (None for the shipped weights)
    path: str  # checkpoint folder (relative to the repo root when inside it) holding one folder per role
    created_at: str  # ISO 8601 UTC
    feedback_ids: tuple[str, ...]  # review ids it learned from
    metrics: dict[str, Any]  # gate metrics, before/after
    sha256: dict[str, str]  # role -> weights sha256 ("teacher", "student", ...)
    status: str  # one of VERSION_STATUSES
    note: str = ""  # why it was promoted / rejected / rolled back

    def __post_init__(self) -> None:
        object.__setattr__(self, "feedback_ids", tuple(self.feedback_ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "path": self.path,
            "created_at": self.created_at,
            "feedback_ids": list(self.feedback_ids),
            "metrics": self.metrics,
            "sha256": dict(self.sha256),
            "status": self.status,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelVersion:
        return cls(
            version=int(d["version"]),
            parent=None if d.get("parent") is None else int(d["parent"]),
            path=str(d["path"]),
            created_at=str(d.get("created_at") or now_iso()),
            feedback_ids=tuple(d.get("feedback_ids") or ()),
            metrics=dict(d.get("metrics") or {}),
            sha256=dict(d.get("sha256") or {}),
            status=str(d.get("status") or "candidate"),
            note=str(d.get("note") or ""),
        )
