"""The options every review-store command shares (``--data-dir``, ``--db-url``), and opening the store."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="review store folder (default: $MEDDISTILL_DATA_DIR, else userdata/ in the repository)",
    )
    p.add_argument(
        "--db-url",
        default=None,
        metavar="URL",
        help="database URL (default: $MEDDISTILL_DB_URL, else sqlite:///DATA_DIR/meddistill.sqlite; "
        "PostgreSQL: postgresql://user@host/db)",
    )


def open_store(args: argparse.Namespace, create: bool = True):
    """The store the options name (StoreError, with a sentence, when it cannot be opened)."""
    from model.review import ReviewStore

    return ReviewStore.open(args.db_url, Path(args.data_dir) if args.data_dir else None, create=create)


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain text table: columns padded to their widest cell, a rule under the header."""
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
