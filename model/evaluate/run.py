"""Evaluate teacher / students on the phantom test split (and real sets) -> ``assets/eval/NAME.json``.

    result = evaluate({"teacher": DIR, "student": DIR, "student_nokd": DIR}, "data/phantoms",
                      "assets/eval/phantom_test.json", EvalConfig(limit=200))

One pass per section predicts every case with every model (the case is loaded once), then
``scoring`` turns predictions into metric blocks; Grad-CAM localisation, interleaved latency, FLOPs,
peak memory and the length/detail trade-off follow. The JSON layout is documented in
``docs/eval_schema.md``; a markdown summary is written beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.evaluate import (
    clinical,
    consistency,
    counterfactual,
    efficiency,
    localization,
    location,
    nlg,
    scoring,
    tradeoff,
)
from model.evaluate.calibration import calibration_protocol
from model.evaluate.summary import SCHEMA_VERSION, retention, write_outputs
from model.explain.gradcam import DEFAULT_CAM_LAYER, DEFAULT_CAM_METHOD, default_cam_layer
from model.types import (
    DETAIL_LEVELS,
    DISCLAIMER,
    FINDINGS,
    TUMOUR_CLASSES,
    ReportStyle,
    Study,
)

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


def _cam_target(sample, masks: dict, teacher_run: scoring.ModelRun, i: int) -> str:
    """One Grad-CAM target per case: the present finding with the largest mask (CXR), the true
    tumour class (CT); on a normal study the teacher's top finding / tumour class (no mask)."""
    truth = sample.truth
    if sample.modality == "CT":
        if truth is not None and truth.tumour not in (None, "none"):
            return f"tumour:{truth.tumour}"
        return f"tumour:{TUMOUR_CLASSES[int(np.nanargmax(teacher_run.tumour[i]))]}"
    present = [n for n in FINDINGS if n in masks]
    if present:
        return "finding:" + max(present, key=lambda n: int(masks[n].sum()))
    return "finding:" + FINDINGS[int(np.nanargmax(teacher_run.findings[i]))]


def _localize(predictors, section: Section, cfg: EvalConfig, ref: str) -> tuple[dict, list, dict]:
    """Pointing game / IoU per model, teacher-student map agreement, per-case heat-map summaries."""
    from model.explain.gradcam import explain

    n = len(section.samples) if cfg.cam_limit is None else min(cfg.cam_limit, len(section.samples))
    per_case: list[dict | None] = [None] * len(section.samples)
    hits = {m: [] for m in predictors}
    flats = {m: [] for m in predictors}
    ious = {m: [] for m in predictors}
    agree = {m: {"pearson": [], "iou": []} for m in predictors if m != ref}
    for i in tqdm(range(n), desc="grad-cam", unit="case", disable=not cfg.progress, leave=False):
        sample = section.samples[i]
        study = load_sample_study(sample)
        masks = load_mask(sample)
        target = _cam_target(sample, masks, section.runs[ref], i)
        name = target.split(":", 1)[1]
        mask = masks.get("tumour" if target.startswith("tumour:") else name)
        maps, rec = {}, {"target": target, "models": {}}
        for m, predictor in predictors.items():
            expl = explain(
                predictor, study, target, method=cfg.cam_method, context=sample.context, layer=cfg.cam_layer
            )
            maps[m] = expl.heatmap
            summary = localization.heatmap_summary(expl.heatmap, mask, cfg.iou_rule)
            summary["flat"], summary["layer"] = expl.flat, expl.layer
            flats[m].append(expl.flat)
            if expl.flat and summary["hit"] is not None:  # a flat map points nowhere (issue 10)
                summary["hit"], summary["iou"] = False, 0.0
            rec["models"][m] = summary
            if summary["hit"] is not None:
                hits[m].append(summary["hit"])
                ious[m].append(summary["iou"])
        for m in agree:
            a = localization.map_agreement(maps[ref], maps[m], cfg.iou_rule)
            rec["models"][m]["agreement"] = a
            agree[m]["pearson"].append(a["pearson"])
            agree[m]["iou"].append(a["iou"])
        per_case[i] = rec
    metrics = {
        m: {
            "pointing_game": float(np.mean(hits[m])) if hits[m] else None,
            "iou": float(np.nanmean(ious[m])) if ious[m] else None,
            "n": len(hits[m]),
            "flat_rate": float(np.mean(flats[m])) if flats[m] else None,
            "layer": cfg.cam_layer or default_cam_layer(predictors[m].model),
            "method": cfg.cam_method,
        }
        for m in predictors
    }
    agreement = {
        m: {
            "heatmap_pearson": float(np.nanmean(v["pearson"])) if v["pearson"] else None,
            "heatmap_iou": float(np.nanmean(v["iou"])) if v["iou"] else None,
            "n_heatmaps": len(v["pearson"]),
        }
        for m, v in agree.items()
    }
    return metrics, per_case, agreement


