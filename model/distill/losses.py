"""Distillation and multi-task losses: one small pure function per loss.

Every function returns a scalar tensor and is safe on an empty selection (a batch with no
labelled item for a task contributes 0, never NaN). ``distillation_loss`` combines them with the
weights of a :class:`~model.distill.config.DistillConfig` and returns every term in a dict, so the
training log and the dashboard can plot each one.

Conventions: ``mask`` tensors are bool or {0,1} floats, True = this entry counts. Unknown labels
are NaN (multi-label targets) or -100 (class indices), as produced by ``model.data.dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from model.distill.config import TERMS, DistillConfig
from model.types import IGNORE_INDEX

# ----------------------------------------------------------------------------------------------
# Helpers


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over entries where ``mask`` is true; 0 (with grad) when none are."""
    mask = mask.to(values.dtype)
    denom = mask.sum()
    total = (values * mask).sum()
    return total / denom.clamp_min(1.0)


def _zero(like: Tensor) -> Tensor:
    """A zero that keeps the graph (so ``total.backward()`` works on an all-masked batch)."""
    return like.sum() * 0.0


# ----------------------------------------------------------------------------------------------
# Hard-label terms (ground truth)


def masked_bce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Multi-label binary cross-entropy, averaged over known entries.

    ``L = mean_{(i,c): known} -[y log s(z) + (1-y) log(1-s(z))]``. Targets that are NaN are unknown,
    as are entries where ``mask`` is false.
    """
    known = ~torch.isnan(targets)
    if mask is not None:
        known = known & mask.bool()
    safe = torch.where(known, targets, torch.zeros_like(targets))
    per = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    return _masked_mean(per, known)


#: positive cells are rare (a nodule is one cell of 49): weigh them up, as the stage-0 mask head does
LESION_POS_WEIGHT = 4.0


def lesion_bce(logits: Tensor, masks: Tensor | None, known: Tensor | None) -> Tensor:
    """Per-cell BCE of lesion logits (B, K, h, w) on masks (B, K, G, G) max-pooled to (h, w), over the rows whose
    masks are ``known`` (B,) (phantoms; real images have none). 0 when no row is known."""
    if masks is None or known is None or not bool(known.any()):
        return _zero(logits)
    target = F.adaptive_max_pool2d(masks[known].to(logits.dtype), logits.shape[-2:])
    pos_weight = logits.new_full((logits.shape[1], 1, 1), LESION_POS_WEIGHT)
    return F.binary_cross_entropy_with_logits(logits[known], target, pos_weight=pos_weight)


def masked_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Softmax cross-entropy over known items (target != -100); 0 when none are known.

    ``F.cross_entropy`` alone returns NaN when every target is ignored; this does not.
    """
    known = targets != IGNORE_INDEX
    if not bool(known.any()):
        return _zero(logits)
    return F.cross_entropy(logits[known], targets[known])


def report_ce(lm_logits: Tensor, labels: Tensor) -> Tensor:
    """Next-token cross-entropy (teacher forcing), averaged over known tokens.

    ``lm_logits`` (B, L, V) are aligned with the input ids: position t predicts token t+1, so the
    logits are shifted against ``labels`` (B, L) whose ignored positions are -100 (padding, prompt
    tokens, items without a report).
    """
    logits = lm_logits[:, :-1].reshape(-1, lm_logits.size(-1))  # (B*(L-1), V)
    target = labels[:, 1:].reshape(-1)  # (B*(L-1),)
    return masked_ce(logits, target)


# ----------------------------------------------------------------------------------------------
# Soft-label terms (teacher)


def soft_target_kl(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float
) -> Tensor:
    """Hinton et al. 2015, "Distilling the knowledge in a neural network", over the last dim.

    ``L = T^2 * mean_{i: mask} KL(p_t^T || p_s^T)``, ``p^T = softmax(z / T)``. Used for the tumour
    head and for dense token distributions.
    """
    t = temperature
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)  # (...,)
    return t * t * _masked_mean(kl, mask)


def topk_token_kl(
    student_logits: Tensor, topk_index: Tensor, topk_logits: Tensor, mask: Tensor, temperature: float
) -> Tensor:
    """Token-level KD (Hinton) against a cached top-k teacher distribution.

    The teacher keeps only its k largest logits per position; ``p_t^T = softmax(topk_logits / T)``
    renormalised over those k tokens. With the student's full-vocabulary ``log p_s^T``:
    ``L = T^2 * mean_{t: mask} sum_{j in topk} p_t^T(j) (log p_t^T(j) - log p_s^T(j))``.
    Shapes: student (B, L, V), index / logits (B, L, k), mask (B, L).
    """
    t = temperature
    log_ps = F.log_softmax(student_logits / t, dim=-1).gather(-1, topk_index)  # (B, L, k)
    log_pt = F.log_softmax(topk_logits / t, dim=-1)  # (B, L, k)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)  # (B, L)
    return t * t * _masked_mean(kl, mask)


