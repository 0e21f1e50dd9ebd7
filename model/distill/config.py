"""Configs for training and distillation (frozen dataclasses, passed whole).

``DistillConfig`` weighs the terms of :func:`model.distill.losses.distillation_loss`;
``TrainConfig`` holds everything else a training run needs (optimiser, schedule, budget).
A no-KD run is the same loss with every ``kd_*``/``hint``/``attention`` weight at zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

#: every term of ``losses.distillation_loss`` (besides ``total``); term ``x`` is weighed by
#: ``DistillConfig.w_x``. The trainer logs them, the dashboard plots them.
TERMS: tuple[str, ...] = (
    "ce_report",
    "bce_findings",
    "ce_tumour",
    "ce_subtype",
    "bce_treatment",
    "lesion",
    "kd_tokens",
    "kd_findings",
    "kd_tumour",
    "kd_treatment",
    "hint",
    "attention",
)


@dataclass(frozen=True)
class DistillConfig:
    """Weights and temperatures of every loss term.

    Hard-label (ground truth) terms stay on in distillation: Hinton et al. found a small weight on
    the true labels helps, and our labelled subset is exact ground truth (phantoms).
    """

    # --- hard-label terms (ground truth; masked where a source does not know the label)
    w_ce_report: float = 1.0  # next-token cross-entropy on the reference report
    w_bce_findings: float = 1.0  # multi-label BCE on the findings head (CXR sources)
    w_ce_tumour: float = 1.0  # softmax CE on the tumour head (CT sources)
    w_ce_subtype: float = 0.5  # softmax CE on the malignant subtype (real CT only); fewer, noisier labels
    w_bce_treatment: float = 1.0  # multi-label BCE on the treatment head (formulary ground truth)
    w_lesion: float = 1.0  # per-cell BCE of the lesion map on the phantoms' masks (head_pool "lesion" only; 0 otherwise)
    # --- soft-label terms (teacher); zero = plain supervised training
    w_kd_tokens: float = 1.0  # Hinton token-level KD over the vocabulary
    w_kd_findings: float = 1.0  # binary KL to the teacher's finding probabilities
    w_kd_tumour: float = 1.0  # KL to the teacher's tumour (and subtype) distribution
    w_kd_treatment: float = 1.0  # binary KL to the teacher's treatment probabilities
    w_hint: float = 0.5  # FitNets feature hint (MSE after a learned 1x1 projection)
    w_attention: float = 100.0  # attention transfer; maps are unit-norm so raw values are ~1e-3
    kd_subtype_share: float = 0.5  # inside kd_tumour: weight of the subtype KL beside the tumour KL
    # --- temperatures
    temperature: float = 2.0  # soft-label KD temperature for the heads (T^2 keeps gradient scale)
    token_temperature: float = 2.0  # token-level KD temperature over the vocabulary
    # --- teacher cache and sequence-level KD
    top_k: int = 32  # cached teacher token distribution keeps the top-k logits (renormalised at use)
    hint_size: int = 4  # teacher feature maps are average-pooled to hint_size x hint_size for the cache
    sequence_kd: bool = True  # Kim & Rush: transfer-set reports = teacher's greedy-decoded reports

    def weights(self) -> dict[str, float]:
        """Loss term -> weight, for every name in ``losses.TERMS`` (term ``x`` is weighed by ``w_x``)."""
        return {name: float(getattr(self, f"w_{name}")) for name in TERMS}

    @property
    def uses_teacher(self) -> bool:
        """True when any soft-label term is on (a teacher is needed)."""
        return any(
            w > 0
            for w in (
                self.w_kd_tokens,
                self.w_kd_findings,
                self.w_kd_tumour,
                self.w_kd_treatment,
                self.w_hint,
                self.w_attention,
            )
        )

    def without_kd(self) -> DistillConfig:
        """The same config with every teacher term switched off (the no-KD baseline)."""
        return replace(
            self,
            w_kd_tokens=0.0,
            w_kd_findings=0.0,
            w_kd_tumour=0.0,
            w_kd_treatment=0.0,
            w_hint=0.0,
            w_attention=0.0,
            sequence_kd=False,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: budget, optimiser, schedule, data sizing."""

    epochs: int = 6  # passes over the training set (the stage budget; early stopping may end sooner)
    max_steps: int | None = None  # hard cap on optimiser steps (None = epochs x steps per epoch)
    batch_size: int = 32  # per process
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.01  # decoupled L2 (AdamW); not applied to biases / norms / embeddings
    dropout: float | None = None  # override the preset's dropout (None = keep the preset's)
    warmup_frac: float = 0.05  # linear warm-up over this fraction of all steps
    schedule: str = "cosine"  # "cosine" | "linear" | "constant" decay after warm-up
    min_lr_frac: float = 0.05  # the schedule ends at lr * min_lr_frac
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    patience: int = 3  # early stopping: epochs without a better validation loss
    seed: int = 0  # everything random derives from this
    finetune_epochs: int = 0  # optional per-task stage after the joint one (heads only, lower lr)
    finetune_lr_frac: float = 0.1  # fine-tuning lr = lr * this
    feature_epochs: int = 0  # frozen-trunk stage after the joint one: heads + decoder on cached trunk
    # features, thousands of steps at the decoder's cost (model.distill.feature_stage); 0 = off
    feature_lr_frac: float = 0.5  # its lr = lr * this
    feature_budget_s: float | None = None  # its wall-clock cap (the schedule is re-fitted to it)
    feature_max_steps: int | None = None  # its step cap (the no-KD student: the KD student's steps)
    threads: int = 0  # torch intra-op threads (0 = leave torch's default)
    log_every: int = 10  # steps between train_log.jsonl lines
    bf16: bool = False  # CPU autocast to bfloat16 + channels-last (fast on AMX CPUs; losses stay float32)
    label_cond_p: float = 0.5  # share of training rows whose decoder memory embeds the ground-truth labels
    # (where known) instead of the heads' probabilities: the decoder learns at once to write what the head
    # tokens say, so reports agree with the heads; the other rows keep it used to the heads' soft values
    time_budget_s: float | None = None  # wall-clock cap: the lr schedule is re-fitted to the steps that fit
    # (measured after warm-up); breaks bit-exact determinism across machines, so off by default
    augment: str = "real"  # intensity / gamma jitter of training images, drawn per step from (seed, epoch,
    # step): "real" = rows from real sets (their brightness tracks the site, not the disease; issue 11),
    # "all", or "off" (model.data.dataset.intensity_jitter)
    intensity_norm: bool | None = None  # per-image standardisation of the model input (zero mean, unit std),
    # saved in the ModelConfig so serving does the same; None = on when the training data include a real set
    init_from: str | None = None  # OUT/pretrain.safetensors of ``model.distill.pretrain`` (the teacher's
    # stage 0): the encoder and heads start from it, the decoder from scratch
    freeze: tuple[str, ...] = ()  # parameter-name prefixes frozen in the joint stage (e.g. the pretrained
    # stem and layer1: their backward pass is a third of a 224 px ResNet-50 step)
    repeat_sources: tuple[tuple[str, int], ...] = ()  # (source, k): that source's rows appear k times per
    # epoch of the joint stage (issue 10: the phantom CT tumour class is a small signal in few images)
    extra: dict = field(default_factory=dict)  # free-form notes copied into the model card

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 bf16 units. Elsewhere bf16 autocast is emulated: measured 17x
    *slower* than float32 for a ResNet-50 training step on the 2-core AVX2 EPYC this project runs on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})
