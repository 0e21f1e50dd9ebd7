"""Evaluate teacher / students on the phantom test split (and real sets) -> ``assets/eval/NAME.json``.

    result = evaluate({"teacher": DIR, "student": DIR, "student_nokd": DIR}, "data/phantoms",
                      "assets/eval/phantom_test.json", EvalConfig(limit=200))

``evaluate`` reads top to bottom as steps: load the models, predict and score the phantom section
(``sections``), add consistency, location, Grad-CAM localisation, efficiency and the length/detail
trade-off (``analyses``), evaluate the real sets, then assemble and write the JSON. The JSON layout
is documented in ``docs/eval_schema.md``; a markdown summary is written beside it.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from model.evaluate.analyses import (  # noqa: F401  (re-exported: callers import them from run)
    _add_cards,
    _add_consistency,
    _add_efficiency,
    _add_localization,
    _add_location,
    _cam_target,
    _efficiency,
    _flat_efficiency,
    _localize,
    _tradeoff,
    protocol,
    result_header,
)
from model.evaluate.sections import (  # noqa: F401  (re-exported: callers import them from run)
    DEFAULT_REAL_DIR,
    REFERENCE_MODEL,
    REPO,
    EvalConfig,
    Section,
    _cases,
    _counterfactual,
    _data_block,
    _predict_section,
    _real_sections,
    _reference_labels,
    _run_section,
    _score_section,
    load_mask,
    load_predictors,
    load_sample_study,
    stable_subset,
    timed,
)
from model.evaluate.summary import retention, write_outputs


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
    out_json = _out_path(out_json, cfg)
    checkpoints = {k: Path(v) for k, v in checkpoints.items()}

    with timed(timing, "load_models_s"):
        predictors = load_predictors(checkpoints)
    ref = next(iter(predictors))

    phantom = _phantom_section(data_dir, cfg)
    _run_section(predictors, phantom, cfg, timing, "phantom")
    with timed(timing, "phantom.metrics_s"):
        ref_labels = _reference_labels(phantom, cfg)
        models = _score_section(predictors, phantom, cfg, ref, ref_labels)
    _add_consistency(models, predictors, phantom)
    _add_location(models, phantom)

    cam_cases: list = []
    if cfg.cam_limit != 0:
        with timed(timing, "phantom.gradcam_s"):
            loc, cam_cases, heat_agree = _localize(predictors, phantom, cfg, ref)
        _add_localization(models, loc, heat_agree)

    with timed(timing, "efficiency_s"):
        eff = _efficiency(predictors, checkpoints, phantom.samples, cfg)
    _add_efficiency(models, eff)

    trade = None
    if cfg.tradeoff_limit != 0:
        with timed(timing, "tradeoff_s"):
            trade = _tradeoff(predictors, phantom.samples, cfg)

    real = _real_sections(predictors, cfg, timing) if cfg.real_dir else {}

    _add_cards(models, predictors, checkpoints)
    cases = _cases(phantom, models, predictors, ref_labels, cam_cases, cfg)
    dataset = _add_seeds(cases, data_dir)
    for m in models.values():
        m.pop("per_case", None)
    timing["total_s"] = round(time.perf_counter() - t_start, 2)

    result = {
        **result_header(cfg, out_json.stem if out_json else phantom.name),
        "data": {
            "dir": str(data_dir),
            "split": cfg.split,
            **_data_block(phantom, "phantom"),
            "dataset": dataset,
        },
        "model_order": list(predictors),
        "models": models,
        "retention": retention(models, ref),
        "tradeoff": trade,
        "real": real,
        "cases": cases,
        "timing": timing,
        "environment": _environment(),
    }
    if out_json is not None:
        write_outputs(result, out_json)
    return result


# ----------------------------------------------------------------------------------------------
# Steps of ``evaluate``


def _out_path(out_json: str | Path | None, cfg: EvalConfig) -> Path | None:
    """The JSON to write: ``out_json`` itself, or ``phantom_<split>.json`` inside a folder."""
    if out_json is None:
        return None
    out_json = Path(out_json)
    return out_json if out_json.suffix == ".json" else out_json / f"phantom_{cfg.split}.json"


def _phantom_section(data_dir: str | Path, cfg: EvalConfig) -> Section:
    """The phantom split to evaluate (+ validation cases for thresholds); refuses an empty split."""
    from model.data.sources import PhantomSource

    source = PhantomSource(data_dir)
    phantom = Section(
        name=f"phantom_{cfg.split}",
        samples=stable_subset(source.samples(cfg.split), cfg.limit),
        val_samples=stable_subset(source.samples("val"), cfg.val_limit) if cfg.split != "val" else [],
    )
    if not phantom.samples:
        raise ValueError(f"{data_dir} has no {cfg.split!r} cases")
    return phantom


def _add_seeds(cases: list[dict], data_dir: str | Path) -> dict | None:
    """The set's provenance; each case gets its seed when the set has one (Error analysis rebuilds
    a case from it)."""
    from model.data.rebuild import dataset_provenance, seed_from_id

    dataset = dataset_provenance(data_dir)
    for rec in cases if dataset and dataset.get("seed") is not None else ():
        rec["seed"] = seed_from_id(dataset["seed"], rec["id"])
    return dataset


def _environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
