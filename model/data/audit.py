"""Data audit: duplicates, patient leakage and shortcuts in an image set, before anyone trusts its split.

``audit_source(source)`` reads every image of a :class:`~model.data.sources.Source` once and reports:

1. **Exact duplicates**: sha256 of the *decoded* pixels (grayscale in [0, 1] as ``data.imaging.load_study``
   gives the models, quantised to 16 bits, plus the shape), so a PNG re-saved with other compression, or the same slice stored as
   RGB and RGBA, still counts as one image. Groups within a split and across splits, and label conflicts
   (one image under two labels).
2. **Near duplicates**: two images whose 64-bit DCT perceptual hashes (pHash, as in the ``imagehash``
   package: grayscale -> 32x32 Lanczos -> 2-D DCT-II -> the 8x8 lowest frequencies -> one bit per
   coefficient above their median) differ in at most ``near_k = 10`` bits *and* whose 32x32 thumbnails
   correlate at ``near_corr >= 0.95`` (Pearson: blind to brightness and contrast). Both numbers are
   measured (``benchmarks/bench_audit.py``, ``"threshold"`` in ``benchmarks/results/audit.json``): JPEG
   re-encoded, halved, brightened, contrast-stretched or annotated (a line drawn on) copies of real
   images stay within 10 bits and correlate >= 0.95, while no pair of images of two *different* NIH
   patients, nor of a normal and a cancer CT slice, passes both. pHash alone does not separate them: chest
   radiographs look alike at low frequency, and 1 pair in 13,000 of different NIH patients is within
   6 bits (``k = 6`` would drop ~4 % of NIH held-out images for look-alikes). Crops are not caught
   reliably (a 3 % crop: 0 of 60 CT slices, 58 of 60 NIH thumbnails).
   Phantoms are drawn from one template: many distinct phantom cases correlate above 0.95, so on a
   phantom set the near-duplicate count measures the template, not leakage (phantoms are never cleaned).
3. **Patients**: where the source knows a patient (``Sample.group``, a hashed key: NIH file names
   ``00000001_000.png`` carry patient 00000001), patients whose images sit in more than one split.
4. **Shortcut probe**: a logistic regression on image-level statistics (width, height, colour mode,
   intensity mean / std / percentiles, dark and bright fractions) predicts normal vs abnormal with
   stratified 5-fold cross-validation. Accuracy far above the majority baseline is a warning: when the
   probe removes at least half of the baseline's errors (``shortcut_margin``; ``(acc - maj) / (1 - maj)``
   reads the same for balanced and imbalanced classes), the labels can be read off acquisition
   properties, so a model may learn those instead of the disease. (Real disease also changes these
   statistics a little; the warning asks for a look, it proves nothing alone.) A second probe on
   intensity statistics only shows whether converting to one grayscale size removes the shortcut.

``deduplicate(samples, fingerprints)`` is the cleaning rule ``sources.build_sources`` applies to real
sets: walk the splits in the order train, val, test and drop an image when an exact copy was already
kept in any split, or a near copy in an *earlier* split (so one copy stays, in train where there is
one). Near copies inside one split are kept (adjacent CT slices of one study look alike but are not
the same image; they do not leak). Exact copies under different labels are all dropped.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")
NEAR_K = 10  # pHash Hamming distance of a near-duplicate candidate (see the module docstring)
NEAR_CORR = 0.95  # ... confirmed when the 32x32 thumbnails correlate at least this much
THUMB = 32  # thumbnail side for the correlation check
MODES: tuple[str, ...] = ("L", "RGB", "RGBA", "LA", "P", "I;16")  # colour modes the probe one-hot codes
PERCENTILES: tuple[int, ...] = (1, 5, 25, 50, 75, 95, 99)


@dataclass(frozen=True)
class AuditConfig:
    """What counts as a near duplicate and as a shortcut."""

    near_k: int = NEAR_K  # pHash Hamming distance <= near_k: near-duplicate candidate
    near_corr: float = NEAR_CORR  # thumbnail correlation >= near_corr: confirmed near duplicate
    probe_folds: int = 5  # stratified cross-validation folds of the shortcut probe
    shortcut_margin: float = 0.5  # probe removes >= this share of the majority baseline's errors: warning
    seed: int = 0  # fold shuffling
    max_examples: int = 5  # example ids per finding in the report


# ----------------------------------------------------------------------------------------------
# Fingerprints


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What the audit knows about one image file."""

    sha256: str  # of the decoded grayscale pixels (16-bit quantised) + shape
    phash: int  # 64-bit DCT perceptual hash
    thumb: np.ndarray  # (THUMB*THUMB,) float32, zero mean, unit norm: dot product = correlation
    width: int
    height: int
    mode: str  # Pillow colour mode ("L", "RGB", "RGBA", ...) or "DICOM"
    stats: tuple[float, ...]  # intensity statistics (see INTENSITY_FEATURES)


