"""One evaluation section (a set of cases) from samples to scored metric blocks.

A ``Section`` is predicted by every model in one pass (``_run_section``), scored against its
references with thresholds chosen on its validation cases (``_score_section``), and turned into
per-case records (``_cases``). The real sets each become a section of their own
(``_real_sections``). ``model/evaluate/run.py`` strings these steps together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.evaluate import clinical, counterfactual, localization, scoring, tradeoff
from model.evaluate.summary import retention
from model.explain.gradcam import DEFAULT_CAM_METHOD
from model.types import DETAIL_LEVELS, FINDINGS, TUMOUR_CLASSES, ReportStyle, Study

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REAL_DIR = REPO.parent / "shared" / "data"
REFERENCE_MODEL = "teacher"  # retention ratios and agreement are relative to this model


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; every field is echoed into the JSON under ``config``."""

    split: str = "test"  # split of the phantom set (and of the real sets) to evaluate
    limit: int | None = None  # at most this many cases per section (stable hash order); None = all
    val_limit: int | None = 200  # validation cases used to choose thresholds
    detail: str = "standard"  # detail level of the main reports
    max_new_tokens: int = 96  # cap of the main reports (greedy)
    uncertain: str = "positive"  # clinical-efficacy mapping of "uncertain" (positive|negative|ignore)
    cam_limit: int | None = 100  # cases with Grad-CAM localisation per model; 0 = none
    cam_method: str = DEFAULT_CAM_METHOD  # chosen on validation phantoms (benchmarks/results/cam.json)
    cam_layer: str | None = None  # None = each model's DEFAULT_CAM_LAYER (stride-16 stage or last stage)
    iou_rule: str = localization.DEFAULT_RULE
    latency_runs: int = 20  # timed rounds (>= 20), after latency_warmup untimed ones
    latency_warmup: int = 3
    threads: int | None = None  # torch threads for latency; None = current setting
    memory: bool = True  # peak RSS per checkpoint in a fresh subprocess
    tradeoff_limit: int | None = 48  # cases in the length/detail trade-off; 0 = skip
    tradeoff_tokens: tuple[int, ...] = tradeoff.MAX_NEW_TOKENS
    tradeoff_details: tuple[str, ...] = DETAIL_LEVELS
    meteor: bool | None = None  # None = when java exists
    semantic: bool | None = None  # None = when the optional sentence model is installed
    real_dir: str | None = str(DEFAULT_REAL_DIR)  # real sets root; None = phantoms only
    real_limit: int | None = 200  # cases per real set
    counterfactual_limit: int | None = 100  # intensity swap on real sets: cases per class; 0 = off
    progress: bool = True
    batch_size: int = 16  # studies per forward pass in the scoring passes (latency is always batch 1)
    name: str | None = None  # result name; default: the JSON file's stem


@dataclass
class Section:
    """One set of cases: its samples and what each model said."""

    name: str
    samples: list
    val_samples: list = field(default_factory=list)
    runs: dict[str, scoring.ModelRun] = field(default_factory=dict)
    val_runs: dict[str, scoring.ModelRun] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Loading


def load_predictors(checkpoints: Mapping[str, str | Path]) -> dict:
    from model.inference import Predictor

    order = sorted(checkpoints, key=lambda n: (n != REFERENCE_MODEL, list(checkpoints).index(n)))
    return {name: Predictor.from_dir(checkpoints[name], name) for name in order}


def load_sample_study(sample) -> Study:
    """The sample's image as a Study, with the modality its source knows."""
    if getattr(sample, "loader", None) is not None:
        pixels = np.asarray(sample.loader(), dtype=np.float32)
        return Study(pixels=pixels, modality=sample.modality, source=sample.id)
    from model.data.imaging import load_study_path

    study = load_study_path(sample.image_path)
    return dataclasses.replace(study, modality=sample.modality, source=sample.id)


def load_mask(sample) -> dict[str, np.ndarray]:
    """Ground-truth masks of a phantom sample by name (empty for real sets)."""
    if not getattr(sample, "mask_path", None):
        return {}
    from model.data.generate import read_masks

    return read_masks(sample.mask_path, sample.modality)


def stable_subset(samples: Sequence, limit: int | None) -> list:
    """A machine-independent subset: samples ordered by a hash of their id, first ``limit``."""
    from model.data.sources import stable_unit

    ordered = sorted(samples, key=lambda s: stable_unit(s.id))
    return ordered if limit is None else ordered[: max(0, int(limit))]


# ----------------------------------------------------------------------------------------------
# Prediction passes