def binary_kd(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Soft-label KD for sigmoid (multi-label) heads: per-output binary KL at temperature T.

    ``p = sigmoid(z / T)``; ``L = T^2 * mean_{(i,c): mask} [p_t log(p_t/p_s) + (1-p_t) log((1-p_t)/(1-p_s))]``
    (= BCE against the teacher's probabilities minus the teacher's own entropy, so the minimum is 0).
    ``mask`` is (B,) per item or (B, C) per output.
    """
    t = temperature
    zs, zt = student_logits / t, teacher_logits / t
    pt = torch.sigmoid(zt)
    # log sigmoid(z) and log(1 - sigmoid(z)) = log sigmoid(-z), numerically stable
    kl = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    if mask.dim() == 1:
        mask = mask[:, None].expand_as(kl)
    return t * t * _masked_mean(kl, mask)


def fitnets_hint(student_feat: Tensor, teacher_feat: Tensor, projector: Callable[[Tensor], Tensor]) -> Tensor:
    """Romero et al. 2015, "FitNets: hints for thin deep nets".

    ``L = mean (r(F_s) - F_t)^2`` where ``r`` is a learned 1x1 conv from student to teacher channels,
    and the projected map is resized (bilinear) to the teacher's spatial size (the cache stores
    pooled teacher maps).
    """
    proj = projector(student_feat)  # (B, C_t, h_s, w_s)
    if proj.shape[-2:] != teacher_feat.shape[-2:]:
        proj = F.adaptive_avg_pool2d(proj, teacher_feat.shape[-2:])
    return F.mse_loss(proj, teacher_feat.to(proj.dtype))


def attention_map(feat: Tensor, p: int = 2) -> Tensor:
    """Zagoruyko & Komodakis 2017: spatial attention ``Q = sum_c |A_c|^p``, flattened, L2-normalised.

    (B, C, h, w) -> (B, h*w).
    """
    q = feat.abs().pow(p).sum(1).flatten(1)  # (B, h*w)
    return F.normalize(q, dim=1)


def attention_transfer(student_feat: Tensor, teacher_feat: Tensor, p: int = 2) -> Tensor:
    """Zagoruyko & Komodakis 2017, "Paying more attention to attention" (AT).

    ``L = mean_i mean_j (Q_s/||Q_s|| - Q_t/||Q_t||)_j^2`` with the student's map pooled to the
    teacher's spatial size first. Channel counts may differ (the map sums over channels).
    """
    if student_feat.shape[-2:] != teacher_feat.shape[-2:]:
        student_feat = F.adaptive_avg_pool2d(student_feat, teacher_feat.shape[-2:])
    diff = attention_map(student_feat, p) - attention_map(teacher_feat.to(student_feat.dtype), p)
    return diff.pow(2).mean()


# ----------------------------------------------------------------------------------------------
# The combined objective


@dataclass
class TeacherTargets:
    """What the student learns from: teacher logits (live or cached) for one batch.

    Token distributions are either dense ``lm_logits`` (B, L, V) or the cached top-k pair
    ``token_topk_index`` / ``token_topk_logits`` (B, L, k). ``features`` may be pooled.
    """

    findings_logits: Tensor  # (B, n_findings)
    tumour_logits: Tensor  # (B, n_tumour)
    subtype_logits: Tensor | None  # (B, n_subtypes)
    treatment_logits: Tensor  # (B, n_treatments)
    features: Tensor | None = None  # (B, C_t, h, w)
    lm_logits: Tensor | None = None  # (B, L, V) dense, or None when top-k is given
    token_topk_index: Tensor | None = None  # (B, L, k) long
    token_topk_logits: Tensor | None = None  # (B, L, k)

    @classmethod
    def from_output(cls, out) -> TeacherTargets:
        """From a live teacher ``ModelOutput``."""
        return cls(
            findings_logits=out.findings_logits,
            tumour_logits=out.tumour_logits,
            subtype_logits=getattr(out, "subtype_logits", None),
            treatment_logits=out.treatment_logits,
            features=out.features,
            lm_logits=out.lm_logits,
        )

    def rows(self, index: Tensor, length: int | None = None, as_float: bool = True) -> TeacherTargets:
        """Rows ``index`` (a copy); token columns cut to ``length`` positions; ``as_float``: float32 values
        and long indices, as the losses want them (a cache stores float16 / int32)."""

        def pick(v: Tensor | None, tokens: bool = False) -> Tensor | None:
            if v is None:
                return None
            v = v[index]
            if tokens and length is not None:
                v = v[:, :length]  # (B, L, ...): the same positions as the trimmed ids
            if not as_float:
                return v
            return v.float() if v.is_floating_point() else v.long()

        return TeacherTargets(
            findings_logits=pick(self.findings_logits),
            tumour_logits=pick(self.tumour_logits),
            subtype_logits=pick(self.subtype_logits),
            treatment_logits=pick(self.treatment_logits),
            features=pick(self.features),
            lm_logits=pick(self.lm_logits, tokens=True),
            token_topk_index=pick(self.token_topk_index, tokens=True),
            token_topk_logits=pick(self.token_topk_logits, tokens=True),
        )

    @staticmethod
    def concat(parts: Sequence[TeacherTargets]) -> TeacherTargets:
        """Stack several sets' targets row-wise (a field is None when any part lacks it)."""
        out = {}
        for f in fields(TeacherTargets):
            values = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return TeacherTargets(**out)