# ----------------------------------------------------------------------------------------------
# Sections


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


def _efficiency(predictors, checkpoints, samples, cfg: EvalConfig) -> dict:
    studies = [load_sample_study(s) for s in samples[: max(1, min(8, len(samples)))]]
    contexts = [s.context for s in samples[: len(studies)]]
    style = ReportStyle(detail=cfg.detail, max_new_tokens=cfg.max_new_tokens)
    lat = efficiency.interleaved_latency(
        predictors, studies, runs=cfg.latency_runs, warmup=cfg.latency_warmup, threads=cfg.threads,
        style=style, contexts=contexts,
    )  # fmt: skip
    out = {}
    for name, predictor in predictors.items():
        fl = efficiency.flops(predictor.model, image_size=predictor.image_size)
        mem = efficiency.peak_memory(checkpoints[name], threads=cfg.threads or 1) if cfg.memory else {}
        out[name] = {
            "parameters": efficiency.count_parameters(predictor.model),
            **efficiency.checkpoint_bytes(checkpoints[name]),
            "flops": {
                **fl,
                "report_estimate": fl["encode_heads"] + lat[name]["tokens_median"] * fl["decode_step"],
            },
            "latency": lat[name],
            "memory": mem,
            "image_size": predictor.image_size,
            "architecture": predictor.cfg.arch_name,
        }
    return out


def _flat_efficiency(e: dict) -> dict:
    return {
        "parameters": e["parameters"],
        "checkpoint_mb": e["checkpoint_mb"],
        "weights_bytes": e["weights_bytes"],
        "flops_encode_heads": e["flops"]["encode_heads"],
        "flops_decode_step": e["flops"]["decode_step"],
        "flops_report_estimate": e["flops"]["report_estimate"],
        "latency_median_ms": e["latency"]["median_ms"],
        "latency_p90_ms": e["latency"]["p90_ms"],
        "peak_rss_mb": (e.get("memory") or {}).get("peak_rss_mb"),
        "model_rss_mb": (e.get("memory") or {}).get("model_rss_mb"),
    }


def _tradeoff(predictors, samples, cfg: EvalConfig) -> dict:
    subset = samples if cfg.tradeoff_limit is None else samples[: cfg.tradeoff_limit]
    subset = [s for s in subset if all((s.reports or {}).get(d) for d in cfg.tradeoff_details)]
    studies = [load_sample_study(s) for s in subset]
    contexts = [s.context for s in subset]
    references = {d: [s.reports[d] for s in subset] for d in cfg.tradeoff_details}
    label = clinical.default_labeler()
    ref_labels = {d: [label(r) for r in refs] for d, refs in references.items()}
    total = len(predictors) * len(cfg.tradeoff_details) * len(subset)
    curves = {}
    with tqdm(total=total, desc="trade-off", unit="report", disable=not cfg.progress, leave=False) as bar:
        for name, predictor in predictors.items():
            curves[name] = tradeoff.curves_for_model(
                predictor, studies, contexts, references, caps=cfg.tradeoff_tokens, details=cfg.tradeoff_details,
                uncertain=cfg.uncertain, labeler=label, reference_labels=ref_labels, progress=bar.update,
                batch_size=cfg.batch_size,
            )  # fmt: skip
    return {
        "max_new_tokens": list(cfg.tradeoff_tokens),
        "details": list(cfg.tradeoff_details),
        "n_cases": len(subset),
        "model_caps": {n: tradeoff.model_cap(p) for n, p in predictors.items()},
        "protocol": tradeoff.tradeoff_protocol(cfg.tradeoff_tokens, cfg.tradeoff_details, len(subset)),
        "curves": curves,
    }


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
# Entry point