def _predict_section(predictors, samples, style, desc: str, progress: bool, batch_size: int = 16):
    """Every model on every sample, ``batch_size`` studies per forward pass (``Predictor.predict_batch``);
    each case's ``latency_ms`` is its batch's wall time / batch size."""
    runs = {name: scoring.ModelRun() for name in predictors}
    with tqdm(total=len(samples), desc=desc, unit="case", disable=not progress, leave=False) as bar:
        for start in range(0, len(samples), max(1, batch_size)):
            chunk = samples[start : start + max(1, batch_size)]
            studies = [load_sample_study(s) for s in chunk]
            contexts = [s.context for s in chunk]
            for name, predictor in predictors.items():
                t0 = time.perf_counter()
                preds = predictor.predict_batch(studies, contexts, style)
                per_case = (time.perf_counter() - t0) * 1e3 / len(chunk)
                for pred in preds:
                    runs[name].add(pred, per_case)
            bar.update(len(chunk))
    return runs


@contextlib.contextmanager
def timed(timing: dict[str, float], key: str) -> Iterator[None]:
    """``timing[key]`` = wall-clock seconds the block took (2 decimals), written when it ends normally."""
    t0 = time.perf_counter()
    yield
    timing[key] = round(time.perf_counter() - t0, 2)


def _run_section(predictors, section: Section, cfg: EvalConfig, timing: dict, key: str) -> None:
    style = ReportStyle(detail=cfg.detail, max_new_tokens=cfg.max_new_tokens)
    with timed(timing, f"{key}.predict_s"):
        section.runs = _predict_section(
            predictors, section.samples, style, f"{section.name}: predict", cfg.progress, cfg.batch_size
        )
    if section.val_samples:
        heads_only = ReportStyle(detail=cfg.detail, max_new_tokens=1)  # thresholds need the heads only
        with timed(timing, f"{key}.validation_s"):
            section.val_runs = _predict_section(
                predictors, section.val_samples, heads_only, f"{section.name}: validation", cfg.progress,
                cfg.batch_size,
            )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Scoring and per-case records


def _reference_labels(section: Section, cfg: EvalConfig) -> list:
    """The labeler's reading of each case's reference report (None without one)."""
    label = clinical.default_labeler()
    refs = scoring.Targets.from_samples(section.samples, cfg.detail).references
    return [dict(label(r)) if r else None for r in refs]


def _score_section(predictors, section: Section, cfg: EvalConfig, ref: str, ref_labels: list) -> dict:
    targets = scoring.Targets.from_samples(section.samples, cfg.detail)
    models: dict[str, dict] = {}
    for name in predictors:
        if section.val_samples:
            val_targets = scoring.Targets.from_samples(section.val_samples, cfg.detail)
            thr = scoring.thresholds_from_validation(section.val_runs[name], val_targets)
        else:
            thr = scoring.default_thresholds()
        models[name] = scoring.score_model(
            section.runs[name], targets, thr, ref_labels, uncertain=cfg.uncertain,
            meteor=cfg.meteor, semantic=cfg.semantic,
        )  # fmt: skip
        run = section.runs[name]
        by_grade = scoring.recall_by_grade(
            [getattr(s, "truth", None) for s in section.samples], run, models[name]["thresholds"]
        )
        if by_grade:  # phantoms: every finding has a severity and a subtle flag
            models[name]["per_finding"]["findings_by_grade"] = by_grade
        models[name]["metrics"]["speed"] = {
            "eval_ms_per_case": float(np.mean(run.latency_ms)) if run.latency_ms else None,
            "mean_tokens": float(np.mean([len(t) for t in run.tokens])) if run.tokens else None,
        }
    if ref in models:
        for name in models:
            if name == ref:
                continue
            models[name]["agreement"] = scoring.agreement(
                section.runs[ref], section.runs[name], models[ref]["thresholds"], models[name]["thresholds"],
                targets, models[ref]["per_case"].get("labels"), models[name]["per_case"].get("labels"),
            )  # fmt: skip
    return models


