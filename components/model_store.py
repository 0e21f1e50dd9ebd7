"""Which weights the app serves, loaded once per server (st.cache_resource) and shared by all sessions.

Resolution order:
1. ``$MEDDISTILL_CHECKPOINTS/{teacher,student,student_nokd}`` (tests, experiments): no registry version;
2. the model registry's current version (``model.review``, issue 14) when its folder holds checkpoints;
3. the shipped ``assets/checkpoints/{teacher,student,student_nokd}`` (version 1 of the registry, also
   when no review store exists yet);
4. tiny random-weight checkpoints built on the fly into a temp dir (``model.demo``, named presets),
   labelled "untrained demo weights".

The registry is read on every rerun (one query): a version promoted or rolled back from the CLI is
served from the next page view on, without a restart.

Predictors are never mutated after loading (apart from a bounded, locked cache of trunk features that
the divergence passes reuse); Grad-CAM hooks only its own per-call tap and writes no parameter gradient.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from components.escaping import md_error

log = logging.getLogger(__name__)
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
    origin: str  # "env" | "registry" | "shipped" | "demo"
    key: str  # cache key: changes when other weights are loaded
    sizes: dict[str, dict] = field(default_factory=dict)  # model id -> {"params", "bytes", "mb"} (SIZE_HELP)
    version: int | None = None  # the registry version served (None: env or demo weights, no version)
    version_note: str = ""  # why the served weights are not the registry's current version, if they are not

    @property
    def is_demo(self) -> bool:
        return self.origin == "demo"


def _is_checkpoint(d: Path) -> bool:
    return d.is_dir() and any(d.glob("*.safetensors"))


def resolve_checkpoint_dirs() -> tuple[str, dict[str, Path]]:
    """(origin, dirs) without loading anything; cheap, called on every rerun."""
    origin, dirs, _, _ = resolve_served()
    return origin, dirs


def resolve_served() -> tuple[str, dict[str, Path], int | None, str]:
    """(origin, dirs, registry version, note): the weights to serve and the version they are."""
    env = os.environ.get(ENV_VAR)
    if env:
        base = Path(env)
        dirs = {m: base / m for m in MODEL_IDS if _is_checkpoint(base / m)}
        if all(m in dirs for m in REQUIRED):
            return "env", dirs, None, ""
    shipped = ROOT / "assets" / "checkpoints"
    version, note = 1, ""
    current = registry_current()
    if current is not None and current.version != 1:
        base = Path(current.path) if Path(current.path).is_absolute() else ROOT / current.path
        dirs = {m: base / m for m in MODEL_IDS if _is_checkpoint(base / m)}
        if all(m in dirs for m in REQUIRED):
            return "registry", dirs, current.version, ""
        note = (
            f"The registry's current version {current.version} points at {current.path}, which holds no "
            "teacher and student checkpoints: serving the shipped weights (version 1) instead."
        )
    dirs = {m: shipped / m for m in MODEL_IDS if _is_checkpoint(shipped / m)}
    if all(m in dirs for m in REQUIRED):
        return "shipped", dirs, version, note
    return "demo", {}, None, note


def registry_current():
    """The registry's current ``ModelVersion``; None when no review store exists yet or it cannot be read
    (the app then serves the shipped weights, version 1). Never creates a store."""
    store, _ = review_store(create=False)
    if store is None:
        return None
    try:
        return store.current_version()
    except Exception:  # a locked or broken store must not stop the models from loading
        log.warning("could not read the model registry; serving the shipped weights", exc_info=True)
        return None


def _store_location() -> tuple[str | None, str | None]:
    return os.environ.get("MEDDISTILL_DB_URL"), os.environ.get("MEDDISTILL_DATA_DIR")


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_store(url: str | None, data_dir: str | None, create: bool):
    from model.review import ReviewStore

    return ReviewStore.open(url=url, data_dir=Path(data_dir) if data_dir else None, create=create)


def review_store(create: bool = True):
    """(store, None) or (None, a sentence for the page). ``create=False`` opens an existing store only
    (None, None when none exists yet: nothing is wrong, the first saved review makes it).

    Opened once per server and location (``MEDDISTILL_DB_URL`` / ``MEDDISTILL_DATA_DIR``); a failure is not
    cached, so the next rerun tries again (a store that was locked or missing may be there now).
    """
    try:
        from model.review import StoreError
        from model.review.store import DB_FILE, default_data_dir
    except ImportError:
        return None, "The review store is not installed in this build."
    url, data_dir = _store_location()
    if (
        not create
        and url is None
        and not (Path(data_dir) if data_dir else default_data_dir()).joinpath(DB_FILE).exists()
    ):
        return None, None
    try:
        return _open_store(url, data_dir, create), None
    except StoreError as err:
        return None, str(err)
    except Exception:  # a bug, not the user's doing: the log has it, the page says so plainly
        log.error("opening the review store failed", exc_info=True)
        return (
            None,
            "The review store could not be opened (an unexpected internal error; see the server log).",
        )


def version_text(ms: ModelSet) -> str:
    """'Model version 3' (or why there is none), the line on every result and model card."""
    if ms.version is not None:
        return f"Model version {ms.version}" + (" (shipped weights)" if ms.origin == "shipped" else "")
    if ms.origin == "env":
        return f"Custom checkpoints from ${ENV_VAR} (not a registry version)"
    return "Untrained demo weights (no registry version)"


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
    # No warm-up predictions: the first page predicts with teacher and student at once, so a warm-up
    # repeated that page's one-off set-up work (0.40 CPU-s of a cold start, benchmarks/results/
    # cold_start_profile.md), and the no-KD student's warm-up served a toggle that is off by default.
    predictors = {m: _load_predictor(m, str(dirs[m]), key) for m in MODEL_IDS if m in dirs}
    from model.evaluate.efficiency import checkpoint_bytes, count_parameters

    sizes = {}
    for m, p in predictors.items():
        params = count_parameters(p.model)
        size = checkpoint_bytes(dirs[m])  # the evaluation's definition: one size figure everywhere
        sizes[m] = {"params": int(params), "bytes": size["checkpoint_bytes"], "mb": size["checkpoint_mb"]}
    return ModelSet(predictors=predictors, dirs=dirs, origin=origin, key=key, sizes=sizes)


_READY: set[str] = set()  # model-set keys loaded in this process (only then no progress box)


def _load_with_progress(origin: str, key: str, dirs_items: tuple[tuple[str, str], ...]) -> ModelSet:
    """The first load in a process shows its steps (a few seconds; longer on a busy machine)."""
    if key in _READY:
        return _load_model_set(origin, key, dirs_items)
    slot = st.empty()
    with slot.status("Loading models (once per server)…", expanded=True) as status:
        from model.serving import wait_prewarm

        status.write("Importing torch and the networks…")
        wait_prewarm()  # app.py's background imports: wait for them rather than race them
        if origin == "demo":
            status.write("Building untrained demo weights…")
            _demo_dirs()
        for m, d in dirs_items:
            status.write(f"Loading the {MODEL_TITLES.get(m, m).lower()} ({Path(d).name})…")
            _load_predictor(m, d, key)
        status.write("Sizing the checkpoints…")
        ms = _load_model_set(origin, key, dirs_items)
    _READY.add(key)
    slot.empty()
    return ms


def load_model_set() -> ModelSet:
    """The served models (loads once per server and per set of checkpoint dirs), with their version."""
    import dataclasses

    origin, dirs, version, note = resolve_served()
    key = origin + ":" + _dir_key(dirs)
    try:
        ms = _load_with_progress(origin, key, tuple((m, str(d)) for m, d in sorted(dirs.items())))
        return dataclasses.replace(ms, version=version, version_note=note)
    except Exception as err:  # a broken checkpoint must not take the app down
        if origin == "demo":
            raise
        st.error(
            f"Could not load the checkpoints ({md_error(err, 'loading checkpoints')}); falling back to "
            "untrained demo weights. Check assets/checkpoints (or MEDDISTILL_CHECKPOINTS) and restart."
        )
        return _load_with_progress("demo", "demo:", ())


def describe_origin(ms: ModelSet) -> str:
    where = {"env": f"${ENV_VAR}", "shipped": "assets/checkpoints", "demo": "a temp dir"}.get(ms.origin)
    if ms.origin == "registry":
        where = f"the model registry, {Path(next(iter(ms.dirs.values()))).parent}"
    names = ", ".join(MODEL_TITLES.get(m, m) for m in MODEL_IDS if m in ms.predictors)
    note = f" {ms.version_note}" if ms.version_note else ""
    return f"Models: {names} (from {where}). {version_text(ms)}.{note}"


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