INTENSITY_FEATURES: tuple[str, ...] = (
    "mean",
    "std",
    *(f"p{q}" for q in PERCENTILES),
    "dark_frac",  # pixels < 0.05
    "bright_frac",  # pixels > 0.95
)


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is the DCT of x (scipy.fft.dct(x, norm="ortho"))."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


_DCT32 = _dct_matrix(32)


def _small(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize((THUMB, THUMB), Image.Resampling.LANCZOS), dtype=np.float64)


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """32x32 thumbnail, zero mean and unit norm, flattened (dot product of two = Pearson correlation)."""
    t = _small(pixels).ravel()
    t = t - t.mean()
    return (t / (np.linalg.norm(t) + 1e-12)).astype(np.float32)


def phash(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an (H, W) image in [0, 1] (the imagehash ``phash`` recipe)."""
    coeffs = _DCT32 @ _small(pixels) @ _DCT32.T  # (32, 32) 2-D DCT-II
    low = coeffs[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def pixel_sha256(pixels: np.ndarray) -> str:
    """sha256 of the decoded pixels, quantised to 16 bits (so float rounding in the grayscale conversion
    of an RGB(A) copy of an 8-bit gray image does not make it a different image) + the shape."""
    arr = np.round(np.clip(np.asarray(pixels, dtype=np.float64), 0, 1) * 65535).astype("<u2")
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()


def intensity_stats(pixels: np.ndarray) -> tuple[float, ...]:
    p = np.asarray(pixels, dtype=np.float32)
    pct = np.percentile(p, PERCENTILES)
    return (
        float(p.mean()),
        float(p.std()),
        *(float(v) for v in pct),
        float((p < 0.05).mean()),
        float((p > 0.95).mean()),
    )


def fingerprint_pixels(pixels: np.ndarray, mode: str = "L") -> Fingerprint:
    h, w = pixels.shape
    return Fingerprint(
        pixel_sha256(pixels), phash(pixels), thumbnail(pixels), int(w), int(h), mode, intensity_stats(pixels)
    )


_CACHE: dict[tuple, Fingerprint] = {}  # (path, size, mtime_ns, modality) -> fingerprint, this process only


def fingerprint_sample(sample) -> Fingerprint:
    """Fingerprint of a :class:`~model.data.sources.Sample` (cached per file and modification time)."""
    from pathlib import Path

    from model.data.imaging import load_study_path

    if sample.image_path is None:
        return fingerprint_pixels(np.asarray(sample.loader(), dtype=np.float32))
    p = Path(sample.image_path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, sample.modality)
    if key not in _CACHE:
        study = load_study_path(p, modality_hint=sample.modality)
        mode = study.meta.get("Colour mode", "DICOM" if study.meta.get("Format") != "PNG" else "L")
        _CACHE[key] = fingerprint_pixels(study.pixels, mode)
    return _CACHE[key]


def fingerprint_samples(
    samples: Sequence, progress: bool = False, desc: str = "fingerprints"
) -> tuple[list[Fingerprint | None], list[dict]]:
    """Fingerprints in sample order (None where the image could not be read) + the read errors."""
    from tqdm import tqdm

    from model.data.imaging import ImageLoadError

    out: list[Fingerprint | None] = []
    errors = []
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False):
        try:
            out.append(fingerprint_sample(s))
        except (ImageLoadError, OSError) as err:
            out.append(None)
            errors.append({"id": s.id, "problem": str(err)})
    return out, errors


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two vectors of 64-bit hashes (uint64) -> (len(a), len(b))."""
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.int16)


def _hashes(fps: Sequence[Fingerprint]) -> np.ndarray:
    return np.asarray([fp.phash for fp in fps], dtype=np.uint64)


