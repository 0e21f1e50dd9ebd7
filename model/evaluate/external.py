"""Score the models on a labelled set a user brings: ``meddistill evaluate --external DIR``.

Formats (the adapters of ``model.data.sources``):

- ``folders``: ``DIR/[train|valid|test/]CLASS/*.png`` (one folder per class);
- ``nih-csv``: an NIH ChestX-ray14 style CSV in DIR (``Image Index``, ``Finding Labels``, ...);
- ``r2gen``: ``DIR/annotation.json`` in R2Gen layout; targets come from the report labeler.

A *label map* (JSON) declares what each source label means in our label spaces::

    {"modality": "CXR",                              # of a folder set (default: CT for tumour
     "labels": {"PNEUMONIA": "consolidation",        #   targets, CXR for finding targets)
                "NORMAL": "normal",
                "adeno": "adenocarcinoma",           # a subtype: tumour malignant + subtype
                "benign_nodule": "tumour:benign",
                "other": "ignore"}}                  # samples of this label are left out

Targets: a finding name (``model.types.FINDINGS``) makes that finding positive and leaves the
others unknown; ``"normal"`` makes every finding negative (CXR) / the tumour "none" (CT);
``tumour:CLASS`` or a malignant subtype set the tumour head's target. A flat ``{label: target}``
object is accepted too. Without a map: folders use ``sources.FOLDER_CLASSES`` (tumour classes),
NIH labels use ``sources.NIH_TO_FINDING``. The whole set is scored (every split on disk) with
fixed 0.5 thresholds, since a user's set has no validation split of ours.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model.data.sources import (
    ClassFolderSource,
    NIHSource,
    R2GenSource,
    Sample,
    compose_reports,
)
from model.types import FINDINGS, TUMOUR_CLASSES, TUMOUR_SUBTYPES

FORMATS: tuple[str, ...] = ("folders", "nih-csv", "r2gen")


class LabelMapError(ValueError):
    """A label map that cannot be used; ``str(err)`` names the file and what to change."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What one source label means: findings (NaN = unknown) and tumour / subtype indices (-1)."""

    findings: tuple[float, ...]
    tumour: int = -1
    subtype: int = -1
    ignore: bool = False


def parse_target(value: str | None) -> Target:
    """``"consolidation"`` / ``"normal"`` / ``"tumour:benign"`` / ``"adenocarcinoma"`` / ``"ignore"``."""
    unknown = (float("nan"),) * len(FINDINGS)
    v = (value or "ignore").strip().lower()
    if v == "ignore":
        return Target(unknown, ignore=True)
    if v == "normal":
        return Target((0.0,) * len(FINDINGS), tumour=TUMOUR_CLASSES.index("none"))
    if v in FINDINGS:
        return Target(tuple(1.0 if f == v else float("nan") for f in FINDINGS))
    if v.startswith("tumour:") and v.split(":", 1)[1] in TUMOUR_CLASSES:
        return Target(unknown, tumour=TUMOUR_CLASSES.index(v.split(":", 1)[1]))
    if v in TUMOUR_SUBTYPES:
        return Target(unknown, tumour=TUMOUR_CLASSES.index("malignant"), subtype=TUMOUR_SUBTYPES.index(v))
    raise ValueError(value)


