"""Run the teacher once over a training set and keep what the student learns from.

Per item: the four head logits, the top-k token logits at every position of the item's (fixed)
report sequence, and the feature map average-pooled to ``hint_size`` x ``hint_size`` (float16).
Augmentation is off, so these are exactly what a live teacher would give every epoch, at a
fraction of the cost: student epochs then never run the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from model.distill.config import DistillConfig
from model.distill.losses import TeacherTargets
from model.distill.tensorset import TensorSet


@torch.no_grad()
def cache_teacher_outputs(
    teacher: nn.Module,
    data: TensorSet,
    dcfg: DistillConfig,
    batch_size: int = 32,
    show_progress: bool = True,
    bf16: bool = False,
    features: torch.Tensor | None = None,
) -> TensorSet:
    """Fill ``data.teacher`` in place (and switch it to fixed detail levels); returns ``data``.

    ``features`` (N, C, h, w): the teacher's trunk output for every row of ``data``, computed before
    (``recipes.teacher_training_set`` shares one trunk pass with the sequence-level KD decode); the
    trunk is then skipped. They are not stored on ``data``: ``data.features`` is a model's OWN features.
    """
    was_training = teacher.training
    teacher.eval()
    data.detail_mode = "fixed"  # the cached token distributions belong to one sequence per item
    parts: list[TeacherTargets] = []
    for start in tqdm(
        range(0, len(data), batch_size), desc="teacher cache", disable=not show_progress, dynamic_ncols=True
    ):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        b = data.batch(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            shared = {} if features is None else {"features": features[idx]}  # (B, C, h, w): trunk skipped
            out = teacher(b["images"], b["context"], b["input_ids"], b["attention_mask"], **shared)
        k = min(dcfg.top_k, out.lm_logits.shape[-1])
        top_logits, top_index = out.lm_logits.float().topk(k, dim=-1)  # (B, L_b, k), L_b = batch's longest
        pad = data.ids.shape[-1] - top_index.shape[1]  # back to the full length (masked positions)
        top_logits = F.pad(top_logits, (0, 0, 0, pad))
        top_index = F.pad(top_index, (0, 0, 0, pad))
        feats = F.adaptive_avg_pool2d(out.features.float(), dcfg.hint_size)  # (B, C_t, h, h)
        subtype = getattr(out, "subtype_logits", None)
        parts.append(
            TeacherTargets(
                findings_logits=out.findings_logits.float().cpu(),
                tumour_logits=out.tumour_logits.float().cpu(),
                subtype_logits=subtype.float().cpu() if subtype is not None else None,
                treatment_logits=out.treatment_logits.float().cpu(),
                features=feats.half().cpu(),  # (B, C_t, h, h)
                token_topk_index=top_index.int().cpu(),  # (B, L, k)
                token_topk_logits=top_logits.half().cpu(),  # (B, L, k)
            )
        )
    teacher.train(was_training)
    data.teacher = TeacherTargets.concat(parts)
    return data
