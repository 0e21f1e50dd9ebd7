"""The frozen-trunk stage: heads, memory and report decoder trained on the trunk's cached features.

Why (issue 10): at 224 px one ResNet-50 training step costs ~7 s on the 2-core CPU, so the joint stage
of the first 224 px run gave the report decoder 229 steps: too few to learn to write what the heads
see (its reports scored below a constant report). The trunk's output does not change while the trunk
is frozen, so it is computed once per image (one inference pass over the split) and the heads and
decoder then train for thousands of steps at the decoder's own cost. It runs after the joint stage,
for the teacher and both students alike (the KD student keeps its teacher targets; the feature hint
and attention-transfer terms act on the trunk and are off here).

Images are not augmented in this stage (the cache holds one view of each image); the joint stage
before it saw the augmented ones.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm import tqdm

from model.distill.config import DistillConfig, TrainConfig
from model.distill.tensorset import TensorSet

#: parameter-name prefixes the stage leaves frozen (everything the cached features already hold)
FROZEN_PREFIXES: tuple[str, ...] = ("encoder.",)


@torch.inference_mode()
def cache_features(model, data: TensorSet, batch_size: int = 32, show_progress: bool = True,
                   dtype: torch.dtype | None = torch.float16) -> torch.Tensor:  # fmt: skip
    """(N, C, h, w) trunk features of every image of ``data`` (eval mode: BN running stats), float16 by
    default; ``dtype=None`` keeps the trunk's own output dtype (exactly what a live pass would feed on)."""
    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(data), batch_size), desc="feature cache", disable=not show_progress,
                      dynamic_ncols=True):  # fmt: skip
        images = data.images[start : start + batch_size].float() / 255.0
        feats = model.forward_features(images)  # (B, C, h, w)
        out.append(feats if dtype is None else feats.to(dtype))
    model.train(was_training)
    return torch.cat(out)


def with_features(model, data: TensorSet, show_progress: bool = True) -> TensorSet:
    """A copy of ``data`` (tensors shared) whose batches carry the model's cached trunk features."""
    return dataclasses.replace(data, features=cache_features(model, data, show_progress=show_progress))


def stage_configs(tcfg: TrainConfig, dcfg: DistillConfig) -> tuple[TrainConfig, DistillConfig]:
    """The stage's own configs: no augmentation (one cached view), its own budget; no trunk-only terms."""
    tc = dataclasses.replace(
        tcfg,
        augment="off",
        time_budget_s=tcfg.feature_budget_s,
        max_steps=tcfg.feature_max_steps,
        patience=max(tcfg.patience, tcfg.feature_epochs),  # a fixed budget, like the students' joint stage
        freeze=(),
    )
    return tc, dataclasses.replace(dcfg, w_hint=0.0, w_attention=0.0)


def trainable(name: str) -> bool:
    return not name.startswith(FROZEN_PREFIXES)


def feature_stage(model, train: TensorSet, val: TensorSet, tcfg: TrainConfig, dcfg: DistillConfig, run_dir,
                  env=None, resume: bool = False, show_progress: bool = True,
                  repeat: dict[str, int] | None = None):  # fmt: skip
    """Train heads + memory + decoder of ``model`` on cached features; -> trainer.FitResult (stage
    ``features``; resumable like the joint stage, the cache is rebuilt on resume).

    ``repeat`` (source -> k): those rows appear k times per epoch (``TensorSet.repeat_sources``), applied
    after the cache is built, so each image still runs through the trunk once.
    """
    from model.distill.trainer import fit

    tc, dc = stage_configs(tcfg, dcfg)
    train_f = with_features(model, train, show_progress).repeat_sources(repeat or {})
    val_f = with_features(model, val, show_progress)
    return fit(
        model, train_f, val_f, tc, dc, run_dir, env=env, resume=resume, stage="features",
        trainable=trainable, lr=tcfg.lr * tcfg.feature_lr_frac, epochs=tcfg.feature_epochs,
        show_progress=show_progress,
    )  # fmt: skip
