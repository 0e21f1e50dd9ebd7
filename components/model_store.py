"""Which weights the app serves, loaded once per server (st.cache_resource) and shared by all sessions.

Resolution order:
1. ``$MEDDISTILL_CHECKPOINTS/{teacher,student,student_nokd}`` (tests, experiments);
2. the shipped ``assets/checkpoints/{teacher,student,student_nokd}``;
3. tiny random-weight checkpoints built on the fly into a temp dir (``model.demo``, named presets),
   labelled "untrained demo weights".

Predictors are never mutated after loading; each keeps a ``lock`` that Grad-CAM holds while its hooks
are on the shared model.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from components.escaping import md_error

ROOT = Path(__file__).resolve().parents[1]
MODEL_IDS = ("teacher", "student", "student_nokd")
REQUIRED = ("teacher", "student")
MODEL_TITLES = {"teacher": "Teacher", "student": "Student (KD)", "student_nokd": "Student (no KD)"}
#: the one definition of a checkpoint's size, on every page and in the evaluation tables
SIZE_HELP = (
    "Checkpoint size: all files in the checkpoint folder (weights, OOD statistics, tokenizer, config, "
    "model card, training log), as the evaluation measures it (model/evaluate/efficiency.py "
    "checkpoint_bytes); 1 MB = 2^20 bytes."
)


def size_mb_text(size: dict) -> str:
    """'66.1 MB' from a ``ModelSet.sizes`` entry (SIZE_HELP)."""
    return f"{size.get('mb', 0.0):.1f} MB"


ENV_VAR = "MEDDISTILL_CHECKPOINTS"


@dataclass
class ModelSet:
    predictors: dict  # model id -> model.inference.Predictor
    dirs: dict[str, Path]  # model id -> checkpoint dir
    origin: str  # "env" | "shipped" | "demo"
    key: str  # cache key: changes when other weights are loaded
    sizes: dict[str, dict] = field(default_factory=dict)  # model id -> {"params", "bytes", "mb"} (SIZE_HELP)

    @property
    def is_demo(self) -> bool:
        return self.origin == "demo"


def _is_checkpoint(d: Path) -> bool:
    return d.is_dir() and any(d.glob("*.safetensors"))


def resolve_checkpoint_dirs() -> tuple[str, dict[str, Path]]:
    """(origin, dirs) without loading anything; cheap, called on every rerun."""
    env = os.environ.get(ENV_VAR)
    if env:
        base = Path(env)
        dirs = {m: base / m for m in MODEL_IDS if _is_checkpoint(base / m)}
        if all(m in dirs for m in REQUIRED):
            return "env", dirs
    base = ROOT / "assets" / "checkpoints"
    dirs = {m: base / m for m in MODEL_IDS if _is_checkpoint(base / m)}
    if all(m in dirs for m in REQUIRED):
        return "shipped", dirs
    return "demo", {}


def _dir_key(dirs: dict[str, Path]) -> str:
    parts = []
    for m, d in sorted(dirs.items()):
        mtimes = max((p.stat().st_mtime_ns for p in d.iterdir()), default=0)
        parts.append(f"{m}={d}@{mtimes}")
    return ";".join(parts)


@st.cache_resource(show_spinner=False)
def _demo_dirs() -> dict[str, Path]:
    from model.demo import build_demo_checkpoints

    return build_demo_checkpoints(Path(tempfile.mkdtemp(prefix="meddistill_demo_")))


@st.cache_resource(show_spinner=False)
def _load_predictor(model_id: str, path: str, key: str):
    """One checkpoint, loaded once per server and set of weights (``key``), shared by all sessions."""
    from model.inference import Predictor

    return Predictor.from_dir(Path(path), model_id)


@st.cache_resource(show_spinner=False)
def _load_model_set(origin: str, key: str, dirs_items: tuple[tuple[str, str], ...]) -> ModelSet:
    dirs = _demo_dirs() if origin == "demo" else {m: Path(d) for m, d in dirs_items}
    predictors = {m: _load_predictor(m, str(dirs[m]), key) for m in MODEL_IDS if m in dirs}
    _warm_up(predictors)
    from model.evaluate.efficiency import checkpoint_bytes, count_parameters

    sizes = {}
    for m, p in predictors.items():
        params = count_parameters(p.model)
        size = checkpoint_bytes(dirs[m])  # the evaluation's definition: one size figure everywhere
        sizes[m] = {"params": int(params), "bytes": size["checkpoint_bytes"], "mb": size["checkpoint_mb"]}
    return ModelSet(predictors=predictors, dirs=dirs, origin=origin, key=key, sizes=sizes)


def _warm_up(predictors: dict) -> None:
    """One tiny prediction each, on the inference queue's thread, so the first user's upload does not
    pay one-off kernel set-up."""
    import numpy as np

    from model.serving import shared_queue
    from model.types import ReportStyle, Study

    study = Study(pixels=np.full((64, 64), 0.5, np.float32), modality="CXR", source="warm-up")
    for p in predictors.values():
        try:
            shared_queue().run(p.predict, study, style=ReportStyle(max_new_tokens=4))
        except Exception:  # warm-up is best effort; real errors surface on the page
            pass


_READY: set[str] = set()  # model-set keys loaded in this process (only then no progress box)


def _load_with_progress(origin: str, key: str, dirs_items: tuple[tuple[str, str], ...]) -> ModelSet:
    """The first load in a process shows its steps (a few seconds; longer on a busy machine)."""
    if key in _READY:
        return _load_model_set(origin, key, dirs_items)
    slot = st.empty()
    with slot.status("Loading models (once per server)…", expanded=True) as status:
        if origin == "demo":
            status.write("Building untrained demo weights…")
            _demo_dirs()
        for m, d in dirs_items:
            status.write(f"Loading the {MODEL_TITLES.get(m, m).lower()} ({Path(d).name})…")
            _load_predictor(m, d, key)
        status.write("Warming up (one tiny prediction per model)…")
        ms = _load_model_set(origin, key, dirs_items)
    _READY.add(key)
    slot.empty()
    return ms


def load_model_set() -> ModelSet:
    """The served models (loads once per server and per set of checkpoint dirs)."""
    origin, dirs = resolve_checkpoint_dirs()
    key = origin + ":" + _dir_key(dirs)
    try:
        return _load_with_progress(origin, key, tuple((m, str(d)) for m, d in sorted(dirs.items())))
    except Exception as err:  # a broken checkpoint must not take the app down
        if origin == "demo":
            raise
        st.error(
            f"Could not load the checkpoints ({md_error(err, 'loading checkpoints')}); falling back to "
            "untrained demo weights. Check assets/checkpoints (or MEDDISTILL_CHECKPOINTS) and restart."
        )
        return _load_with_progress("demo", "demo:", ())


def describe_origin(ms: ModelSet) -> str:
    where = {"env": f"${ENV_VAR}", "shipped": "assets/checkpoints", "demo": "a temp dir"}[ms.origin]
    names = ", ".join(MODEL_TITLES.get(m, m) for m in MODEL_IDS if m in ms.predictors)
    return f"Models: {names} (from {where})."


def training_data_summary(card: dict) -> str:
    """One line on what a checkpoint was trained on, from its model card."""
    if card.get("untrained"):
        return "untrained demo weights (random initialisation)"
    training = card.get("training") or {}
    data = training.get("data") or {}
    parts = []
    for key, label in (("labelled", "labelled"), ("transfer", "transfer set (teacher soft labels)")):
        block = data.get(key)
        if isinstance(block, dict) and block.get("n"):
            sources = ", ".join(f"{s} {n}" for s, n in (block.get("per_source") or {}).items())
            parts.append(f"{block['n']} {label}" + (f" ({sources})" if sources else ""))
        elif isinstance(block, str):
            parts.append(f"{label}: {block}")
    recipe = training.get("recipe")
    text = "; ".join(parts) or str(card.get("training_data") or "unknown")
    return f"{text}" + (f" — {recipe}" if recipe else "")
