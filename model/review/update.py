"""Learn from expert review: fine-tune the teacher, re-distil the student, gate, register (issue 14).

    result = run_update(store, UpdateConfig())   # what `meddistill update` runs
    result.promoted, result.reasons              # promoted, or which check failed and by how much

Steps (each one's outcome is written to ``<run dir>/update_state.json`` when it ends, so an interrupted
update resumes at the step it was in, and ``trainer.fit`` resumes mid-step from its own saved state):

1. **plan**: the current version (parent), the reviews it has not learned from, the version number N,
   and which reviews the gate keeps apart: with fewer than ``cv_below`` reviews, ``folds``-fold
   cross-validation (each fold's models train on the other folds; the final candidate on all of
   them); else a held-out share (``holdout_frac``) the candidate never trains on.
2. **teacher**: the current teacher fine-tuned on the reviewed cases mixed with replay of its original
   training data (``replay_ratio`` re-rendered phantoms per reviewed case, each reviewed row repeated
   ``review_repeat`` times), ground truth only. ``recipe`` "features" (default) trains heads + memory +
   decoder on the frozen trunk's cached features; "full" trains every weight (``model/review/finetune.py``).
3. **student**: the current student fine-tuned by knowledge distillation from the updated teacher on
   the same mix and recipe (the teacher's outputs cached once, as ``recipes.distill_student``).
4. **gate**: current vs candidate on the held-out reviews, the fixed phantom test split and the real
   sets (``model/review/gate.py``); every check is recorded with its numbers.
5. **register**: ``<data dir>/models/vN/{teacher,student}`` (safetensors + JSON) enters the registry,
   promoted to current only when every check passed, else kept as "rejected" with the reasons.

Under ``torchrun`` every rank trains (the same DDP path as ``meddistill train``); rank 0 alone scores,
writes and registers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from model.distill import ddp
from model.review.finetune import distil_student, finetune_teacher
from model.review.gate import Check, GateConfig

STATE_NAME = "update_state.json"
ROLES = ("teacher", "student")


class UpdateError(RuntimeError):
    """An update that cannot start or continue; ``str(err)`` is a user-facing sentence."""


#: each recipe's training defaults (UpdateConfig fields left None take these); chosen by
#: benchmarks/bench_update.py, see README "Self-update"
RECIPE_DEFAULTS: dict[str, dict] = {
    # frozen trunk: a step costs the decoder only, so many passes; reviews repeated against the replay
    "features": {
        "teacher_epochs": 8,
        "teacher_lr": 5e-4,
        "student_epochs": 8,
        "student_lr": 1e-3,
        "review_repeat": 3,
    },
    # every weight: ~3 s per teacher step on 2 cores, so few passes at a tenth of the training lr
    "full": {
        "teacher_epochs": 3,
        "teacher_lr": 1e-4,
        "student_epochs": 3,
        "student_lr": 5e-4,
        "review_repeat": 1,
    },
}


@dataclass(frozen=True)
class UpdateConfig:
    """One update: which recipe, how much replay, how long each model trains, how the gate holds reviews
    apart. Training fields left None take the recipe's defaults (``RECIPE_DEFAULTS``) when planned."""

    recipe: str = "features"  # "features" (frozen trunk, cached features) | "full" (every weight)
    replay_ratio: float = 3.0  # replayed original-training phantoms per reviewed case (against forgetting)
    review_repeat: int | None = None  # each reviewed row appears this many times per pass
    teacher_epochs: int | None = None  # passes over the review + replay mix for the teacher
    teacher_lr: float | None = None  # peak lr of the teacher's fine-tuning
    student_epochs: int | None = None  # passes for the student's distillation
    student_lr: float | None = None  # peak lr of the student's distillation
    batch_size: int = 16  # per process
    folds: int = 3  # k of the cross-validation used when reviews are few
    cv_below: int = 40  # fewer reviews than this: k-fold cross-validation; else a held-out share
    holdout_frac: float = 0.2  # share of reviews the candidate never trains on (when not cross-validating)
    val_n: int = 32  # original validation phantoms beside the reviews in the early-stopping set
    seed: int = 0  # folds, replay choice, training order
    threads: int = 0  # torch threads (0 = torch's default)
    bf16: bool = False  # CPU bfloat16 autocast (AMX CPUs), as `train --bf16`
    gate: GateConfig = field(default_factory=GateConfig)

    def resolved(self) -> UpdateConfig:
        """This config with every None training field set from its recipe's defaults."""
        if self.recipe not in RECIPE_DEFAULTS:
            raise UpdateError(
                f"Unknown update recipe {self.recipe!r} (one of: {', '.join(RECIPE_DEFAULTS)})."
            )
        fill = {k: v for k, v in RECIPE_DEFAULTS[self.recipe].items() if getattr(self, k) is None}
        return replace(self, **fill)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UpdateConfig:
        """A planned config back from the state file (one written before recipes existed ran "full")."""
        return cls(**{"recipe": "full", **d, "gate": GateConfig(**d.get("gate", {}))}).resolved()