def distillation_loss(
    student_out,
    teacher_out: TeacherTargets | None,
    batch: Mapping[str, Tensor],
    cfg: DistillConfig,
    hint_projector: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Every loss term plus their weighted ``total``.

    ``student_out`` is a ``ModelOutput`` (findings/tumour/subtype/treatment logits, lm_logits,
    features). ``batch`` holds the ground truth: ``findings`` (NaN = unknown), ``findings_mask``,
    ``tumour`` / ``subtype`` (-100 = unknown), ``treatments``, ``treatments_mask``, ``labels``
    (B, L; -100 = not scored), ``token_mask`` (B, L; positions whose next token is scored by KD) and
    ``is_cxr`` / ``is_ct`` (B,) bools (which head the teacher's soft labels are trusted on).
    With ``teacher_out`` None (or every KD weight 0) the KD terms are 0: plain supervised training.
    """
    s = student_out
    zero = _zero(s.findings_logits)
    terms: dict[str, Tensor] = {
        "ce_report": report_ce(s.lm_logits, batch["labels"]),
        "bce_findings": masked_bce(s.findings_logits, batch["findings"], batch.get("findings_mask")),
        "ce_tumour": masked_ce(s.tumour_logits, batch["tumour"]),
        "ce_subtype": masked_ce(s.subtype_logits, batch["subtype"])
        if getattr(s, "subtype_logits", None) is not None
        else zero,
        "bce_treatment": masked_bce(s.treatment_logits, batch["treatments"], batch.get("treatments_mask")),
        "lesion": lesion_bce(getattr(s, "lesion_logits", None), batch.get("lesion"), batch.get("lesion_known"))
        if getattr(s, "lesion_logits", None) is not None
        else zero,
    }
    for name in TERMS:  # the teacher terms: 0 unless computed below
        terms.setdefault(name, zero)
    t = teacher_out
    if t is not None and cfg.uses_teacher:
        temp = cfg.temperature
        is_cxr, is_ct = batch["is_cxr"].bool(), batch["is_ct"].bool()
        if cfg.w_kd_tokens > 0:
            # lm position t predicts token t+1: score positions whose *next* token is real
            tok_mask = batch["token_mask"][:, 1:].bool()  # (B, L-1)
            s_lm = s.lm_logits[:, :-1]
            if t.token_topk_index is not None:
                terms["kd_tokens"] = topk_token_kl(
                    s_lm,
                    t.token_topk_index[:, :-1],
                    t.token_topk_logits[:, :-1],
                    tok_mask,
                    cfg.token_temperature,
                )
            elif t.lm_logits is not None:
                terms["kd_tokens"] = soft_target_kl(
                    s_lm, t.lm_logits[:, :-1], tok_mask, cfg.token_temperature
                )
        if cfg.w_kd_findings > 0:
            terms["kd_findings"] = binary_kd(s.findings_logits, t.findings_logits, is_cxr, temp)
        if cfg.w_kd_tumour > 0:
            kd = soft_target_kl(s.tumour_logits, t.tumour_logits, is_ct, temp)
            if t.subtype_logits is not None and getattr(s, "subtype_logits", None) is not None:
                sub = soft_target_kl(s.subtype_logits, t.subtype_logits, is_ct, temp)
                kd = kd + cfg.kd_subtype_share * sub
            terms["kd_tumour"] = kd
        if cfg.w_kd_treatment > 0:
            terms["kd_treatment"] = binary_kd(
                s.treatment_logits, t.treatment_logits, torch.ones_like(is_cxr), temp
            )
        if t.features is not None and cfg.w_hint > 0 and hint_projector is not None:
            terms["hint"] = fitnets_hint(s.features, t.features, hint_projector)
        if t.features is not None and cfg.w_attention > 0:
            terms["attention"] = attention_transfer(s.features, t.features)
    weights = cfg.weights()
    terms["total"] = sum(weights[k] * terms[k] for k in TERMS)
    return terms
