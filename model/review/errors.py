"""Why the review store refused: one error family, and driver errors turned into sentences for the user.

Every failure a user can cause raises a :class:`StoreError` whose ``str`` says what happened and what to
do; the page or the CLI shows it, never a raw SQLAlchemy traceback (issue 14, "Bad input").
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError


class StoreError(Exception):
    """Anything a user can cause that stops the store: the message is a sentence for them."""


class InvalidReviewError(StoreError):
    """An empty or absurd review, or pixels that are not a de-identified image."""


class StoreUnavailableError(StoreError):
    """The database is missing, unreachable, read-only, locked or damaged."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer meddistill."""


def classify(err: BaseException) -> str:
    """ "read-only" | "locked" | "unreachable" | "damaged" | "other" from a driver error (SQLite or
    PostgreSQL: the drivers' messages, as their exception classes differ)."""
    orig = getattr(err, "orig", None) or err
    text = " ".join(str(a) for a in orig.args).lower()
    name = type(orig).__name__.lower()
    if any(w in text for w in ("readonly", "read-only", "read only", "permission denied")):
        return "read-only"
    if any(w in text for w in ("locked", "lock timeout", "busy")) or "locknotavailable" in name:
        return "locked"
    if any(
        w in text
        for w in ("unable to open", "could not connect", "connection refused", "connection to server")
    ):
        return "unreachable"
    if "does not exist" in text and "database" in text:
        return "unreachable"
    if any(w in text for w in ("malformed", "not a database", "disk i/o")):
        return "damaged"
    return "other"


def first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def unavailable(
    err: SQLAlchemyError | OSError, where: str, data_dir: Path, action: str, timeout_s: float
) -> StoreError:
    """The StoreError to raise for a driver or file error met while doing ``action``."""
    if isinstance(err, OSError):
        return StoreUnavailableError(
            f"The review store's files under {data_dir} could not be written or read, so {action} did not "
            f"happen: {err.strerror or err}. Check the folder's permissions and free space."
        )
    kind = classify(err)
    if kind == "read-only":
        msg = (
            f"The review database {where} is read-only, so {action} did not happen. Make it writable "
            "or point --db-url / MEDDISTILL_DB_URL at a writable database; nothing stored was lost."
        )
    elif kind == "locked":
        msg = (
            f"The review database {where} is locked by another program (waited {timeout_s:g} s), "
            f"so {action} did not happen. Try again when it is done; nothing stored was lost."
        )
    elif kind == "unreachable":
        msg = f"Cannot open the review database {where}, so {action} did not happen: {first_line(err)}."
    elif kind == "damaged":
        msg = (
            f"The review database {where} is damaged or is not a meddistill database, so {action} did "
            f"not happen ({first_line(err)}). Restore it from a backup or use another --db-url."
        )
    else:
        msg = f"The review database {where} failed while {action}: {first_line(err)}."
    return StoreUnavailableError(msg)
