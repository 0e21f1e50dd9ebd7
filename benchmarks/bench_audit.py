"""Data audit of the real sets in ../shared/data: before and after the pipeline's cleaning, and the
near-duplicate threshold measured on them.

For every real set ``build_sources`` finds (nih1000, chest_ct, any R2Gen set):

- ``raw``: the collection as it ships (its own splits) -> duplicates across splits, patients in several
  splits, shortcut probe (cross-validated accuracy vs the majority class);
- ``cleaned``: what the pipeline trains and evaluates on (``build_sources(clean=True)``: patients whole,
  leaked copies dropped) -> the same figures, which should read 0 duplicates across splits and 0
  patients in several splits.

``threshold``: why a near duplicate is pHash distance <= 10 *and* thumbnail correlation >= 0.95
(``model/data/audit.py``). Negatives are pairs that are surely different images: two different NIH
patients, or a normal and a cancer CT slice. Positives are copies made here of 60 random images per set
(JPEG q70, half size, brighter, more contrast, a line drawn on, RGBA, a 3 % crop).

    .venv/bin/python benchmarks/bench_audit.py [--data ../shared/data] [--n-copies 60]

writes ``benchmarks/results/audit.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.data.audit import (
    NEAR_CORR,
    NEAR_K,
    _hashes,
    audit_source,
    fingerprint_pixels,
    fingerprint_samples,
    hamming_matrix,
    probe_label,
    summary,
)
from model.data.imaging import to_grayscale
from model.data.sources import build_sources

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "audit.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------------------------
# Threshold


def copy_of(img: Image.Image, kind: str) -> Image.Image:
    """A re-encoded / edited copy of an image (what a collection's duplicates look like)."""
    w, h = img.size
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    if kind == "jpeg_q70":
        buf = io.BytesIO()
        img.convert("L").save(buf, "JPEG", quality=70)
        return Image.open(io.BytesIO(buf.getvalue()))
    if kind == "half_size":
        return img.resize((max(1, w // 2), max(1, h // 2)))
    if kind == "brighter":
        return Image.fromarray(np.clip(gray * 1.15 + 10, 0, 255).astype(np.uint8))
    if kind == "contrast":
        return Image.fromarray(np.clip((gray - 128) * 1.3 + 128, 0, 255).astype(np.uint8))
    if kind == "line_drawn":
        out = img.convert("L").copy()
        ImageDraw.Draw(out).line([(w * 0.6, h * 0.1), (w * 0.8, h * 0.5)], fill=255, width=max(1, w // 150))
        return out
    if kind == "rgba":
        return img.convert("RGBA")
    if kind == "crop_3pct":
        c = int(0.03 * min(w, h))
        return img.crop((c, c, w - c, h - c))
    raise ValueError(kind)


COPY_KINDS = ("jpeg_q70", "half_size", "brighter", "contrast", "line_drawn", "rgba", "crop_3pct")


def _pairs_stats(fps, mask_pairs: np.ndarray) -> dict:
    """Negatives: how many pairs (upper triangle where ``mask_pairs``) pass pHash alone / the full rule."""
    h = _hashes(fps)
    d = hamming_matrix(h, h)
    t = np.stack([fp.thumb for fp in fps])
    iu, ju = np.triu_indices(len(fps), k=1)
    sel = mask_pairs[iu, ju]
    dist = d[iu, ju][sel]
    corr = np.einsum("ij,ij->i", t[iu[sel]], t[ju[sel]])
    return {
        "pairs": int(sel.sum()),
        "phash_within": {str(k): int((dist <= k).sum()) for k in (4, 6, 8, 10, 12)},
        "max_thumbnail_corr": round(float(corr.max()), 4),
        "pass_rule": int(((dist <= NEAR_K) & (corr >= NEAR_CORR)).sum()),
    }


def threshold_study(data: Path, n_copies: int, seed: int) -> dict:
    out: dict = {"rule": f"pHash Hamming <= {NEAR_K} and 32x32 thumbnail correlation >= {NEAR_CORR}"}
    raw = {s.name: s for s in build_sources(None, data, clean=False)}
    rng = np.random.default_rng(seed)
    if "nih1000" in raw:
        samples = raw["nih1000"].all_samples()
        fps, _ = fingerprint_samples(samples)
        with (data / "nih1000" / "labels.csv").open(newline="") as fh:
            pid = {Path(r["path"]).with_suffix("").as_posix(): r["patient_id"] for r in csv.DictReader(fh)}
        patients = np.asarray([pid[s.id.split(":", 1)[1]] for s in samples])
        out["negatives_nih_different_patients"] = _pairs_stats(fps, patients[:, None] != patients[None, :])
    if "chest_ct" in raw:
        samples = raw["chest_ct"].all_samples()
        fps, _ = fingerprint_samples(samples)
        labels = np.asarray([probe_label(s) for s in samples])
        out["negatives_ct_normal_vs_cancer"] = _pairs_stats(fps, labels[:, None] != labels[None, :])
    positives = {}
    for name, src in raw.items():
        samples = [s for s in src.all_samples() if s.image_path]
        pick = rng.choice(len(samples), min(n_copies, len(samples)), replace=False)
        per = {}
        for kind in COPY_KINDS:
            dists, corrs = [], []
            for i in pick:
                img = Image.open(samples[i].image_path)
                img.load()
                a = fingerprint_pixels(to_grayscale(img)[0])
                b = fingerprint_pixels(to_grayscale(copy_of(img, kind))[0])
                dists.append(bin(a.phash ^ b.phash).count("1"))
                corrs.append(float(a.thumb @ b.thumb))
            d, c = np.asarray(dists), np.asarray(corrs)
            per[kind] = {
                "max_phash_distance": int(d.max()),
                "min_thumbnail_corr": round(float(c.min()), 4),
                "caught": round(float(((d <= NEAR_K) & (c >= NEAR_CORR)).mean()), 4),
            }
        positives[name] = {"copies_per_kind": len(pick), **per}
    out["positives_copies"] = positives
    return out


# ----------------------------------------------------------------------------------------------
# Before / after


def audit_sets(data: Path) -> dict:
    out = {}
    for clean in (False, True):
        for src in build_sources(None, data, clean=clean):
            rep = audit_source(src, progress=True)
            entry = out.setdefault(src.name, {})
            s = summary(rep)
            s["heldout_with_copy_in_earlier_split"] = rep.duplicates["heldout_with_copy_in_earlier_split"]
            s["exact_extra_copies_within_splits"] = sum(
                rep.duplicates["exact"]["within_split_extra_copies"].values()
            )
            s["shortcut_probe"] = {k: v for k, v in rep.shortcut.items() if k not in ("features", "model")}
            entry["cleaned" if clean else "raw"] = s
    return out


def headline(sets: dict) -> dict:
    """The few numbers the README and the model card quote."""
    out = {}
    for name, e in sets.items():
        raw, cl = e["raw"], e["cleaned"]
        out[name] = {
            "images_with_copy_in_other_split": {"before": raw["images_with_copy_in_other_split"],
                                                "after": cl["images_with_copy_in_other_split"]},
            "patients_in_several_splits": {"before": raw["patients_in_several_splits"],
                                           "after": cl["patients_in_several_splits"]},
            "images": {"before": raw["images"], "after": cl["images"]},
            "probe_accuracy_vs_majority": {
                "before": [raw["shortcut_probe"].get("accuracy_all"), raw["shortcut_probe"].get("majority_baseline")],
                "after": [cl["shortcut_probe"].get("accuracy_all"), cl["shortcut_probe"].get("majority_baseline")],
            },
            "shortcut_warning_after": cl["shortcut_probe"].get("warning"),
        }  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="real sets root (../shared/data)")
    ap.add_argument("--n-copies", type=int, default=60, help="images per set copied for the threshold study")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"bench_audit: {data} is absent; nothing to audit (the real sets live in ../shared/data).")
        return
    t0 = time.perf_counter()
    sets = audit_sets(data)
    result = {
        "headline": headline(sets),
        "sets": sets,
        "threshold": threshold_study(data, args.n_copies, args.seed),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": f".venv/bin/python benchmarks/bench_audit.py --n-copies {args.n_copies} --seed {args.seed}",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["headline"], indent=1))
    th = result["threshold"]
    for k in ("negatives_nih_different_patients", "negatives_ct_normal_vs_cancer"):
        if k in th:
            print(f"{k}: {th[k]}")
    for name, per in th["positives_copies"].items():
        print(name, {k: v["caught"] for k, v in per.items() if isinstance(v, dict)})
    print(f"wrote {OUT} in {result['seconds']} s")


if __name__ == "__main__":
    main()