@dataclass
class UpdateResult:
    version: int
    parent: int
    promoted: bool
    checks: list[Check]
    run_dir: Path
    feedback_ids: list[str]
    wall_s: float

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        """A sentence per failed check (empty when promoted)."""
        return [c.sentence() for c in self.failed]


# ----------------------------------------------------------------------------------------------
# Where things live


def version_path(version) -> Path:
    """A registry version's checkpoint folder (the registry keeps paths inside the repo relative)."""
    from model.review.store import ROOT

    p = Path(version.path)
    return p if p.is_absolute() else ROOT / p


# ----------------------------------------------------------------------------------------------
# The run


def run_update(
    store,
    cfg: UpdateConfig | None = None,
    *,
    real_root: str | None = None,
    resume: bool = False,
    env: ddp.DistEnv | None = None,
    show_progress: bool = True,
    log=print,
) -> UpdateResult:
    """Run (or resume) one update against ``store`` (a ``ReviewStore``); see the module docstring."""
    t0 = time.perf_counter()
    env = env or ddp.DistEnv()
    state = _load_or_plan(store, cfg, resume, real_root, env, log)
    cfg = UpdateConfig.from_dict(state["config"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(state["run_dir"])
    parent = _version(store, state["parent"])
    reviews = {r.id: r for r in store.list_reviews() if r.id in set(state["review_ids"])}
    missing = sorted(set(state["review_ids"]) - set(reviews))
    if missing:
        raise UpdateError(
            f"{len(missing)} reviewed case(s) this update planned with are no longer in the store."
        )
    steps = _steps(state)
    bar = tqdm(
        total=len(steps), desc="update", disable=not (show_progress and env.is_main), dynamic_ncols=True
    )
    for name in steps:
        bar.set_postfix_str(name)
        if name not in state["done"]:
            outcome = _STEPS[name.split(":")[0]](name, state, store, parent, reviews, cfg, env, show_progress)
            state["done"][name] = outcome
            _save_state(run_dir, state, env)
        bar.update(1)
    bar.close()
    gate = state["done"]["gate"]
    checks = [Check(**{k: c[k] for k in ("name", "current", "candidate", "allowed_drop", "passed")})
              for c in gate["checks"]]  # fmt: skip
    state["wall_s"] = round(state.get("wall_s", 0.0) + time.perf_counter() - t0, 1)
    _save_state(run_dir, state, env)
    return UpdateResult(
        version=state["version"],
        parent=state["parent"],
        promoted=bool(state["done"]["register"]["promoted"]),
        checks=checks,
        run_dir=run_dir,
        feedback_ids=list(_trained_ids(state)),
        wall_s=state["wall_s"],
    )


def _steps(state: dict) -> list[str]:
    folds = [f"fold:{i}" for i in range(len(state["folds"]))] if state["mode"] == "cv" else []
    return [*folds, "teacher", "student", "gate", "register"]


def _trained_ids(state: dict) -> list[str]:
    """The reviews the candidate trains on: all of them (cross-validation) or all but the held-out ones."""
    held = set(state["holdout"])
    return [i for i in state["review_ids"] if i not in held]


# ----------------------------------------------------------------------------------------------
# Planning and the state file


def _load_or_plan(store, cfg, resume: bool, real_root, env, log) -> dict:
    from model.review.samples import split_folds

    current = store.current_version()
    versions = store.versions()
    number = max([v.version for v in versions] + [current.version]) + 1
    run_dir = Path(store.versions_dir()) / f"v{number}"
    state_path = run_dir / STATE_NAME
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if resume:
            if state["parent"] != current.version:
                raise UpdateError(
                    f"The unfinished update in {run_dir} started from version {state['parent']}, but the "
                    f"current version is now {current.version}: start a new update without --resume."
                )
            log(f"resuming the update in {run_dir} (done: {', '.join(state['done']) or 'nothing yet'})")
            return state
        if env.is_main:
            log(f"an unfinished update in {run_dir} is discarded (pass --resume to continue one)")
            shutil.rmtree(run_dir)
        ddp.barrier(env)
    elif resume:
        log("no unfinished update to resume: starting a new one")
    cfg = (cfg or UpdateConfig()).resolved()
    learned = {i for v in versions for i in (v.feedback_ids or ())}
    review_ids = sorted(r.id for r in store.list_reviews() if r.id not in learned)
    if not review_ids:
        raise UpdateError(
            "There is nothing to learn from: every reviewed case in the store has already been learned by "
            "a version (review cases on the Compare page first)."
        )
    if len(review_ids) < cfg.cv_below:
        if len(review_ids) < 2:
            raise UpdateError(
                "An update needs at least 2 reviewed cases (one to learn from, one to check on)."
            )
        mode, folds, holdout = "cv", split_folds(review_ids, cfg.folds, cfg.seed), []
    else:
        fold = split_folds(review_ids, max(2, round(1 / cfg.holdout_frac)), cfg.seed)[0]
        mode, folds, holdout = "holdout", [], fold
    state = {
        "version": number,
        "parent": current.version,
        "run_dir": str(run_dir),
        "review_ids": review_ids,
        "mode": mode,
        "folds": folds,
        "holdout": holdout,
        "real_root": real_root,
        "config": cfg.to_dict(),
        "started_at": _now(),
        "done": {},
    }
    _save_state(run_dir, state, env)
    return state


def _save_state(run_dir: Path, state: dict, env) -> None:
    """Write the state atomically (a crash mid-write leaves the previous one)."""
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / (STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, default=_json_default))
        os.replace(tmp, run_dir / STATE_NAME)
    ddp.barrier(env)


def _json_default(x):
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _finite_json(x):
    """``x`` with NaN / infinite floats as None (PostgreSQL's JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _version(store, number: int):
    for v in store.versions():
        if v.version == number:
            return v
    raise UpdateError(f"Version {number} is not in the registry.")


# ----------------------------------------------------------------------------------------------
# Steps


def _fold_step(name, state, store, parent, reviews, cfg, env, show_progress) -> dict:
    """Train one fold's teacher and student on the other folds; score its held-out reviews."""
    i = int(name.split(":")[1])
    held = state["folds"][i]
    train_ids = [r for r in state["review_ids"] if r not in set(held)]
    fold_dir = Path(state["run_dir"]) / "work" / f"fold{i}"
    _train_pair(train_ids, reviews, store, parent, cfg, fold_dir, env, show_progress, state)
    out = {}
    if env.is_main:
        out = {
            "held_out": held,
            "current": _score_reviews(version_path(parent), [reviews[r] for r in held], store),
            "candidate": _score_reviews(fold_dir, [reviews[r] for r in held], store),
            "trained_on": len(train_ids),
        }
        shutil.rmtree(fold_dir, ignore_errors=True)  # only the scores are kept
    ddp.barrier(env)
    return out


def _teacher_step(name, state, store, parent, reviews, cfg, env, show_progress) -> dict:
    run_dir = Path(state["run_dir"])
    train = [reviews[r] for r in _trained_ids(state)]
    card = finetune_teacher(
        version_path(parent) / "teacher", _mix(train, store, cfg, state), _val_mix(train, store, cfg),
        cfg, run_dir / "teacher", env, _update_info(state, parent), resume=True, show_progress=show_progress,
    )  # fmt: skip
    return {"weights_sha256": card.get("weights_sha256"), "fit": card.get("update", {}).get("fit")}


def _student_step(name, state, store, parent, reviews, cfg, env, show_progress) -> dict:
    run_dir = Path(state["run_dir"])
    train = [reviews[r] for r in _trained_ids(state)]
    card = distil_student(
        version_path(parent) / "student", run_dir / "teacher", _mix(train, store, cfg, state),
        _val_mix(train, store, cfg), cfg, run_dir / "student", env, _update_info(state, parent),
        resume=True, show_progress=show_progress,
    )  # fmt: skip
    return {"weights_sha256": card.get("weights_sha256"), "fit": card.get("update", {}).get("fit")}


def _gate_step(name, state, store, parent, reviews, cfg, env, show_progress) -> dict:
    """Score both versions, decide; rank 0 only (the others wait)."""
    from model.review.gate import decide

    out = {}
    if env.is_main:
        metrics = gate_metrics(
            version_path(parent), Path(state["run_dir"]), state, reviews, store, cfg, show_progress
        )
        checks = decide(metrics["current"], metrics["candidate"], cfg.gate)
        out = metrics | {
            "checks": [c.to_dict() for c in checks],
            "passed": bool(checks) and all(c.passed for c in checks),
        }
    ddp.barrier(env)
    return out


def _register_step(name, state, store, parent, reviews, cfg, env, show_progress) -> dict:
    """Enter the candidate into the registry: promoted when the gate passed, else "rejected"."""
    from model.checkpoints import load_card
    from model.review.types import ModelVersion

    gate = state["done"]["gate"]
    run_dir = Path(state["run_dir"])
    passed = bool(gate["passed"])
    if env.is_main:
        failed = [c["sentence"] for c in gate["checks"] if not c["passed"]]
        version = ModelVersion(
            version=state["version"],
            parent=state["parent"],
            path=str(run_dir),
            created_at=_now(),
            feedback_ids=tuple(_trained_ids(state)),
            metrics=_finite_json(
                {k: gate[k] for k in ("current", "candidate", "checks", "passed", "reports", "reviews_mode")}
            ),
            sha256={role: load_card(run_dir / role)["weights_sha256"] for role in ROLES},
            status="candidate" if passed else "rejected",
            note="promoted: every gate check passed" if passed else "rejected: " + "; ".join(failed),
        )
        store.register_version(version)
        if passed:
            store.promote(state["version"])
        shutil.rmtree(run_dir / "work", ignore_errors=True)
    ddp.barrier(env)
    return {"promoted": passed}


_STEPS = {
    "fold": _fold_step,
    "teacher": _teacher_step,
    "student": _student_step,
    "gate": _gate_step,
    "register": _register_step,
}


def _train_pair(train_ids, reviews, store, parent, cfg, out_dir: Path, env, show_progress, state) -> dict:
    """A teacher and a student trained on ``train_ids`` (+ replay) into ``out_dir/{teacher,student}``."""
    train = [reviews[r] for r in train_ids]
    mix, val = _mix(train, store, cfg, state), _val_mix(train, store, cfg)
    info = _update_info(state, parent) | {"fold_of": str(out_dir.name)}
    finetune_teacher(version_path(parent) / "teacher", mix, val, cfg, out_dir / "teacher", env, info,
                     resume=True, show_progress=show_progress)  # fmt: skip
    distil_student(version_path(parent) / "student", out_dir / "teacher", mix, val, cfg, out_dir / "student",
                   env, info, resume=True, show_progress=show_progress)  # fmt: skip
    return {role: out_dir / role for role in ROLES}


def _mix(train_reviews, store, cfg: UpdateConfig, state: dict) -> list:
    """Reviewed cases + ``replay_ratio`` x as many replayed training phantoms."""
    from model.review.samples import replay_samples, review_sample

    n_replay = int(round(cfg.replay_ratio * len(train_reviews)))
    return [review_sample(r, store) for r in train_reviews] + replay_samples(n_replay, cfg.seed)


def _val_mix(train_reviews, store, cfg: UpdateConfig) -> list:
    """The early-stopping set: the reviewed training cases (did it learn them?) + original validation
    phantoms (did it forget?). The gate, not this set, judges generalisation."""
    from model.review.samples import replay_samples, review_sample

    return [review_sample(r, store) for r in train_reviews] + replay_samples(cfg.val_n, cfg.seed + 1, "val")


def _update_info(state: dict, parent) -> dict:
    return {
        "parent_version": parent.version,
        "version": state["version"],
        "feedback_ids": list(_trained_ids(state)),
        "config": state["config"],
        "started_at": state["started_at"],
    }


# ----------------------------------------------------------------------------------------------
# Scoring


def _review_cases(reviews, store) -> list:
    from model.review.gate import LabelledCase
    from model.types import Study

    out = []
    for r in reviews:
        study = Study(pixels=store.load_pixels(r.image_sha256), modality=r.modality, source="review")
        findings = {f.name: bool(f.present) for f in r.findings} if r.modality == "CXR" else {}
        out.append(LabelledCase(r.id, study, findings, r.tumour if r.modality == "CT" else None))
    return out


def _predictors(path: Path) -> dict:
    from model.inference import Predictor

    return {role: Predictor.from_dir(Path(path) / role, role) for role in ROLES}


def _score_reviews(path: Path, reviews, store) -> dict:
    """Role -> {n_labels, head_correct, report_correct, cases} on ``reviews`` (counts add over folds)."""
    from model.review.gate import score_labelled

    cases = _review_cases(reviews, store)
    out = {}
    for role, predictor in _predictors(path).items():
        s = score_labelled(predictor, cases)
        out[role] = {
            "n_labels": s["n_labels"],
            "head_correct": round(s["head_accuracy"] * s["n_labels"]) if s["n_labels"] else 0,
            "report_correct": round(s["report_accuracy"] * s["n_labels"]) if s["n_labels"] else 0,
            "cases": s["cases"],
        }
    return out


def _accuracy(parts: list[dict]) -> dict:
    n = sum(p["n_labels"] for p in parts)
    return {
        "n_labels": n,
        "head_accuracy": sum(p["head_correct"] for p in parts) / n if n else float("nan"),
        "report_accuracy": sum(p["report_correct"] for p in parts) / n if n else float("nan"),
    }


def gate_metrics(
    parent_path: Path,
    run_dir: Path,
    state: dict,
    reviews: dict,
    store,
    cfg: UpdateConfig,
    show_progress: bool = True,
) -> dict:
    """{"current": {role: {...}}, "candidate": {role: {...}}, "reports": {review id: {role: {before, after}}}}."""
    from model.review.gate import phantom_test_cases, real_cases, score_labelled, score_phantom_test

    def bar(text: str) -> str | None:
        return text if show_progress else None

    if state["mode"] == "cv":
        per_fold = [state["done"][f"fold:{i}"] for i in range(len(state["folds"]))]
        review_scores = {side: {role: _accuracy([f[side][role] for f in per_fold]) for role in ROLES}
                         for side in ("current", "candidate")}  # fmt: skip
        mode = f"{len(per_fold)}-fold cross-validation over {len(state['review_ids'])} reviewed cases"
    else:
        held = [reviews[r] for r in state["holdout"]]
        review_scores = {
            "current": {k: _accuracy([v]) for k, v in _score_reviews(parent_path, held, store).items()},
            "candidate": {k: _accuracy([v]) for k, v in _score_reviews(run_dir, held, store).items()},
        }
        mode = f"{len(held)} held-out of {len(state['review_ids'])} reviewed cases (never trained on)"
    tests = phantom_test_cases(cfg.gate.phantom_test_n)
    real = real_cases(state.get("real_root"), cfg.gate.real_n)
    all_cases = _review_cases([reviews[r] for r in state["review_ids"]], store)
    out = {
        "current": {},
        "candidate": {},
        "reports": {c.case_id: {} for c in all_cases},
        "reviews_mode": mode,
    }
    for side, path in (("current", parent_path), ("candidate", run_dir)):
        for role, predictor in _predictors(path).items():
            out[side][role] = {
                "reviews": review_scores[side][role],
                "phantom_test": score_phantom_test(
                    predictor, tests, desc=bar(f"{side} {role}: phantom test")
                ),
                "real": {
                    name: {
                        k: v
                        for k, v in score_labelled(
                            predictor, cases, desc=bar(f"{side} {role}: {name}")
                        ).items()
                        if k != "cases"
                    }
                    for name, cases in real.items()
                },  # fmt: skip
            }
            for rec in score_labelled(predictor, all_cases, desc=bar(f"{side} {role}: reviews"))["cases"]:
                key = "before" if side == "current" else "after"
                out["reports"][rec["id"]].setdefault(role, {})[key] = rec["report"]
    return out