def load_label_map(path: str | Path) -> tuple[dict[str, Target], str | None]:
    """``(label -> Target, declared modality or None)`` from a JSON file (see the module docstring)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelMapError(f"Label map {path} was not found: check the path given to --label-map.") from None
    except (OSError, ValueError) as err:
        raise LabelMapError(f"Label map {path} is not valid JSON ({err}): fix the file.") from None
    if not isinstance(raw, dict):
        raise LabelMapError(f"Label map {path} must be a JSON object of label -> target.")
    labels = raw.get("labels", raw) if isinstance(raw.get("labels"), dict) else raw
    modality = raw.get("modality") if isinstance(raw.get("modality"), str) else None
    if modality is not None and modality.upper() not in ("CXR", "CT"):
        raise LabelMapError(f"Label map {path}: modality must be 'CXR' or 'CT', not {modality!r}.")
    out, bad = {}, []
    for label, value in labels.items():
        if label == "modality":
            continue
        try:
            out[str(label)] = parse_target(value)
        except (ValueError, AttributeError):
            bad.append(f"{label!r} -> {value!r}")
    if bad:
        allowed = ", ".join([*FINDINGS, "normal", *(f"tumour:{c}" for c in TUMOUR_CLASSES), *TUMOUR_SUBTYPES,
                             "ignore"])  # fmt: skip
        raise LabelMapError(f"Label map {path}: unknown target for {', '.join(bad)}. Use one of: {allowed}.")
    return out, modality.upper() if modality else None


def _lookup(label_map: Mapping[str, Target], label: str) -> Target | None:
    """Exact label, then case-insensitive, then the part before the first '_' (chest_ct folders)."""
    if label in label_map:
        return label_map[label]
    lower = {k.lower(): v for k, v in label_map.items()}
    return lower.get(label.lower()) or lower.get(label.split("_", 1)[0].lower())


def _apply(sample: Sample, target: Target) -> Sample:
    findings = np.asarray(target.findings, dtype=np.float32)
    positive = [f for f, v in zip(FINDINGS, findings, strict=True) if v == 1.0]
    negative = [f for f, v in zip(FINDINGS, findings, strict=True) if v == 0.0]
    if sample.modality == "CT" and target.tumour >= 0:
        positive, negative = [f"tumour_{TUMOUR_CLASSES[target.tumour]}"], []
    reports = compose_reports(sample.id, positive, negative, sample.modality)
    return dataclasses.replace(
        sample,
        finding_targets=findings if sample.modality == "CXR" else np.full(len(FINDINGS), np.nan, np.float32),
        tumour_target=target.tumour if sample.modality == "CT" else -1,
        subtype_target=target.subtype if sample.modality == "CT" else -1,
        report=reports["standard"],
        reports=reports,
        report_origin="composed",
    )


class MappedFolderSource(ClassFolderSource):
    """Class folders whose names go through a user's label map (unmapped folders are skipped)."""

    def __init__(self, root, label_map: Mapping[str, Target], modality: str, name: str | None = None):
        super().__init__(root, name=name, modality=modality)
        self.label_map = dict(label_map)
        self.unmapped: list[str] = []

    def _load(self) -> list[Sample]:
        out = []
        for split_folder, class_dir in self.class_folders():
            target = _lookup(self.label_map, class_dir.name)
            if target is None or target.ignore:
                if target is None:
                    self.unmapped.append(class_dir.name)
                continue
            for key, split, path in self.images(split_folder, class_dir):
                base_sample = Sample(id=f"{self.name}:{key}", split=split, modality=self.modality,
                                     source=self.name, image_path=str(path))  # fmt: skip
                out.append(_apply(base_sample, target))
        return out


class MappedNIHSource(NIHSource):
    """NIH-style CSV whose ``Finding Labels`` go through a user's label map (``|``-joined labels:
    positives win; a row whose labels are all unmapped or ignored is skipped)."""

    def __init__(self, csv_path, image_root, label_map: Mapping[str, Target], name: str):
        super().__init__(csv_path, image_root, name=name)
        self.label_map = dict(label_map)
        self.unmapped: set[str] = set()

    def _load(self) -> list[Sample]:
        return [s for s in super()._load() if s is not None]

    def _sample(self, key, split, path, labels, row, *rest):  # rest: whatever NIHSource adds
        targets = []
        for label in (x.strip() for x in labels.split("|") if x.strip()):
            t = _lookup(self.label_map, label)
            if t is None:
                self.unmapped.add(label)
            elif not t.ignore:
                targets.append(t)
        if not targets:
            return None
        merged = np.full(len(FINDINGS), np.nan)
        for t in targets:  # per finding: positive > negative > unknown
            f = np.asarray(t.findings)
            merged[(f == 0.0) & np.isnan(merged)] = 0.0
            merged[f == 1.0] = 1.0
        sample = super()._sample(key, split, path, "No Finding", row, *rest)  # context, id, path
        return _apply(sample, Target(tuple(merged.tolist())))


