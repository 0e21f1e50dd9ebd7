"""One interface over every image/report set the models learn from.

A *source* turns files on disk into :class:`Sample` records with targets in our unified label
spaces (``model.types``). A source supervises only what it knows: unknown multi-label targets are
NaN and unknown class targets are -1, so the losses mask them out.

Adapters:

- :class:`PhantomSource`: the set written by ``meddistill generate-data`` (exact ground truth).
- :class:`R2GenSource`: R2Gen ``annotation.json`` (IU X-Ray / MIMIC-CXR layout); reports written
  by people, finding targets from ``model.data.labeler.label_report``.
- :class:`NIHSource`: NIH ChestX-ray14 CSV (``Image Index``, ``Finding Labels``), or the
  ``../shared/data/nih1000`` variant (``path,image_index,finding_labels,patient_id,age,sex,view``);
  reports composed from the labels.
- :class:`ClassFolderSource`: one folder per class (``../shared/data/chest_ct``); reports composed.

Splits are "train", "val", "test". A folder split on disk wins (``valid/`` is divided by a stable
hash into "val" and "test" halves so that real sets have a held-out test split too); otherwise a
stable hash of the id (or of the patient, where known, so one patient never straddles splits).

Cleaning (``clean=True``; ``build_sources`` sets it for every real set, issue 11): the collections'
own splits leak. NIH thumbnails are split by image, not patient, and the chest CT collection repeats
images within and across its splits. A clean source (1) moves every patient whole into one split (train
when any of the patient's images is in train, else val or test by a stable hash of the patient) and
(2) drops duplicates with ``model.data.audit.deduplicate`` (exact copies of the decoded pixels, and
near copies by perceptual hash across splits; one copy stays, in train where there is one). What it
did is in ``source.cleaning``; ``meddistill audit-data`` shows the rest.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.types import (
    DETAIL_LEVELS,
    FINDINGS,
    TREATMENTS,
    TUMOUR_CLASSES,
    TUMOUR_SUBTYPES,
    CaseTruth,
    PatientContext,
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def _unknown_findings() -> np.ndarray:
    return np.full(len(FINDINGS), np.nan, dtype=np.float32)


def _unknown_treatments() -> np.ndarray:
    return np.full(len(TREATMENTS), np.nan, dtype=np.float32)


@dataclass
class Sample:
    """One image with what its source knows about it (NaN / -1 = unknown)."""

    id: str  # unique across sources ("nih1000:train/0_normal/00000002_000")
    split: str  # "train" | "val" | "test"
    modality: str  # "CXR" | "CT"
    source: str  # source name, e.g. "phantom_cxr", "nih1000", "chest_ct"
    image_path: str | None  # file to load; None when ``loader`` is set
    report: str | None = None  # the standard report (None: no report)
    reports: dict[str, str] = field(default_factory=dict)  # detail level -> text
    report_origin: str = "none"  # "written" (by a person or our grammar) | "composed" (from labels) | "none"
    finding_targets: np.ndarray = field(default_factory=_unknown_findings)  # (7,) float32, NaN unknown
    tumour_target: int = -1  # index in TUMOUR_CLASSES, -1 unknown
    subtype_target: int = -1  # index in TUMOUR_SUBTYPES, -1 unknown
    treatment_targets: np.ndarray = field(default_factory=_unknown_treatments)  # (len(TREATMENTS),)
    context: PatientContext = field(default_factory=PatientContext)
    truth: CaseTruth | None = None  # exact ground truth (phantoms)
    mask_path: str | None = None  # uint8 bitmask PNG (phantoms)
    loader: Callable[[], np.ndarray] | None = None  # returns (H, W) float32 [0, 1] instead of a path
    group: str | None = None  # hashed patient key (never the id itself): one patient, one split


def stable_unit(key: str) -> float:
    """A number in [0, 1) from a string, identical on every machine and Python run."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def hash_split(key: str, val_frac: float = 0.1, test_frac: float = 0.1) -> str:
    """Stable split for sets without a folder split."""
    u = stable_unit("split:" + key)
    return "test" if u < test_frac else "val" if u < test_frac + val_frac else "train"


def _folder_split(folder: str, key: str, valid_test_frac: float) -> str:
    """Split named by a folder; ``valid`` is shared between "val" and "test" by a stable hash."""
    split = SPLIT_ALIASES.get(folder.lower(), "train")
    if split == "val" and folder.lower() != "val" and stable_unit("holdout:" + key) < valid_test_frac:
        return "test"
    return split


