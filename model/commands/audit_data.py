"""`meddistill audit-data DIR`: duplicates, patient leakage and shortcuts in a dataset, before training.

Examples:
  meddistill audit-data ../shared/data/chest_ct
  meddistill audit-data ../shared/data --json audit.json      (every set found under the folder)
  meddistill audit-data data/phantoms --cleaned                (as the pipeline would use it)

DIR is any set the adapters read (``model/data/sources.py``): a phantom folder, an R2Gen
``annotation.json`` (or its folder), an NIH CSV (or its folder), class folders, or a folder holding
several of these. By default the collection is audited as it ships (its own splits); ``--cleaned``
audits the split the pipeline trains on (patients whole, leaked copies dropped). What each check does
and why its thresholds are what they are: ``model/data/audit.py``. Exit status 0 also when warnings
are found (they are findings, not errors); 2 when DIR cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from model.data.audit import NEAR_CORR, NEAR_K

    p.add_argument("dir", help="dataset folder or file (see above)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the audit as JSON ('-': stdout)")
    p.add_argument(
        "--cleaned", action="store_true", help="audit the pipeline's cleaned split, not the raw one"
    )
    p.add_argument("--near-k", type=int, default=NEAR_K, help="pHash distance of a near-duplicate candidate")
    p.add_argument(
        "--near-corr", type=float, default=NEAR_CORR, help="thumbnail correlation that confirms it"
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the shortcut probe")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def find_sources(path: Path, cleaned: bool) -> list:
    """The set at ``path``, else every set one level below it."""
    from model.data.sources import open_source

    src = open_source(path, clean=cleaned)
    if src is not None:
        return [src]
    if not path.is_dir():
        return []
    subs = sorted(q for q in path.iterdir() if q.is_dir())
    return [s for sub in subs if (s := open_source(sub, cleaned)) is not None]


def format_report(rep: dict) -> str:
    """The text form of one source's audit."""
    d = rep["duplicates"]
    lines = [
        f"== {rep['source']} ({rep['kind']}): {rep['n_images']} images, "
        + ", ".join(f"{k} {v}" for k, v in rep["splits"].items()),
    ]
    if rep.get("cleaning"):
        c = rep["cleaning"]
        lines.append(f"  cleaned from {c['before']}: dropped {c['dropped'] or 'nothing'}, "
                     f"{c['patients_moved_images']} images moved to keep patients whole")  # fmt: skip
    ex = d["exact"]
    lines.append(
        f"  exact duplicates (sha256 of decoded pixels): {ex['groups']} groups, {ex['extra_copies']} extra "
        f"copies; across splits {ex['cross_split_groups']} groups {ex['cross_split_by_pair'] or ''}; "
        f"label conflicts {ex['label_conflicts']}"
    )
    near = d["near"]
    lines.append(
        f"  near duplicates (pHash <= {rep['near_k']} bits and thumbnail correlation >= {rep['near_corr']}): "
        f"within splits {near['pairs_within_split'] or 0}, across splits {near['pairs_across_splits'] or 0} "
        f"pairs ({near['look_alike_pairs_across_splits']} look-alike pairs across splits not counted)"
    )
    lines.append(f"  images with a copy in another split: {d['images_with_copy_in_other_split']}")
    for sp, v in d["heldout_with_copy_in_earlier_split"].items():
        by = ", ".join(f"{k} {n}" for k, n in v["by_label"].items())
        lines.append(f"    {sp}: {v['images']}/{v['of']} have a copy in an earlier split ({by})")
    p = rep["patients"]
    if p.get("available"):
        lines.append(
            f"  patients: {p['patients']}; in more than one split: {p['patients_in_several_splits']} "
            f"({p['images_of_those_patients']} images)"
        )
    else:
        lines.append("  patients: no patient ids in this source (split by patient cannot be checked)")
    s = rep["shortcut"]
    if "skipped" in s:
        lines.append(f"  shortcut probe: skipped ({s['skipped']})")
    else:
        lines.append(
            f"  shortcut probe ({s['task']}, n={s['n']}, {s['model']}): accuracy {s['accuracy_all']:.3f} "
            f"(intensity only {s['accuracy_intensity']:.3f}) vs majority {s['majority_baseline']:.3f}; "
            f"removes {s['error_reduction']:.0%} of the baseline's errors"
        )
    if rep["unreadable"]:
        lines.append(f"  unreadable images: {len(rep['unreadable'])}, e.g. {rep['unreadable'][0]['problem']}")
    lines += [f"  WARNING {w}" for w in rep["warnings"]] or ["  no warnings"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from model.data.audit import AuditConfig, audit_source

    path = Path(args.dir)
    if not path.exists():
        print(
            f"meddistill audit-data: {path} does not exist; give a dataset folder or file.", file=sys.stderr
        )
        return 2
    sources = find_sources(path, args.cleaned)
    if not sources:
        print(
            f"meddistill audit-data: no dataset found at {path}. Expected a phantom folder, an R2Gen "
            "annotation.json, an NIH CSV, class folders (normal/, adenocarcinoma_.../) or a folder of these.",
            file=sys.stderr,
        )
        return 2
    cfg = AuditConfig(near_k=args.near_k, near_corr=args.near_corr, probe_folds=args.folds)
    reports = []
    for src in sources:
        try:
            reports.append(audit_source(src, cfg, progress=not args.quiet).to_dict())
        except (OSError, ValueError, KeyError) as err:
            print(f"meddistill audit-data: could not read {src.name} at {path}: {err}", file=sys.stderr)
            return 2
    doc = {"path": str(path), "split": "cleaned" if args.cleaned else "raw", "sources": reports}
    if args.json == "-":
        print(json.dumps(doc, indent=2, default=str))
    else:
        print("\n\n".join(format_report(r) for r in reports))
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
            print(f"\nwrote {args.json}")
    return 0
