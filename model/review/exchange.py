"""Reviews in and out of the store as an R2Gen dataset (``meddistill feedback export|import``).

An export is the layout the dataset adapters already read (``model/data/sources.py``: ``open_source``
gives an ``R2GenSource`` for a folder with ``annotation.json`` and no ``dataset.json``)::

    OUT/annotation.json   {"train": [entry, ...], "val": [...], "test": [...]}
    OUT/images/<sha256>.png   the stored 16-bit de-identified images, as they are in the store

    entry = {"id": review id, "image_path": ["images/<sha256>.png"], "report": the reviewed report,
             "split": "train", "modality": "CXR" | "CT", "review": Review.to_dict() (labels, note,
             both models' outputs, model version, time)}

The split of an image is ``hash_split`` of its sha256, so an image keeps its split across exports and
its reviews never straddle splits. ``import_r2gen`` reads such a folder back into a store: the exact
stored pixel values (so the sha256 is unchanged), and the same review ids (importing twice adds
nothing). Entries without a ``review`` (a plain R2Gen set) are skipped and counted.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from model.review.pixels import image_path, pixel_sha256, read_png
from model.review.store import InvalidReviewError, ReviewStore, StoreError, review_id
from model.review.types import Review

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ExportSummary:
    """What an export wrote."""

    out: Path
    reviews: int = 0
    images: int = 0
    splits: dict[str, int] = field(default_factory=dict)


@dataclass
class ImportSummary:
    """What an import did: new reviews, reviews already in the store, entries skipped and why."""

    added: int = 0
    already: int = 0
    skipped: list[str] = field(default_factory=list)


def _split_of(review: Review, val_frac: float, test_frac: float) -> str:
    from model.data.sources import hash_split

    return hash_split(review.image_sha256, val_frac, test_frac)


def export_r2gen(
    store: ReviewStore,
    out: Path,
    latest_only: bool = True,
    modality: str | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
) -> ExportSummary:
    """Write the store's reviews to ``out`` in the R2Gen layout (see the module docstring).

    ``latest_only``: one entry per image, its latest review (a dataset wants one label set per image).
    ``annotation.json`` is written last, through a temporary file, so a half-written export is never
    mistaken for a dataset.
    """
    out = Path(out)
    if out.exists() and any(p.name != "images" and p.name != "annotation.json" for p in out.iterdir()):
        raise StoreError(f"{out} is not empty and not an earlier export; choose an empty or new folder.")
    reviews = store.list_reviews(modality=modality)
    if latest_only:
        by_image: dict[str, Review] = {}
        for r in reviews:  # oldest first: the last one wins
            by_image[r.image_sha256] = r
        reviews = sorted(by_image.values(), key=lambda r: (r.created_at, r.id or ""))
    (out / "images").mkdir(parents=True, exist_ok=True)
    annotation: dict[str, list[dict]] = {s: [] for s in SPLITS}
    copied: set[str] = set()
    for r in reviews:
        src = image_path(store.images_dir, r.image_sha256)
        if not src.is_file():
            raise StoreError(
                f"The image of review {r.id} is missing from {store.images_dir}; run the store's integrity "
                "check (meddistill feedback list --check)."
            )
        rel = f"images/{src.name}"
        if r.image_sha256 not in copied:
            if not (out / rel).is_file():
                shutil.copyfile(src, out / rel)
            copied.add(r.image_sha256)
        split = _split_of(r, val_frac, test_frac)
        annotation[split].append(
            {
                "id": r.id,
                "image_path": [rel],
                "report": r.report_text,
                "split": split,
                "modality": r.modality,
                "review": r.to_dict(),
            }
        )
    tmp = out / ".annotation.json.tmp"
    tmp.write_text(json.dumps(annotation, indent=1) + "\n")
    os.replace(tmp, out / "annotation.json")
    return ExportSummary(out, len(reviews), len(copied), {s: len(v) for s, v in annotation.items()})


def import_r2gen(store: ReviewStore, folder: Path) -> ImportSummary:
    """Read an export (``folder`` or its ``annotation.json``) back into ``store``; idempotent."""
    folder = Path(folder)
    ann = folder if folder.is_file() else folder / "annotation.json"
    root = ann.parent
    try:
        annotation = json.loads(ann.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(
            f"Cannot read {ann}: {e}. Give a folder written by `meddistill feedback export`."
        ) from e
    if not isinstance(annotation, dict):
        raise StoreError(f"{ann} is not an R2Gen annotation (a dict of split -> entries).")
    summary = ImportSummary()
    for split, entries in annotation.items():
        for entry in entries if isinstance(entries, list) else []:
            eid = str(entry.get("id", "?")) if isinstance(entry, dict) else "?"
            if not isinstance(entry, dict) or not isinstance(entry.get("review"), dict):
                summary.skipped.append(f"{split}/{eid}: no review (not written by feedback export)")
                continue
            paths = entry.get("image_path") or []
            paths = [paths] if isinstance(paths, str) else paths
            path = (root / paths[0]).resolve() if paths else None
            if path is None or not path.is_relative_to(root.resolve()) or not path.is_file():
                summary.skipped.append(f"{split}/{eid}: image missing")
                continue
            try:
                review = Review.from_dict(entry["review"])
                pixels = read_png(path)
            except (KeyError, TypeError, ValueError, OSError) as e:
                summary.skipped.append(f"{split}/{eid}: unreadable ({e})")
                continue
            if pixel_sha256(pixels) != review.image_sha256:
                summary.skipped.append(f"{split}/{eid}: the image does not match the review's sha256")
                continue
            known = store.get(review_id(review)) is not None
            try:
                store.save_review(replace(review, id=None), pixels)
            except InvalidReviewError as e:  # a bad entry; a failing database stops the import
                summary.skipped.append(f"{split}/{eid}: {e}")
                continue
            if known:
                summary.already += 1
            else:
                summary.added += 1
    return summary