def build_external_source(root: str | Path, fmt: str, label_map_path: str | Path | None = None):
    """The source of a user's set; raises ``FileNotFoundError`` / ``LabelMapError`` with a sentence."""
    root = Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if not root.is_dir():
        raise FileNotFoundError(
            f"External set {root} is not a folder: give the folder that holds the images."
        )
    label_map, modality = load_label_map(label_map_path) if label_map_path else (None, None)
    name = f"external_{root.name}"
    if fmt == "folders":
        if label_map is None:
            return ClassFolderSource(root, name=name)
        if modality is None:  # a map with finding targets is a CXR set; one with tumour classes, CT
            used = [t for t in label_map.values() if not t.ignore]
            has_finding = any(1.0 in t.findings for t in used)
            modality = "CT" if not has_finding and any(t.tumour > 0 for t in used) else "CXR"
        return MappedFolderSource(root, label_map, modality, name=name)
    if fmt == "nih-csv":
        csvs = sorted(root.glob("*.csv"))
        if not csvs:
            raise FileNotFoundError(
                f"External set {root} has no .csv file: nih-csv needs the labels CSV there."
            )
        if label_map is None:
            return NIHSource(csvs[0], root, name=name)
        return MappedNIHSource(csvs[0], root, label_map, name=name)
    ann = root / "annotation.json"
    if not ann.is_file():
        raise FileNotFoundError(f"External set {root} has no annotation.json: r2gen needs it (R2Gen layout).")
    return R2GenSource(ann, root, name=name)


def evaluate_external(
    checkpoints: Mapping[str, str | Path],
    root: str | Path,
    fmt: str,
    out_json: str | Path | None,
    label_map: str | Path | None = None,
    config=None,
    **overrides,
) -> dict:
    """Every model on every sample of the user's set -> the evaluation JSON (``external`` section)."""
    from model.evaluate import counterfactual
    from model.evaluate.run import (
        EvalConfig,
        Section,
        _data_block,
        _run_section,
        _score_section,
        load_predictors,
        load_sample_study,
        result_header,
        stable_subset,
    )
    from model.evaluate.scoring import Targets
    from model.evaluate.summary import retention, write_outputs

    cfg = dataclasses.replace(config or EvalConfig(), **overrides)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    source = build_external_source(root, fmt, label_map)
    samples = stable_subset(source.all_samples(), cfg.limit)
    if not samples:
        raise ValueError(f"External set {root} gave no labelled images in format {fmt!r}: "
                         "check the folder layout and the label map.")  # fmt: skip
    predictors = load_predictors({k: Path(v) for k, v in checkpoints.items()})
    ref = next(iter(predictors))
    section = Section(name=source.name, samples=samples)
    _run_section(predictors, section, cfg, timing, "external")
    from model.evaluate import clinical

    label = clinical.default_labeler()
    refs = Targets.from_samples(samples, cfg.detail).references
    ref_labels = [dict(label(r)) if r else None for r in refs]
    models = _score_section(predictors, section, cfg, ref, ref_labels)
    for m in models.values():
        m.pop("per_case", None)
    cf = None
    if cfg.counterfactual_limit != 0:
        thr = {n: (models[n].get("thresholds") or {}).get("findings") for n in predictors}
        cf = counterfactual.intensity_swap(predictors, samples, load_sample_study, limit=cfg.counterfactual_limit,
                                           thresholds=thr, batch_size=cfg.batch_size)  # fmt: skip
    timing["total_s"] = round(time.perf_counter() - t_start, 2)
    out_json = Path(out_json) if out_json is not None else None
    result = {
        **result_header(cfg, out_json.stem if out_json else source.name),
        "data": {"dir": str(root), "split": "all", **_data_block(section, "external")},
        "external": {
            "dir": str(root),
            "format": fmt,
            "label_map": str(label_map) if label_map else None,
            "unmapped_labels": sorted(getattr(source, "unmapped", []) or []),
            "per_split": {sp: sum(s.split == sp for s in samples) for sp in ("train", "val", "test")},
        },
        "model_order": list(predictors),
        "models": models,
        "retention": retention(models, ref),
        "counterfactual": cf,
        "real": {},
        "tradeoff": None,
        "cases": [],
        "timing": timing,
    }
    if out_json is not None:
        write_outputs(result, out_json)
    return result
