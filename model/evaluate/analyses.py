"""Phantom-only analyses added to the scored models: report consistency and location, Grad-CAM
localisation, efficiency (latency, FLOPs, memory), the length/detail trade-off, and the protocol
block that documents how every metric was computed. ``model/evaluate/run.py`` calls them in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
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
from model.evaluate.sections import (
    REFERENCE_MODEL,
    EvalConfig,
    Section,
    load_mask,
    load_sample_study,
)
from model.explain.gradcam import DEFAULT_CAM_LAYER, default_cam_layer
from model.types import DISCLAIMER, FINDINGS, TUMOUR_CLASSES, ReportStyle

# ----------------------------------------------------------------------------------------------
# Grad-CAM localisation


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
    from model.explain.gradcam import default_method_for, explain

    # a model without a lesion map (an older checkpoint) falls back to a Grad-CAM method: recorded per model
    method = {m: default_method_for(p.model, cfg.cam_method) for m, p in predictors.items()}
    used_layer: dict[str, str | None] = {m: None for m in predictors}  # the lesion map sits on the last stage
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
                predictor, study, target, method=method[m], context=sample.context, layer=cfg.cam_layer
            )
            maps[m] = expl.heatmap
            summary = localization.heatmap_summary(expl.heatmap, mask, cfg.iou_rule)
            summary["flat"], summary["layer"] = expl.flat, expl.layer
            used_layer[m] = expl.layer
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
            "layer": used_layer[m] or cfg.cam_layer or default_cam_layer(predictors[m].model),
            "method": method[m],
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
# Efficiency and trade-off


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


# ----------------------------------------------------------------------------------------------
# Protocol


def result_header(cfg: EvalConfig, name: str) -> dict:
    """The keys every evaluation JSON opens with (phantom and external alike): schema, name, time,
    disclaimer, the config as run and the declared protocol."""
    from model.evaluate.summary import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "name": cfg.name or name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "protocol": protocol(cfg),
    }


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


# ----------------------------------------------------------------------------------------------
# Steps that add a block to every scored model (``models[name]``)


def _add_consistency(models: dict, predictors, section: Section) -> None:
    """Does the report contradict its own heads? (issue 10)"""
    for name in models:
        run = section.runs[name]
        models[name]["consistency"] = consistency.from_run(
            [s.modality for s in section.samples], run.findings, run.tumour,
            models[name]["per_case"].get("labels") or [None] * len(section.samples),
            {"served": predictors[name].finding_thresholds, "evaluation": models[name]["thresholds"]["findings"]},
        )  # fmt: skip
        served, at_eval = models[name]["consistency"]["served"], models[name]["consistency"]["evaluation"]
        models[name]["metrics"]["consistency"] = {
            "contradiction_rate": served["contradiction_rate"],
            "denial_rate": served["denial_rate"],
            "contradiction_rate_eval_thresholds": at_eval["contradiction_rate"],
        }
        if run.edited:  # the served reports follow the heads (model/follow_labels.py): the raw decoder too
            n = len(run.decoder_conflicts)
            models[name]["metrics"]["consistency"].update(
                decoder_contradiction_rate=sum(bool(c) for c in run.decoder_conflicts) / n if n else None,
                reports_edited_rate=sum(run.edited) / n if n else None,
            )


def _add_location(models: dict, section: Section) -> None:
    """Side / zone stated in the reports vs the phantoms' truth."""
    for name in models:
        loc_block = location.location_agreement(
            [s.truth for s in section.samples], section.runs[name].reports
        )
        models[name]["location"] = loc_block
        models[name]["metrics"]["location"] = location.headline(loc_block)


def _add_localization(models: dict, loc: dict, heat_agree: dict) -> None:
    for name in models:
        models[name]["metrics"]["localization"] = loc[name]
        if name in heat_agree:
            models[name].setdefault("agreement", {}).update(heat_agree[name])


def _add_efficiency(models: dict, eff: dict) -> None:
    for name in models:
        models[name]["efficiency"] = eff[name]
        models[name]["metrics"]["efficiency"] = _flat_efficiency(eff[name])


def _add_cards(models: dict, predictors, checkpoints: dict) -> None:
    for name, predictor in predictors.items():
        card = predictor.card or {}
        models[name]["checkpoint"] = str(checkpoints[name])
        models[name]["card"] = {k: card.get(k) for k in ("model_id", "architecture", "parameters", "training",
                                                         "created", "sha256") if k in card}  # fmt: skip