def protocol(cfg: EvalConfig) -> dict:
    return {
        "report": nlg.nlg_protocol(),
        "clinical": {**clinical.ce_protocol(cfg.uncertain), "headline_f1": "micro"},
        "classification": {
            "auroc": "Mann-Whitney with mid-ranks (ties count 1/2); undefined with one class",
            "ap": "step-wise sum (R_k - R_k-1) P_k over distinct thresholds",
            "threshold": "per label max-F1 on the validation split (p >= t); 0.5 without validation positives",
            "unknown_targets": "left out per label (a source supervises only what it knows)",
            "tumour": "argmax accuracy / confusion; one-vs-rest AUROC per class",
        },
        "calibration": calibration_protocol(),
        "localization": {
            **localization.localization_protocol(cfg.iou_rule),
            "cam_method": cfg.cam_method,
            "cam_layer": cfg.cam_layer or dict(DEFAULT_CAM_LAYER),
            "cam_choice": "best pointing game on the validation phantoms: benchmarks/bench_cam.py -> "
            "benchmarks/results/cam.json",
            "flat_maps": "no localised positive evidence (gradcam.is_flat): counted as a miss, IoU 0",
        },
        "consistency": {
            **consistency.consistency_protocol(),
            "thresholds": {
                "served": "the Predictor's (card thresholds, else 0.5)",
                "evaluation": "validation max-F1 (this file's thresholds)",
            },
            "report_conditioning": "Predictor.report_conditioning (labels: thresholded heads in the memory)",
        },
        "location": location.location_protocol(),
        "counterfactual": counterfactual.counterfactual_protocol(),
        "efficiency": efficiency.efficiency_protocol(cfg.latency_runs, cfg.latency_warmup, cfg.threads),
        "decoding": dataclasses.asdict(ReportStyle(detail=cfg.detail, max_new_tokens=cfg.max_new_tokens)),
        "reference_model": REFERENCE_MODEL,
        "retention": "model / reference model, per numeric metric (lower-is-better metrics listed)",
    }