def copy_matrix(
    a: Sequence[Fingerprint], b: Sequence[Fingerprint], near_k: int, near_corr: float
) -> np.ndarray:
    """(len(a), len(b)) bool: same decoded pixels, or a confirmed near duplicate (module docstring)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), dtype=bool)
    close = hamming_matrix(_hashes(a), _hashes(b)) <= near_k
    corr = np.stack([fp.thumb for fp in a]) @ np.stack([fp.thumb for fp in b]).T
    same = np.asarray([fp.sha256 for fp in a])[:, None] == np.asarray([fp.sha256 for fp in b])[None, :]
    return same | (close & (corr >= near_corr))


# ----------------------------------------------------------------------------------------------
# Labels for the probe and for conflicts


def probe_label(sample) -> str | None:
    """ "normal" | "abnormal" | None (unknown) from what a sample's source knows."""
    from model.types import TUMOUR_CLASSES

    if sample.tumour_target >= 0:
        return "normal" if TUMOUR_CLASSES[sample.tumour_target] == "none" else "abnormal"
    t = np.asarray(sample.finding_targets, dtype=np.float32)
    if (t == 1).any():
        return "abnormal"
    if t.size and not np.isnan(t).any():
        return "normal"
    return None


def class_label(sample) -> str:
    """The finest label a sample has (for label conflicts between copies)."""
    t = np.asarray(sample.finding_targets, dtype=np.float32)
    findings = "".join("?" if np.isnan(v) else str(int(v)) for v in t)
    return f"{sample.tumour_target}/{sample.subtype_target}/{findings}"


# ----------------------------------------------------------------------------------------------
# Duplicates


def _pair_name(a: str, b: str) -> str:
    a, b = sorted((a, b), key=SPLIT_ORDER.index)
    return f"{a}-{b}"


