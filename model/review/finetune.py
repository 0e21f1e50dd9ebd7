"""Fine-tuning for an update: the current teacher on reviews + replay, the current student by KD from it.

Two recipes, looked up in :data:`RECIPES` (``meddistill update --recipe``):

- ``features`` (default): the trunk frozen, its output cached once per image
  (``model.distill.feature_stage``); heads, memory and report decoder train on the cache. A step costs
  the decoder only, so the update affords many passes, and what the trunk knows cannot be forgotten.
- ``full``: every weight trains, images through the trunk at every step (``trainer.fit``'s joint stage).

Both use the same loop, losses, DDP path and resumable state as ``model.distill.recipes``
(``OUT/stage_features`` or ``OUT/stage_joint``), start from the current version's weights instead of a
fresh model, and carry the parent's model card over (thresholds, provenance) with an ``update`` block.
The reviewed rows can be repeated against the replay rows (``review_repeat``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from model.distill import ddp
from model.review.samples import REVIEW_SOURCE

#: card fields save_checkpoint rewrites (the rest of the parent's card is carried over)
_REWRITTEN = ("files", "weights_sha256", "weights_bytes", "weights_dtype", "format_version", "saved_at",
              "parameters", "architecture", "config", "vocab_size")  # fmt: skip


#: the trainer's resumable state folders (one per recipe's stage); gone once the checkpoint is saved
_STATE_DIRS = ("stage_joint", "stage_features")


class VocabularyError(RuntimeError):
    """The student and teacher do not share one tokenizer; ``str(err)`` is a user-facing sentence."""


def _data_config(card: dict, model):
    from model.distill.data_plan import DataConfig

    dc = (card.get("training") or {}).get("data_config") or {}
    return DataConfig(
        data_dir="(update: reviews + replay)",
        image_size=int(dc.get("image_size") or model.cfg.image_size),
        max_len=int(dc.get("max_len") or model.cfg.max_len),
    )


def _train_config(cfg, epochs: int, lr: float):
    """One config for either recipe: ``epochs`` passes at peak ``lr``, no early stop (a fixed budget)."""
    from model.distill.config import TrainConfig

    return TrainConfig(
        epochs=epochs, batch_size=cfg.batch_size, lr=lr, warmup_frac=0.1, patience=epochs,
        seed=cfg.seed, threads=cfg.threads, bf16=cfg.bf16,
        feature_epochs=epochs, feature_lr_frac=1.0, augment="off",
    )  # fmt: skip


def _fit_full(model, train_set, val_set, tcfg, dcfg, out_dir, env, projector, review_repeat, resume,
              show_progress):  # fmt: skip
    """Every weight trains (trainer.fit's joint stage); the reviewed rows repeated ``review_repeat`` x."""
    from model.distill.trainer import fit

    train_set = train_set.repeat_sources({REVIEW_SOURCE: review_repeat})
    return fit(model, train_set, val_set, tcfg, dcfg, out_dir, env=env, projector=projector, resume=resume,
               show_progress=show_progress)  # fmt: skip


def _fit_features(model, train_set, val_set, tcfg, dcfg, out_dir, env, projector, review_repeat, resume,
                  show_progress):  # fmt: skip
    """The trunk frozen (``encoder.*`` bit-identical): heads + memory + decoder on its cached features
    (``feature_stage``; the reviewed rows repeated after the cache is built)."""
    from model.distill.feature_stage import feature_stage

    return feature_stage(model, train_set, val_set, tcfg, dcfg, out_dir, env, resume, show_progress,
                         repeat={REVIEW_SOURCE: review_repeat})  # fmt: skip


#: recipe name -> how the loaded model trains on the update's mix (``meddistill update --recipe``)
RECIPES = {"features": _fit_features, "full": _fit_full}


def _finished(out_dir: Path) -> bool:
    """A checkpoint saved whole before an interruption (the trainer's state is removed after saving)."""
    return (out_dir / "model_card.json").is_file() and not any((out_dir / d).exists() for d in _STATE_DIRS)


def finetune_teacher(
    parent_dir: Path, train_samples: list, val_samples: list, cfg, out_dir: Path,
    env: ddp.DistEnv, info: dict, *, resume: bool = True, show_progress: bool = True,
) -> dict:  # fmt: skip
    """The parent teacher fine-tuned on ``train_samples`` from ground truth; returns the saved card."""
    from model.checkpoints import load_card, load_checkpoint
    from model.distill.config import DistillConfig
    from model.distill.recipes import to_tensorset

    out_dir = Path(out_dir)
    if _finished(out_dir):
        return load_card(out_dir)  # finished before an interruption
    model, tokenizer, card, _ = load_checkpoint(parent_dir)
    data = _data_config(card, model)
    tcfg = _train_config(cfg, cfg.teacher_epochs, cfg.teacher_lr)
    train_set = to_tensorset(train_samples, tokenizer, data, cfg.seed)
    val_set = to_tensorset(val_samples, tokenizer, data, cfg.seed + 1)
    dcfg = DistillConfig().without_kd()
    result = RECIPES[cfg.recipe](model, train_set, val_set, tcfg, dcfg, out_dir, env, None, cfg.review_repeat,
                                 resume, show_progress and env.is_main)  # fmt: skip
    info = info | {"recipe": f"{cfg.recipe}: fine-tune from ground truth (reviews + replay)",
                   "train_config": tcfg.to_dict(), "review_repeat": cfg.review_repeat,
                   "n_train": len(train_set), "n_val": len(val_set), "fit": _fit_summary(result)}  # fmt: skip
    return _save(model, tokenizer, card, out_dir, info, val_set, env)


def distil_student(
    parent_dir: Path, teacher_dir: Path, train_samples: list, val_samples: list, cfg,
    out_dir: Path, env: ddp.DistEnv, info: dict, *, resume: bool = True, show_progress: bool = True,
) -> dict:  # fmt: skip
    """The parent student fine-tuned by KD from the updated teacher on ``train_samples``; returns the card."""
    from model.checkpoints import load_card, load_checkpoint
    from model.distill.config import DistillConfig
    from model.distill.recipes import to_tensorset
    from model.distill.teacher_cache import cache_teacher_outputs
    from model.distill.trainer import make_projector

    out_dir = Path(out_dir)
    if _finished(out_dir):
        return load_card(out_dir)
    student, tokenizer, card, _ = load_checkpoint(parent_dir)
    teacher, t_tokenizer, _, _ = load_checkpoint(teacher_dir)
    if len(t_tokenizer) != len(tokenizer):
        raise VocabularyError(
            f"The student ({parent_dir}) and the teacher ({teacher_dir}) do not share one vocabulary "
            "(token-level KD needs one): re-distil the student with `meddistill distill` first."
        )
    data = _data_config(card, student)
    tcfg = _train_config(cfg, cfg.student_epochs, cfg.student_lr)
    known = (card.get("training") or {}).get("distill_config") or {}
    dcfg = DistillConfig(**{k: v for k, v in known.items() if k in DistillConfig.__dataclass_fields__})
    train_set = to_tensorset(train_samples, tokenizer, data, cfg.seed)
    cache_teacher_outputs(
        teacher, train_set, dcfg, show_progress=show_progress and env.is_main, bf16=cfg.bf16
    )
    val_set = to_tensorset(val_samples, tokenizer, data, cfg.seed + 1)
    hint = dcfg.w_hint > 0 and cfg.recipe == "full"  # the features recipe has no trunk to hint
    projector = make_projector(student.hint_channels, teacher.hint_channels) if hint else None
    del teacher
    result = RECIPES[cfg.recipe](student, train_set, val_set, tcfg, dcfg, out_dir, env, projector,
                                 cfg.review_repeat, resume, show_progress and env.is_main)  # fmt: skip
    info = info | {"recipe": f"{cfg.recipe}: fine-tune by KD from the updated teacher (reviews + replay)",
                   "teacher_dir": str(teacher_dir), "train_config": tcfg.to_dict(),
                   "review_repeat": cfg.review_repeat,
                   "distill_config": dcfg.to_dict(), "n_train": len(train_set), "fit": _fit_summary(result)}  # fmt: skip
    return _save(student, tokenizer, card, out_dir, info, val_set, env)


def _fit_summary(r) -> dict:
    return {"best_epoch": r.best_epoch, "steps": r.steps, "epochs_run": r.epochs_run, "wall_s": round(r.wall_s, 1),
            "best_metrics": r.best_metrics}  # fmt: skip


def _save(model, tokenizer, parent_card: dict, out_dir: Path, info: dict, val_set, env) -> dict:
    """The checkpoint (rank 0): the parent's card carried over with this update's block, fresh OOD stats;
    the trainer's resumable state removed once the checkpoint is whole."""
    from model.checkpoints import load_card, save_checkpoint
    from model.ood import fit_ood_stats

    if env.is_main:
        model.eval()
        card = {k: v for k, v in parent_card.items() if k not in _REWRITTEN}
        card["update"] = info
        extras = fit_ood_stats(model, val_set.images.float() / 255.0, val_set.context)
        save_checkpoint(out_dir, model, tokenizer, card, extras)
        for d in _STATE_DIRS:
            shutil.rmtree(Path(out_dir) / d, ignore_errors=True)
    ddp.barrier(env)
    return load_card(out_dir)
