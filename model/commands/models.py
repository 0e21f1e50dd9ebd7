"""`meddistill models list|promote VERSION|rollback`: the model registry.

Examples:
  meddistill models list                  (every version: status, parent, reviews learned from, sha256)
  meddistill models promote 3             (make version 3 the one the app serves)
  meddistill models promote 4 --force     (also a version the update gate rejected)
  meddistill models rollback              (back to the current version's parent)

Version 1 is the shipped weights (``assets/checkpoints``), registered the first time the store opens.
``meddistill update`` registers the versions it trains. The store is ``--data-dir`` / ``--db-url``, as
for ``meddistill feedback``. Exit status 2 when the store refuses (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys

from model.commands.store_args import add_store_arguments, open_store, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every version, oldest first")
    ls.add_argument("--json", action="store_true", help="print the versions as JSON")
    pr = sub.add_parser("promote", help="make VERSION the current version")
    pr.add_argument("version", type=int)
    pr.add_argument("--force", action="store_true", help="promote even a version the update gate rejected")
    rb = sub.add_parser("rollback", help="go back to the current version's parent")
    for q in (ls, pr, rb):
        add_store_arguments(q)


def format_versions(versions) -> str:
    """The registry as a table (the current version marked with *)."""
    rows = [
        [
            ("* " if v.status == "current" else "  ") + f"v{v.version}",
            v.status,
            "-" if v.parent is None else f"v{v.parent}",
            v.created_at[:16].replace("T", " "),
            str(len(v.feedback_ids)),
            " ".join(f"{role}:{sha[:10]}" for role, sha in sorted(v.sha256.items())) or "-",
            v.path,
            v.note,
        ]
        for v in versions
    ]
    header = ["version", "status", "parent", "created (UTC)", "reviews", "weights sha256", "path", "note"]
    return table(rows, header)


def main(args: argparse.Namespace) -> int:
    from model.review import StoreError

    try:
        with open_store(args) as store:
            if args.action == "list":
                versions = store.versions()
                if args.json:
                    print(json.dumps([v.to_dict() for v in versions], indent=1))
                else:
                    print(format_versions(versions))
                return 0
            if args.action == "promote":
                mv = store.promote(args.version, force=args.force)
                print(f"v{mv.version} is now the current version: the one the app serves.")
                return 0
            before = store.current_version().version
            mv = store.rollback()
            print(f"rolled back from v{before} to v{mv.version}; v{mv.version} is now the current version.")
            return 0
    except StoreError as e:
        print(f"meddistill models {args.action}: error: {e}", file=sys.stderr)
        return 2