def find_duplicates(samples: Sequence, fps: Sequence[Fingerprint], cfg: AuditConfig) -> dict:
    """Exact and near duplicates within and across splits (``samples`` and ``fps`` aligned)."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        by_sha[fp.sha256].append(i)
    groups = [g for g in by_sha.values() if len(g) > 1]
    exact_within: Counter = Counter()  # split -> extra copies inside it
    exact_across: Counter = Counter()  # "train-test" -> groups spanning both
    conflicts, cross_groups, examples = 0, 0, []
    for g in groups:
        splits = Counter(samples[i].split for i in g)
        for sp, n in splits.items():
            if n > 1:
                exact_within[sp] += n - 1
        names = sorted(splits, key=SPLIT_ORDER.index)
        if len(names) > 1:
            cross_groups += 1
            for x in range(len(names)):
                for y in range(x + 1, len(names)):
                    exact_across[_pair_name(names[x], names[y])] += 1
        if len({class_label(samples[i]) for i in g}) > 1:
            conflicts += 1
        if len(examples) < cfg.max_examples:
            examples.append([samples[i].id for i in g])

    # near pairs: confirmed near duplicates between *different* decoded images
    copy = copy_matrix(fps, fps, cfg.near_k, cfg.near_corr)  # includes exact copies
    d = hamming_matrix(_hashes(fps), _hashes(fps))
    sha = np.asarray([fp.sha256 for fp in fps])
    iu, ju = np.triu_indices(len(fps), k=1)
    close = copy[iu, ju] & (sha[iu] != sha[ju])
    near_within: Counter = Counter()
    near_across: Counter = Counter()
    # look-alikes: close hashes that the thumbnail check did not confirm (e.g. adjacent CT slices of one
    # study): not counted as copies, shown because without patient ids they may still be one patient
    split_arr = np.asarray([s.split for s in samples])
    look = (d[iu, ju] <= cfg.near_k) & ~copy[iu, ju] & (split_arr[iu] != split_arr[ju])
    near_examples = []
    for i, j in zip(iu[close], ju[close], strict=True):
        a, b = samples[i].split, samples[j].split
        if a == b:
            near_within[a] += 1
        else:
            near_across[_pair_name(a, b)] += 1
            if len(near_examples) < cfg.max_examples:
                near_examples.append([samples[i].id, samples[j].id, int(d[i, j])])

    # images with a copy (exact or near) in another split, and held-out images leaked from earlier splits
    leaked: dict[str, dict] = {}
    n_cross = 0
    for i, s in enumerate(samples):
        other = copy[i] & (split_arr != s.split)
        n_cross += bool(other.any())
    for sp in SPLIT_ORDER[1:]:
        earlier = np.isin(split_arr, SPLIT_ORDER[: SPLIT_ORDER.index(sp)])
        idx = np.flatnonzero(split_arr == sp)
        hit = [i for i in idx if (copy[i] & earlier).any()]
        by_label = Counter(probe_label(samples[i]) or "unknown" for i in hit)
        of_label = Counter(probe_label(samples[i]) or "unknown" for i in idx)
        leaked[sp] = {
            "images": len(hit),
            "of": len(idx),
            "by_label": {k: f"{by_label[k]}/{of_label[k]}" for k in sorted(of_label)},
        }
    return {
        "exact": {
            "groups": len(groups),
            "extra_copies": sum(len(g) - 1 for g in groups),
            "within_split_extra_copies": dict(exact_within),
            "cross_split_groups": cross_groups,
            "cross_split_by_pair": dict(exact_across),
            "label_conflicts": conflicts,
            "examples": examples,
        },
        "near": {
            "pairs_within_split": dict(near_within),
            "pairs_across_splits": dict(near_across),
            "examples": near_examples,
            "look_alike_pairs_across_splits": int(look.sum()),
        },
        "images_with_copy_in_other_split": n_cross,
        "heldout_with_copy_in_earlier_split": leaked,
    }


def deduplicate(
    samples: Sequence, fps: Sequence[Fingerprint | None], near_k: int = NEAR_K, near_corr: float = NEAR_CORR
) -> tuple[list, dict]:
    """Drop leaked and repeated images (rule in the module docstring) -> (kept samples, what was dropped).

    Samples whose image could not be read (fingerprint None) are kept: the dataset reports them when it
    loads them, which is where the user can act on it.
    """
    label_sets: dict[str, set] = defaultdict(set)
    for s, fp in zip(samples, fps, strict=True):
        if fp is not None:
            label_sets[fp.sha256].add(class_label(s))
    conflicted = {k for k, v in label_sets.items() if len(v) > 1}

    kept: list = []
    kept_sha: set[str] = set()
    kept_by_split: dict[str, list[Fingerprint]] = {sp: [] for sp in SPLIT_ORDER}
    dropped = Counter()
    order = sorted(range(len(samples)), key=lambda i: (SPLIT_ORDER.index(samples[i].split), samples[i].id))
    for i in order:
        s, fp = samples[i], fps[i]
        if fp is None:
            kept.append(s)
            continue
        if fp.sha256 in conflicted:
            dropped[f"{s.split}:label_conflict"] += 1
            continue
        if fp.sha256 in kept_sha:
            dropped[f"{s.split}:exact"] += 1
            continue
        earlier = [f for sp in SPLIT_ORDER[: SPLIT_ORDER.index(s.split)] for f in kept_by_split[sp]]
        if copy_matrix([fp], earlier, near_k, near_corr).any():
            dropped[f"{s.split}:near"] += 1
            continue
        kept.append(s)
        kept_sha.add(fp.sha256)
        kept_by_split[s.split].append(fp)
    kept_ids = {id(s) for s in kept}
    kept = [s for s in samples if id(s) in kept_ids]  # original order
    summary = {
        "before": dict(Counter(s.split for s in samples)),
        "after": dict(Counter(s.split for s in kept)),
        "dropped": dict(sorted(dropped.items())),
        "rule": "keep the first copy in train -> val -> test order; drop later exact copies and "
        f"near copies (pHash distance <= {near_k} and thumbnail correlation >= {near_corr}) of an image "
        "kept in an earlier split; drop every copy of an "
        "image stored under two labels",
    }
    return kept, summary


# ----------------------------------------------------------------------------------------------
# Patients


def patient_check(samples: Sequence) -> dict:
    """Patients (``Sample.group``) whose images are in more than one split."""
    groups: dict[str, set] = defaultdict(set)
    images: Counter = Counter()
    for s in samples:
        if s.group:
            groups[s.group].add(s.split)
            images[s.group] += 1
    if not groups:
        return {"available": False}
    spanning = [g for g, sp in groups.items() if len(sp) > 1]
    return {
        "available": True,
        "patients": len(groups),
        "patients_in_several_splits": len(spanning),
        "images_of_those_patients": sum(images[g] for g in spanning),
        "images_with_patient": sum(images.values()),
    }


# ----------------------------------------------------------------------------------------------
# Shortcut probe


def probe_features(fps: Sequence[Fingerprint], intensity_only: bool = False) -> np.ndarray:
    rows = []
    for fp in fps:
        row = list(fp.stats)
        if not intensity_only:
            row += [fp.width, fp.height, fp.width / max(fp.height, 1)]
            row += [float(fp.mode == m) for m in MODES]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def shortcut_probe(samples: Sequence, fps: Sequence[Fingerprint], cfg: AuditConfig) -> dict:
    """Cross-validated accuracy of a logistic regression on image statistics vs the majority baseline."""
    pairs = [(fp, lab) for s, fp in zip(samples, fps, strict=True) if (lab := probe_label(s)) is not None]
    counts = Counter(lab for _, lab in pairs)
    out: dict = {
        "task": "normal vs abnormal",
        "n": len(pairs),
        "classes": dict(counts),
        "model": "standardised features -> logistic regression (L2, C=1), stratified "
        f"{cfg.probe_folds}-fold cross-validation",
        "features": {
            "all": [*INTENSITY_FEATURES, "width", "height", "aspect", *(f"mode_{m}" for m in MODES)],
            "intensity": list(INTENSITY_FEATURES),
        },
    }
    folds = min(cfg.probe_folds, min(counts.values()) if len(counts) == 2 else 0)
    if len(counts) < 2 or folds < 2:
        out["skipped"] = "needs at least two images of each class (normal and abnormal)"
        return out
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray([lab == "abnormal" for _, lab in pairs], dtype=int)
    majority = max(counts.values()) / len(pairs)
    out["majority_baseline"] = round(majority, 4)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    for name, only in (("all", False), ("intensity", True)):
        x = probe_features([fp for fp, _ in pairs], intensity_only=only)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        pred = cross_val_predict(clf, x, y, cv=cv)
        acc = float((pred == y).mean())
        recalls = [float((pred[y == c] == c).mean()) for c in (0, 1)]
        out[f"accuracy_{name}"] = round(acc, 4)
        out[f"balanced_accuracy_{name}"] = round(float(np.mean(recalls)), 4)
    best = max(out["accuracy_all"], out["accuracy_intensity"])
    # share of the majority baseline's errors the probe removes: scale-free across class balances
    out["error_reduction"] = round((best - majority) / max(1.0 - majority, 1e-9), 4)
    out["warning_at"] = cfg.shortcut_margin
    out["warning"] = bool(out["error_reduction"] >= cfg.shortcut_margin)
    return out


# ----------------------------------------------------------------------------------------------
# The whole audit


@dataclass
class AuditReport:
    """One source's audit; ``to_dict()`` is what the CLI's --json and the model card carry."""

    source: str
    kind: str
    n_images: int
    splits: dict[str, int]
    near_k: int
    near_corr: float
    duplicates: dict = field(default_factory=dict)
    patients: dict = field(default_factory=dict)
    shortcut: dict = field(default_factory=dict)
    unreadable: list[dict] = field(default_factory=list)
    cleaning: dict | None = None  # what the source itself dropped (sources built with clean=True)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _warnings(rep: AuditReport) -> list[str]:
    out = []
    d = rep.duplicates
    if d["exact"]["cross_split_groups"]:
        out.append(
            f"{rep.source}: {d['exact']['cross_split_groups']} image(s) appear identically in more than one "
            "split; evaluation on this split overstates accuracy. Drop the later copies (build_sources "
            "does this for the pipeline) or re-split."
        )
    near = sum(d["near"]["pairs_across_splits"].values())
    if near and rep.kind == "PhantomSource":
        out.append(
            f"{rep.source}: {near} pairs of phantoms across splits look near-identical; phantoms share one "
            "template, so this measures the template, not leaked copies (each phantom is its own case)."
        )
    elif near:
        out.append(
            f"{rep.source}: {near} pairs of near-identical images straddle splits; treat them as leaked "
            "copies."
        )
    within = sum(d["exact"]["within_split_extra_copies"].values())
    if within:
        out.append(
            f"{rep.source}: {within} extra exact copies inside splits; they weigh those images double."
        )
    if d["exact"]["label_conflicts"]:
        out.append(
            f"{rep.source}: {d['exact']['label_conflicts']} image(s) stored under two different labels; "
            "check the labels of these files."
        )
    p = rep.patients
    if p.get("patients_in_several_splits"):
        out.append(
            f"{rep.source}: {p['patients_in_several_splits']} patients ({p['images_of_those_patients']} "
            "images) have images in more than one split; split by patient instead of by image."
        )
    s = rep.shortcut
    if s.get("warning"):
        out.append(
            f"{rep.source}: image statistics alone predict normal vs abnormal with "
            f"{max(s['accuracy_all'], s['accuracy_intensity']):.0%} cross-validated accuracy (majority "
            f"class {s['majority_baseline']:.0%}): a model can learn the acquisition instead of the "
            "disease. Normalise intensities or report results with this caveat."
        )
    if rep.unreadable:
        out.append(f"{rep.source}: {len(rep.unreadable)} images could not be read (see 'unreadable').")
    return out


def audit_samples(
    samples: Sequence,
    name: str = "dataset",
    kind: str = "samples",
    cfg: AuditConfig | None = None,
    progress: bool = False,
) -> AuditReport:
    """Audit a list of samples (any source, any mix of splits)."""
    cfg = cfg or AuditConfig()
    fps, errors = fingerprint_samples(samples, progress=progress, desc=f"audit {name}")
    ok = [(s, fp) for s, fp in zip(samples, fps, strict=True) if fp is not None]
    good_samples = [s for s, _ in ok]
    good_fps = [fp for _, fp in ok]
    rep = AuditReport(
        source=name,
        kind=kind,
        n_images=len(samples),
        splits={sp: sum(s.split == sp for s in samples) for sp in SPLIT_ORDER},
        near_k=cfg.near_k,
        near_corr=cfg.near_corr,
        unreadable=errors,
    )
    rep.duplicates = find_duplicates(good_samples, good_fps, cfg)
    rep.patients = patient_check(samples)
    rep.shortcut = shortcut_probe(good_samples, good_fps, cfg)
    rep.warnings = _warnings(rep)
    return rep


def audit_source(source, cfg: AuditConfig | None = None, progress: bool = False) -> AuditReport:
    """Audit every split of one source (as the source splits it: raw, or cleaned if built so)."""
    rep = audit_samples(
        source.all_samples(), name=source.name, kind=type(source).__name__, cfg=cfg, progress=progress
    )
    rep.cleaning = getattr(source, "cleaning", None)
    return rep


def audit_real_sets(root, cfg: AuditConfig | None = None, progress: bool = False) -> dict:
    """Every real set under ``root`` (``sources.build_sources``): the collection as shipped ("raw") and
    the cleaned split the pipeline uses ("used"), in the short form a model card records."""
    from model.data.sources import build_sources

    out: dict = {}
    if root is None:
        return out
    for clean, key in ((False, "raw"), (True, "used")):
        for src in build_sources(None, root, clean=clean):
            out.setdefault(src.name, {})[key] = summary(audit_source(src, cfg, progress=progress))
    return out


def summary(rep: AuditReport) -> dict:
    """The short form a model card records."""
    d = rep.duplicates
    s = rep.shortcut
    return {
        "source": rep.source,
        "images": rep.n_images,
        "splits": rep.splits,
        "exact_duplicate_groups_across_splits": d["exact"]["cross_split_groups"],
        "near_duplicate_pairs_across_splits": sum(d["near"]["pairs_across_splits"].values()),
        "images_with_copy_in_other_split": d["images_with_copy_in_other_split"],
        "patients_in_several_splits": rep.patients.get("patients_in_several_splits"),
        "shortcut_probe": {
            k: s.get(k)
            for k in (
                "n",
                "majority_baseline",
                "accuracy_all",
                "accuracy_intensity",
                "error_reduction",
                "warning",
                "skipped",
            )
            if k in s
        },
        "cleaning": rep.cleaning,
        "warnings": rep.warnings,
        "near_duplicate_rule": f"64-bit DCT pHash Hamming distance <= {rep.near_k} and 32x32 thumbnail "
        f"correlation >= {rep.near_corr}",
    }