def evaluate(
    checkpoints: Mapping[str, str | Path],
    data_dir: str | Path,
    out_json: str | Path | None = None,
    config: EvalConfig | None = None,
    **overrides,
) -> dict:
    """Evaluate every checkpoint on ``data_dir`` (a ``meddistill generate-data`` folder) and write
    ``out_json`` (a folder gets ``phantom_<split>.json``) + a markdown summary beside it.

    Returns the result dict (the JSON's content).
    """
    cfg = dataclasses.replace(config or EvalConfig(), **overrides)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    if out_json is not None:
        out_json = Path(out_json)
        if out_json.suffix != ".json":
            out_json = out_json / f"phantom_{cfg.split}.json"
    checkpoints = {k: Path(v) for k, v in checkpoints.items()}

    with timed(timing, "load_models_s"):
        predictors = load_predictors(checkpoints)
    ref = next(iter(predictors))

    from model.data.sources import PhantomSource

    source = PhantomSource(data_dir)
    phantom = Section(
        name=f"phantom_{cfg.split}",
        samples=stable_subset(source.samples(cfg.split), cfg.limit),
        val_samples=stable_subset(source.samples("val"), cfg.val_limit) if cfg.split != "val" else [],
    )
    if not phantom.samples:
        raise ValueError(f"{data_dir} has no {cfg.split!r} cases")
    _run_section(predictors, phantom, cfg, timing, "phantom")

    with timed(timing, "phantom.metrics_s"):
        label = clinical.default_labeler()
        refs = scoring.Targets.from_samples(phantom.samples, cfg.detail).references
        ref_labels = [dict(label(r)) if r else None for r in refs]
        models = _score_section(predictors, phantom, cfg, ref, ref_labels)

    for name in models:  # does the report contradict its own heads? (issue 10)
        run = phantom.runs[name]
        models[name]["consistency"] = consistency.from_run(
            [s.modality for s in phantom.samples], run.findings, run.tumour,
            models[name]["per_case"].get("labels") or [None] * len(phantom.samples),
            {"served": predictors[name].finding_thresholds, "evaluation": models[name]["thresholds"]["findings"]},
        )  # fmt: skip
        served, at_eval = models[name]["consistency"]["served"], models[name]["consistency"]["evaluation"]
        models[name]["metrics"]["consistency"] = {
            "contradiction_rate": served["contradiction_rate"],
            "denial_rate": served["denial_rate"],
            "contradiction_rate_eval_thresholds": at_eval["contradiction_rate"],
        }
    for name in models:  # side / zone stated in the reports vs the phantoms' truth
        loc_block = location.location_agreement([s.truth for s in phantom.samples], phantom.runs[name].reports)
        models[name]["location"] = loc_block
        models[name]["metrics"]["location"] = location.headline(loc_block)

    cam_cases: list = []
    if cfg.cam_limit != 0:
        with timed(timing, "phantom.gradcam_s"):
            loc, cam_cases, heat_agree = _localize(predictors, phantom, cfg, ref)
        for name in models:
            models[name]["metrics"]["localization"] = loc[name]
            if name in heat_agree:
                models[name].setdefault("agreement", {}).update(heat_agree[name])

    with timed(timing, "efficiency_s"):
        eff = _efficiency(predictors, checkpoints, phantom.samples, cfg)
    for name in models:
        models[name]["efficiency"] = eff[name]
        models[name]["metrics"]["efficiency"] = _flat_efficiency(eff[name])

    trade = None
    if cfg.tradeoff_limit != 0:
        with timed(timing, "tradeoff_s"):
            trade = _tradeoff(predictors, phantom.samples, cfg)

    real = {}
    if cfg.real_dir:
        real = _real_sections(predictors, cfg, timing)

    for name, predictor in predictors.items():
        card = predictor.card or {}
        models[name]["checkpoint"] = str(checkpoints[name])
        models[name]["card"] = {k: card.get(k) for k in ("model_id", "architecture", "parameters", "training",
                                                         "created", "sha256") if k in card}  # fmt: skip
    cases = _cases(phantom, models, predictors, ref_labels, cam_cases, cfg)
    from model.data.rebuild import dataset_provenance, seed_from_id

    dataset = dataset_provenance(data_dir)  # seed + size: Error analysis rebuilds a case from them
    for rec in cases if dataset and dataset.get("seed") is not None else ():
        rec["seed"] = seed_from_id(dataset["seed"], rec["id"])
    for m in models.values():
        m.pop("per_case", None)
    timing["total_s"] = round(time.perf_counter() - t_start, 2)
    result = {
        "schema_version": SCHEMA_VERSION,
        "name": cfg.name or (out_json.stem if out_json else phantom.name),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "protocol": protocol(cfg),
        "data": {"dir": str(data_dir), "split": cfg.split, **_data_block(phantom, "phantom"),
                 "dataset": dataset},  # fmt: skip
        "model_order": list(predictors),
        "models": models,
        "retention": retention(models, ref),
        "tradeoff": trade,
        "real": real,
        "cases": cases,
        "timing": timing,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    if out_json is not None:
        write_outputs(result, out_json)
    return result


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