def patient_key(source: str, patient: str) -> str | None:
    """A pseudonymous key for a patient id (the id itself is never stored on a sample)."""
    patient = (patient or "").strip()
    if not patient:
        return None
    return hashlib.sha256(f"patient:{source}:{patient}".encode()).hexdigest()[:16]


def nih_patient_from_name(file_name: str) -> str:
    """NIH file names carry the patient: ``00000001_000.png`` -> ``"1"`` ("" when the name does not)."""
    stem = Path(file_name).stem
    head, sep, tail = stem.partition("_")
    return str(int(head)) if sep and head.isdigit() and tail.isdigit() else ""


def _rng_for(key: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def compose_reports(
    sample_id: str, positive: Sequence[str], negative: Sequence[str], modality: str
) -> dict[str, str]:
    """Reports at every detail level composed from labels (stable for an id)."""
    from model.data.reports import compose_report_from_labels

    rng = _rng_for("report:" + sample_id)
    return {
        d: compose_report_from_labels(list(positive), modality, d, rng, negative=list(negative))
        for d in DETAIL_LEVELS
    }


# ----------------------------------------------------------------------------------------------
# Base


class Source:
    """A named set of samples; subclasses implement ``_load`` (all splits, read once).

    ``clean=True``: patients whole in one split, duplicates dropped (module docstring); what was done
    is in ``cleaning`` once the samples are read.
    """

    name: str = "source"
    valid_test_frac: float = 0.5  # held-out patients: share sent to "test" (the rest to "val")

    def __init__(self, clean: bool = False) -> None:
        self._all: list[Sample] | None = None
        self.clean = clean
        self.cleaning: dict | None = None

    def _load(self) -> list[Sample]:
        raise NotImplementedError

    def all_samples(self) -> list[Sample]:
        if self._all is None:
            samples = self._load()
            self._all = self._clean(samples) if self.clean else samples
        return self._all

    def _clean(self, samples: list[Sample]) -> list[Sample]:
        from model.data.audit import deduplicate, fingerprint_samples

        before = {sp: sum(s.split == sp for s in samples) for sp in SPLITS}
        moved = split_by_patient(samples, self.valid_test_frac)
        fps, errors = fingerprint_samples(samples)
        kept, summary = deduplicate(samples, fps)
        self.cleaning = {
            "before": before,
            "patients_moved_images": moved,
            "after_patient_split": summary.pop("before"),
            **summary,
            "unreadable": len(errors),
        }
        return kept

    def samples(self, split: str) -> list[Sample]:
        """The samples of one split ("train", "val", "test"; "valid" is accepted for "val")."""
        if split not in SPLIT_ALIASES:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        split = SPLIT_ALIASES[split]
        return [s for s in self.all_samples() if s.split == split]

    def counts(self) -> dict[str, int]:
        return {sp: len(self.samples(sp)) for sp in SPLITS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def split_by_patient(samples: Sequence[Sample], valid_test_frac: float = 0.5) -> int:
    """Move each patient (``Sample.group``) whole into one split, in place; returns the images moved.

    A patient with any image in train goes to train (the training folder wins); one seen only in
    held-out splits goes to "test" or "val" by a stable hash of the patient key.
    """
    by_group: dict[str, list[Sample]] = {}
    for s in samples:
        if s.group:
            by_group.setdefault(s.group, []).append(s)
    moved = 0
    for key, members in by_group.items():
        splits = {s.split for s in members}
        if len(splits) == 1:
            continue
        if "train" in splits:
            target = "train"
        else:
            target = "test" if stable_unit("holdout-patient:" + key) < valid_test_frac else "val"
        for s in members:
            if s.split != target:
                s.split = target
                moved += 1
    return moved


# ----------------------------------------------------------------------------------------------
# Phantoms


def _class_index(value: str | None, classes: Sequence[str]) -> int:
    return classes.index(value) if value in classes else -1


class PhantomSource(Source):
    """The phantom set of ``meddistill generate-data``: exact findings, tumour and treatment labels."""

    name = "phantom"

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)
        if not (self.root / "annotation.json").is_file():
            raise FileNotFoundError(
                f"{self.root} has no annotation.json: run `meddistill generate-data` first"
            )

    def _load(self) -> list[Sample]:
        annotation = json.loads((self.root / "annotation.json").read_text())
        out = []
        for split in SPLITS:
            for entry in annotation.get(split, []):
                label = json.loads((self.root / "labels" / f"{entry['id']}.json").read_text())
                out.append(self._sample(entry, label, split))
        return out

    def _sample(self, entry: dict, label: dict, split: str) -> Sample:
        truth = CaseTruth.from_dict({k: v for k, v in label.items() if k not in ("treatments", "reports")})
        given = {t["name"] for t in label.get("treatments", [])}
        mask = self.root / "masks" / f"{entry['id']}.png"
        return Sample(
            id=entry["id"],
            split=split,
            modality=truth.modality,
            source=f"phantom_{truth.modality.lower()}",
            image_path=str(self.root / entry["image_path"][0]),
            report=entry["report"],
            reports=dict(label.get("reports") or entry.get("reports") or {}),
            report_origin="written",
            # CXR findings are not defined on a CT slice: unknown there, not negative
            finding_targets=truth.finding_vector() if truth.modality == "CXR" else _unknown_findings(),
            tumour_target=_class_index(truth.tumour, TUMOUR_CLASSES) if truth.modality == "CT" else -1,
            subtype_target=_class_index(truth.tumour_subtype, TUMOUR_SUBTYPES),
            treatment_targets=np.asarray([float(t in given) for t in TREATMENTS], dtype=np.float32),
            context=truth.context,
            truth=truth,
            mask_path=str(mask) if mask.is_file() else None,
        )


# ----------------------------------------------------------------------------------------------
# R2Gen annotation.json (IU X-Ray, MIMIC-CXR)

#: labeler value -> finding target. "Not mentioned" counts as negative (radiologists mention what
#: they see); "uncertain" ("cannot be excluded") is unknown.
LABELER_TARGET = {"positive": 1.0, "negative": 0.0, None: 0.0, "uncertain": float("nan")}


def report_finding_targets(report: str) -> tuple[np.ndarray, dict]:
    """(7,) float32 over FINDINGS from a written report + the labels (``label_report``, default config).

    A finding the default (conservative) labeler leaves unsaid but a broader word suggests ("opacity"
    for consolidation, "vascular congestion" for oedema, "granuloma" for nodule: ``labeler.SYNONYMS``)
    is *unknown* (NaN), not negative, as NIH "Infiltration" is for consolidation. An explicit negative
    ("no nodule") stays negative.
    """
    from model.data.labeler import LabelerConfig, label_report

    labels = label_report(report)
    broad = label_report(
        report,
        LabelerConfig(opacity_as_consolidation=True, granuloma_as_nodule=True, congestion_as_edema=True),
    )
    out = np.asarray([LABELER_TARGET[labels.get(f)] for f in FINDINGS], dtype=np.float32)
    for i, f in enumerate(FINDINGS):
        if labels.get(f) is None and broad.get(f) in ("positive", "uncertain"):  # unsaid, not denied
            out[i] = np.nan
    return out, labels


class R2GenSource(Source):
    """R2Gen layout ``{"train": [{"id", "report", "image_path": [...], "split"}], "val": ..., "test": ...}``.

    The first image of each study is used (IU X-Ray lists frontal then lateral). Finding targets come
    from the report labeler; a CT entry (``"modality": "CT"``) gets its tumour class from it too.
    """

    def __init__(
        self,
        annotation_json: str | Path,
        image_root: str | Path | None = None,
        name: str = "r2gen",
        clean: bool = False,
    ):
        super().__init__(clean=clean)
        self.annotation_json = Path(annotation_json)
        self.image_root = Path(image_root) if image_root is not None else self.annotation_json.parent
        self.name = name

    def _load(self) -> list[Sample]:
        annotation = json.loads(self.annotation_json.read_text())
        out = []
        for key, entries in annotation.items():
            split = SPLIT_ALIASES.get(key)
            if split is None:
                continue
            for entry in entries:
                report = (entry.get("report") or "").strip()
                modality = entry.get("modality", "CXR")
                findings, labels = report_finding_targets(report) if report else (_unknown_findings(), {})
                tumour = -1
                if modality == "CT" and labels:
                    tumour = TUMOUR_CLASSES.index(_tumour_from_labels(labels))
                paths = entry.get("image_path") or []
                if isinstance(paths, str):
                    paths = [paths]
                if not paths:
                    continue
                reports = dict(entry.get("reports") or ({"standard": report} if report else {}))
                patient = entry.get("subject_id") or entry.get("patient_id")  # MIMIC-CXR has subject_id
                out.append(
                    Sample(
                        id=f"{self.name}:{entry['id']}",
                        split=split,
                        modality=modality,
                        source=self.name,
                        image_path=str(self.image_root / paths[0]),
                        report=report or None,
                        reports=reports,
                        report_origin="written" if report else "none",
                        finding_targets=findings if modality == "CXR" and labels else _unknown_findings(),
                        tumour_target=tumour,
                        group=patient_key(self.name, str(patient or "")),
                    )
                )
        return out


def _tumour_from_labels(labels: dict) -> str:
    if labels.get("tumour_malignant") == "positive":
        return "malignant"
    if labels.get("tumour_benign") == "positive":
        return "benign"
    return "none"


# ----------------------------------------------------------------------------------------------
# NIH ChestX-ray14

#: NIH label -> our finding. NIH lists every finding its text miner found, so a finding that is not
#: listed is taken as negative.
NIH_TO_FINDING: dict[str, str] = {
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
    "Nodule": "nodule",
    "Mass": "nodule",
    "Consolidation": "consolidation",
    "Pneumonia": "consolidation",  # radiographic pneumonia is airspace consolidation
    "Edema": "edema",
    "Atelectasis": "atelectasis",
}

#: NIH labels that make some of our findings *unknown* (NaN) unless listed positive. "Infiltration"
#: is NIH's vague airspace-opacity label and overlaps consolidation heavily: an image labelled
#: "Infiltration" alone may well show consolidation, so calling it negative would teach the wrong
#: thing. (It also overlaps oedema somewhat; we keep oedema, which NIH labels separately.)
NIH_MAKES_UNKNOWN: dict[str, tuple[str, ...]] = {"Infiltration": ("consolidation",)}

#: NIH labels with no counterpart here: they leave our targets as they are.
NIH_UNMAPPED: tuple[str, ...] = ("Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def nih_finding_targets(finding_labels: str) -> np.ndarray:
    """``"Effusion|Infiltration"`` -> (7,) float32 over FINDINGS: 1 present, 0 absent, NaN unknown."""
    names = [n.strip() for n in finding_labels.split("|") if n.strip()]
    out = np.zeros(len(FINDINGS), dtype=np.float32)
    if names == ["No Finding"]:
        return out
    positive = {NIH_TO_FINDING[n] for n in names if n in NIH_TO_FINDING}
    for n in names:
        for f in NIH_MAKES_UNKNOWN.get(n, ()):
            if f not in positive:
                out[FINDINGS.index(f)] = np.nan
    for f in positive:
        out[FINDINGS.index(f)] = 1.0
    return out


def _parse_age(value: str | None) -> int | None:
    """``"58"`` or ``"058Y"`` -> 58; implausible values (NIH has a few > 120) -> None."""
    digits = "".join(ch for ch in (value or "") if ch.isdigit())
    if not digits:
        return None
    age = int(digits)
    return age if 0 < age <= 110 else None


def _parse_sex(value: str | None) -> str | None:
    v = (value or "").strip().upper()[:1]
    return v if v in ("F", "M") else None


class NIHSource(Source):
    """NIH ChestX-ray14 labels as CXR samples with composed reports.

    Reads either the original CSV (``Image Index``, ``Finding Labels``, ``Patient ID``, ``Patient
    Age``, ``Patient Gender``; images found under ``image_root``, searched recursively when not at
    the top) or the nih1000 variant (``path`` relative to ``image_root``, whose first folder
    ``train``/``valid`` is the split). The patient id (the ``Patient ID`` / ``patient_id`` column, else
    the file name's prefix) is never stored on a sample: ``Sample.group`` holds a hash of it, which keeps
    one patient in one split (hashed splits; with ``clean=True`` also the folder split).
    """

    def __init__(
        self,
        csv_path: str | Path,
        image_root: str | Path | None = None,
        name: str = "nih",
        val_frac: float = 0.1,
        test_frac: float = 0.1,
        valid_test_frac: float = 0.5,
        clean: bool = False,
    ):
        super().__init__(clean=clean)
        self.csv_path = Path(csv_path)
        self.image_root = Path(image_root) if image_root is not None else self.csv_path.parent
        self.name = name
        self.val_frac, self.test_frac, self.valid_test_frac = val_frac, test_frac, valid_test_frac
        self.n_missing = 0  # rows whose image file was not found (skipped)

    def _load(self) -> list[Sample]:
        with self.csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        index: dict[str, Path] | None = None
        out = []
        for row in rows:
            labels = row.get("finding_labels", row.get("Finding Labels", "")) or ""
            patient = row.get("patient_id", row.get("Patient ID", "")) or ""
            name = Path(row.get("path") or row.get("Image Index") or row.get("image_index") or "").name
            patient = patient.strip() or nih_patient_from_name(name)
            if row.get("path"):
                rel = Path(row["path"])
                path = self.image_root / rel
                key = rel.with_suffix("").as_posix()
                first = rel.parts[0] if len(rel.parts) > 1 else ""
                split = (
                    _folder_split(first, key, self.valid_test_frac)
                    if first.lower() in SPLIT_ALIASES
                    else hash_split(patient or key, self.val_frac, self.test_frac)
                )
            else:
                image = row.get("Image Index") or row.get("image_index") or ""
                path = self.image_root / image
                if not path.is_file():
                    if index is None:
                        index = {
                            p.name: p
                            for p in self.image_root.rglob("*")
                            if p.suffix.lower() in IMAGE_SUFFIXES
                        }
                    path = index.get(image, path)
                key = Path(image).stem
                split = hash_split(patient or key, self.val_frac, self.test_frac)
            if not path.is_file():
                self.n_missing += 1
                continue
            out.append(self._sample(key, split, path, labels, row, patient))
        if self.n_missing:
            warnings.warn(
                f"{self.name}: {self.n_missing} images listed in {self.csv_path.name} were not found",
                stacklevel=2,
            )
        return out

    def _sample(self, key: str, split: str, path: Path, labels: str, row: dict, patient: str) -> Sample:
        sid = f"{self.name}:{key}"
        targets = nih_finding_targets(labels)
        positive = [f for f, v in zip(FINDINGS, targets, strict=True) if v == 1.0]
        negative = [f for f, v in zip(FINDINGS, targets, strict=True) if v == 0.0]
        reports = compose_reports(sid, positive, negative, "CXR")
        context = PatientContext(
            age=_parse_age(row.get("age", row.get("Patient Age"))),
            sex=_parse_sex(row.get("sex", row.get("Patient Gender"))),
        )
        return Sample(
            id=sid,
            split=split,
            modality="CXR",
            source=self.name,
            image_path=str(path),
            report=reports["standard"],
            reports=reports,
            report_origin="composed",
            finding_targets=targets,
            context=context,
            group=patient_key(self.name, patient),
        )


# ----------------------------------------------------------------------------------------------
# Class-per-folder sets

#: folder class (the name before the first "_") -> (tumour class, malignant subtype)
FOLDER_CLASSES: dict[str, tuple[str, str | None]] = {
    "normal": ("none", None),
    "benign": ("benign", None),
    "malignant": ("malignant", None),
    "adenocarcinoma": ("malignant", "adenocarcinoma"),
    "large.cell.carcinoma": ("malignant", "large_cell"),
    "squamous.cell.carcinoma": ("malignant", "squamous"),
}


def folder_class(folder_name: str) -> tuple[str, str | None] | None:
    """``"adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib"`` -> ("malignant", "adenocarcinoma")."""
    return FOLDER_CLASSES.get(folder_name.split("_", 1)[0].lower())


class ClassFolderSource(Source):
    """Images in ``root/[train|valid|test]/CLASS.../*.png`` (or ``root/CLASS.../`` + hashed split).

    Classes map through :data:`FOLDER_CLASSES` onto the tumour head (and the subtype head where the
    class names one); folders of unknown classes are skipped with a warning. Reports are composed.

    Caution (../shared/data/chest_ct): the "normal" slices come from elsewhere than the cancer ones.
    Even after conversion to one grayscale size, five global intensity statistics (mean, std, dark
    and bright fractions, median) separate normal from cancer with 96 % accuracy on ``valid``
    (majority class: 82 %), and still 93 % after histogram equalisation: a model can learn the
    acquisition, not the tumour. Report real-CT tumour scores with that caveat.
    """

    def __init__(
        self,
        root: str | Path,
        name: str | None = None,
        modality: str = "CT",
        val_frac: float = 0.1,
        test_frac: float = 0.1,
        valid_test_frac: float = 0.5,
        clean: bool = False,
    ):
        super().__init__(clean=clean)
        self.root = Path(root)
        self.name = name or self.root.name
        self.modality = modality
        self.val_frac, self.test_frac, self.valid_test_frac = val_frac, test_frac, valid_test_frac

    def class_folders(self) -> list[tuple[str | None, Path]]:
        """(split folder name or None, class folder) pairs: ``ROOT/[SPLIT/]CLASS/``."""
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_ALIASES]
        groups = [(p.name, p) for p in split_dirs] if split_dirs else [(None, self.root)]
        return [(split, d) for split, base in groups for d in sorted(p for p in base.iterdir() if p.is_dir())]

    def images(self, split_folder: str | None, class_dir: Path) -> list[tuple[str, str, Path]]:
        """(key, split, path) of each image in a class folder; the split comes from the split folder
        (``valid`` halved into val/test by a stable hash) or, without one, from a stable hash of the key."""
        out = []
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            key = path.relative_to(self.root).with_suffix("").as_posix()
            split = (
                _folder_split(split_folder, key, self.valid_test_frac)
                if split_folder
                else hash_split(key, self.val_frac, self.test_frac)
            )
            out.append((key, split, path))
        return out

    def _load(self) -> list[Sample]:
        out = []
        for split_folder, class_dir in self.class_folders():
            cls = folder_class(class_dir.name)
            if cls is None:
                warnings.warn(f"{self.name}: skipping folder {class_dir.name!r} (unknown class)", stacklevel=2)
                continue
            for key, split, path in self.images(split_folder, class_dir):
                out.append(self._sample(key, split, path, *cls))
        return out

    def _sample(self, key: str, split: str, path: Path, tumour: str, subtype: str | None) -> Sample:
        sid = f"{self.name}:{key}"
        # "tumour_none" makes the composer write a normal CT impression; CXR findings stay unsaid
        reports = compose_reports(sid, [f"tumour_{tumour}"], [], self.modality)
        return Sample(
            id=sid,
            split=split,
            modality=self.modality,
            source=self.name,
            image_path=str(path),
            report=reports["standard"],
            reports=reports,
            report_origin="composed",
            tumour_target=TUMOUR_CLASSES.index(tumour),
            subtype_target=_class_index(subtype, TUMOUR_SUBTYPES),
        )


# ----------------------------------------------------------------------------------------------
# The default multi-task mix


def build_sources(
    data_dir: str | Path | None, shared_dir: str | Path | None = None, clean: bool = True
) -> list[Source]:
    """Phantom set at ``data_dir`` + the real sets found under ``shared_dir`` (e.g. ../shared/data).

    Recognised under ``shared_dir``: ``nih1000/labels.csv`` (NIHSource), ``chest_ct/`` (class
    folders), and any ``NAME/annotation.json`` in R2Gen layout (R2GenSource named NAME). Real sets are
    cleaned (``clean``: patients whole in one split, leaked duplicates dropped; module docstring).
    """
    out: list[Source] = []
    if data_dir is not None:
        out.append(PhantomSource(data_dir))
    if shared_dir is None or not Path(shared_dir).is_dir():
        return out
    shared = Path(shared_dir)
    for sub in sorted(p for p in shared.iterdir() if p.is_dir()):
        src = open_source(sub, clean=clean)
        if src is not None:
            out.append(src)
    return out


def open_source(path: str | Path, clean: bool = False) -> Source | None:
    """The adapter that reads ``path`` (None if none does).

    A folder with ``annotation.json`` (+ ``dataset.json``: our phantoms; else R2Gen), with
    ``labels.csv`` (nih1000) or an NIH ``Data_Entry*.csv``, or with class folders; or the file itself:
    an ``annotation.json`` or an NIH CSV. Phantom sets are never cleaned (each is unique by seed).
    """
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() == ".json":
            if (p.parent / "dataset.json").is_file() and p.name == "annotation.json":
                return PhantomSource(p.parent)
            return R2GenSource(p, p.parent, name=p.parent.name or "r2gen", clean=clean)
        if p.suffix.lower() == ".csv":
            return NIHSource(p, p.parent, name=p.parent.name or "nih", clean=clean)
        return None
    if not p.is_dir():
        return None
    if (p / "annotation.json").is_file():
        if (p / "dataset.json").is_file():
            return PhantomSource(p)  # a phantom set (written by generate-data)
        return R2GenSource(p / "annotation.json", p, name=p.name, clean=clean)
    csvs = [p / "labels.csv"] if (p / "labels.csv").is_file() else sorted(p.glob("Data_Entry*.csv"))
    if csvs:
        return NIHSource(csvs[0], p, name=p.name, clean=clean)
    if any(folder_class(q.name) for q in _class_dirs(p)):
        return ClassFolderSource(p, clean=clean)
    return None


def _class_dirs(root: Path) -> list[Path]:
    dirs = [p for p in root.iterdir() if p.is_dir()]
    nested = [q for p in dirs if p.name.lower() in SPLIT_ALIASES for q in p.iterdir() if q.is_dir()]
    return dirs + nested