def _cases(section: Section, models: dict, predictors, ref_labels: list, cam_cases: list, cfg) -> list[dict]:
    """Per-case records for error analysis (see docs/eval_schema.md)."""
    targets = scoring.Targets.from_samples(section.samples, cfg.detail)
    out = []
    for i, s in enumerate(section.samples):
        truth = s.truth
        rec = {
            "id": s.id,
            "modality": s.modality,
            "source": s.source,
            "reference": targets.references[i],
            "truth": {
                "findings": [n for n, v in zip(FINDINGS, s.finding_targets, strict=True) if v == 1.0],
                "tumour": TUMOUR_CLASSES[s.tumour_target] if s.tumour_target >= 0 else None,
                "treatments": [
                    n for n, v in zip(scoring.TREATMENTS, s.treatment_targets, strict=True) if v == 1.0
                ],
                "context": s.context.to_dict(),
                "structured": truth.to_dict() if truth is not None else None,
            },
            "reference_labels": ref_labels[i],
            "heatmap_target": cam_cases[i]["target"] if cam_cases and cam_cases[i] else None,
            "models": {},
        }
        sets = {}
        for name in predictors:
            run, m = section.runs[name], models[name]
            pred_sets, tumour_idx = scoring.predicted_sets(run, m["thresholds"])
            sets[name] = (pred_sets[i], tumour_idx[i])
            truth_set = set(rec["truth"]["findings"]) if s.modality == "CXR" else set()
            pc = m["per_case"]
            rec["models"][name] = {
                "report": run.reports[i],
                "findings": dict(zip(FINDINGS, run.findings[i].tolist(), strict=True)),
                "tumour": dict(zip(TUMOUR_CLASSES, run.tumour[i].tolist(), strict=True)),
                "treatments": dict(zip(scoring.TREATMENTS, run.treatments[i].tolist(), strict=True)),
                "predicted_findings": sorted(pred_sets[i]) if s.modality == "CXR" else [],
                "missed_findings": sorted(truth_set - pred_sets[i]) if s.modality == "CXR" else [],
                "false_findings": sorted(pred_sets[i] - truth_set) if s.modality == "CXR" else [],
                "tumour_pred": TUMOUR_CLASSES[tumour_idx[i]] if s.modality == "CT" else None,
                "tumour_correct": (tumour_idx[i] == s.tumour_target) if s.tumour_target >= 0 else None,
                "labels": (pc.get("labels") or [None] * (i + 1))[i],
                "clinical_f1": (pc.get("clinical_f1") or [None] * (i + 1))[i],
                "bleu_4": (pc.get("bleu_4") or [None] * (i + 1))[i],
                "rouge_l": (pc.get("rouge_l") or [None] * (i + 1))[i],
                "ood_score": run.ood[i],
                "latency_ms": run.latency_ms[i],
                "heatmap": cam_cases[i]["models"].get(name) if cam_cases and cam_cases[i] else None,
            }
        names = list(predictors)
        ref = names[0]
        rec["disagreement"] = {
            name: {
                "findings": sets[name][0] != sets[ref][0] if s.modality == "CXR" else False,
                "tumour": sets[name][1] != sets[ref][1] if s.modality == "CT" else False,
                "report_labels": clinical.positive_labels(rec["models"][name]["labels"] or {})
                != clinical.positive_labels(rec["models"][ref]["labels"] or {}),
            }
            for name in names[1:]
        }
        out.append(rec)
    return out


def _data_block(section: Section, origin: str | None = None) -> dict:
    mods = [s.modality for s in section.samples]
    return {
        "n_cases": len(section.samples),
        "n_cxr": mods.count("CXR"),
        "n_ct": mods.count("CT"),
        "n_val": len(section.val_samples),
        "sources": sorted({s.source for s in section.samples}),
        "report_origin": sorted({s.report_origin for s in section.samples}),
        **({"origin": origin} if origin else {}),
    }


# ----------------------------------------------------------------------------------------------
# Real sets


def _real_sections(predictors, cfg: EvalConfig, timing: dict) -> dict:
    """The real sets under ``cfg.real_dir`` (e.g. ../shared/data), each as its own section."""
    from model.data.sources import build_sources

    root = Path(cfg.real_dir)
    if not root.is_dir():
        return {}
    out = {}
    ref = next(iter(predictors))
    label = clinical.default_labeler()
    for source in build_sources(None, root):
        section = Section(
            name=f"{source.name}_{cfg.split}",
            samples=stable_subset(source.samples(cfg.split), cfg.real_limit),
            val_samples=stable_subset(source.samples("val"), cfg.val_limit) if cfg.split != "val" else [],
        )
        if not section.samples:
            continue
        with timed(timing, f"{section.name}.total_s"):  # listing the samples above is not counted
            _run_section(predictors, section, cfg, timing, section.name)
            refs = scoring.Targets.from_samples(section.samples, cfg.detail).references
            ref_labels = [dict(label(r)) if r else None for r in refs]
            models = _score_section(predictors, section, cfg, ref, ref_labels)
            for name, predictor in predictors.items():
                models[name].pop("per_case", None)
                seen = (predictor.card or {}).get("training", {}) or {}
                models[name]["trained_on_source"] = source.name in str(seen)
            data = {"dir": str(getattr(source, "root", root)), "split": cfg.split, **_data_block(section)}
            out[section.name] = {
                "data": data,
                "models": models,
                "retention": retention(models, ref),
            }
            if cfg.counterfactual_limit != 0:
                out[section.name]["counterfactual"] = _counterfactual(predictors, section, models, cfg)
    return out


def _counterfactual(predictors, section: Section, models: dict, cfg: EvalConfig) -> dict:
    """Intensity swap between the section's normal and abnormal cases (see ``counterfactual``)."""
    thresholds = {n: (models[n].get("thresholds") or {}).get("findings") for n in predictors}
    return counterfactual.intensity_swap(
        predictors, section.samples, load_sample_study, limit=cfg.counterfactual_limit, thresholds=thresholds,
        batch_size=cfg.batch_size,
    )  # fmt: skip
