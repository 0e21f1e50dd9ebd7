"""`meddistill feedback list|export|import`: the expert reviews in the review store.

Examples:
  meddistill feedback list                              (every review, oldest first)
  meddistill feedback list --modality CT --since 2026-12-01 --check
  meddistill feedback export runs/reviews               (R2Gen annotation.json + images/)
  meddistill feedback import runs/reviews --data-dir /tmp/other-store
  meddistill audit-data runs/reviews                    (an export is a dataset the adapters read)

The store is ``--data-dir`` / ``--db-url`` (default ``$MEDDISTILL_DATA_DIR`` / ``$MEDDISTILL_DB_URL``,
else ``userdata/`` with SQLite); see ``model/review/store.py``. An export holds the de-identified
images, the reviewed labels and text and both models' outputs, never a file name or header field
(``model/review/exchange.py``). Exit status 2 when the store cannot be used (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.commands.store_args import add_store_arguments, open_store, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="the reviews, oldest first")
    ls.add_argument("--modality", choices=("CXR", "CT"), default=None, help="only this modality")
    ls.add_argument("--since", default=None, metavar="ISO", help="only reviews at or after this time (UTC)")
    ls.add_argument("--json", action="store_true", help="print the reviews as JSON")
    ls.add_argument("--check", action="store_true", help="also run the store's integrity check")
    ex = sub.add_parser("export", help="write the reviews as an R2Gen dataset (annotation.json + images)")
    ex.add_argument("out", help="folder to write (new or empty, or an earlier export)")
    ex.add_argument("--modality", choices=("CXR", "CT"), default=None, help="only this modality")
    ex.add_argument(
        "--all-reviews", action="store_true", help="every review (default: the latest review of each image)"
    )
    im = sub.add_parser("import", help="read an export back into the store (importing twice adds nothing)")
    im.add_argument("dir", help="an export folder (or its annotation.json)")
    for q in (ls, ex, im):
        add_store_arguments(q)


def _list(store, args: argparse.Namespace) -> int:
    reviews = store.list_reviews(modality=args.modality, since=args.since)
    if args.json:
        print(json.dumps([r.to_dict() for r in reviews], indent=1))
    else:
        rows = [
            [
                (r.id or "")[:12],
                r.created_at[:16].replace("T", " "),
                r.modality,
                ", ".join(r.present_findings()) or "-",
                r.tumour or "-",
                "-" if r.model_version is None else f"v{r.model_version}",
                r.source,
                _short(r.report_text or r.note, 48),
            ]
            for r in reviews
        ]
        header = ["id", "created (UTC)", "mod", "present findings", "tumour", "model", "source", "report"]
        print(table(rows, header) if rows else "No reviews in the store yet.")
        print(f"\n{len(reviews)} review(s) of {store.count()} in {store.where}")
    if args.check:
        problems = store.integrity_check()
        for problem in problems:
            print(f"integrity: {problem}", file=sys.stderr)
        print("integrity check: ok" if not problems else f"integrity check: {len(problems)} problem(s)")
        return 1 if problems else 0
    return 0


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def main(args: argparse.Namespace) -> int:
    from model.review import StoreError
    from model.review.exchange import export_r2gen, import_r2gen

    try:
        store = open_store(args, create=args.action == "import")
        with store:
            if args.action == "list":
                return _list(store, args)
            if args.action == "export":
                s = export_r2gen(
                    store, Path(args.out), latest_only=not args.all_reviews, modality=args.modality
                )
                splits = ", ".join(f"{k} {v}" for k, v in s.splits.items())
                print(f"wrote {s.reviews} review(s) and {s.images} image(s) to {s.out} ({splits})")
                print(f"read it with: meddistill audit-data {s.out}")
                return 0
            s = import_r2gen(store, Path(args.dir))
            print(
                f"imported {s.added} new review(s); {s.already} already in the store; {len(s.skipped)} skipped"
            )
            for reason in s.skipped[:20]:
                print(f"  skipped {reason}")
            return 0
    except StoreError as e:
        print(f"meddistill feedback {args.action}: error: {e}", file=sys.stderr)
        return 2
