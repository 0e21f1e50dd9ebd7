"""Model configuration and the named architecture presets (teacher, student, tiny test models).

A ``ModelConfig`` is everything needed to rebuild a ``ReportModel`` with the same parameter
shapes: it is saved as ``config.json`` beside the weights. Presets are plain dicts, name ->
config, in the timm style; tests are parametrized over them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from model.types import CONTEXT_DIM, FINDINGS, TREATMENTS, TUMOUR_CLASSES, TUMOUR_SUBTYPES

#: image trunks ``encoders.py`` knows how to build
ENCODERS: tuple[str, ...] = ("resnet50", "mobilenet_v3_small", "tiny_cnn")
#: how the heads pool the feature map (see ``ModelConfig.head_pool``)
HEAD_POOLS: tuple[str, ...] = ("avg", "avgmax", "lesion")
#: how the model input is normalised (see ``ModelConfig.input_norm``)
INPUT_NORMS: tuple[str, ...] = ("none", "per_image")
#: options removed from ModelConfig -> the value that meant today's behaviour (older config.json files still
#: carry it). ct_scale: CT drawn on a centred share of the input; the 128/224 canvas was tried for issue 10 and
#: refuted (benchmarks/results/retrain_v8.json), so CT always fills the input
REMOVED_KEYS: dict[str, object] = {"ct_scale": 1.0}


@dataclass(frozen=True)
class ModelConfig:
    """One report model: image trunk + task heads + GPT-2 style report decoder."""

    arch_name: str = "tiny-student"  # preset name, shown in model cards
    encoder: str = "tiny_cnn"  # one of ENCODERS
    image_size: int = 128  # input side in pixels (128: the 2-core CPU training budget)
    tiny_width: int = 16  # tiny_cnn only: channels of the first conv (the trunk ends at 4x this)
    d_model: int = 64  # decoder width; patch features are projected to it
    n_layers: int = 1  # decoder blocks (self-attention + cross-attention + MLP)
    n_heads: int = 2  # attention heads per block (d_model must divide by it)
    d_inner: int | None = None  # decoder MLP width; None = 4 * d_model (GPT-2)
    dropout: float = 0.1  # decoder residual / attention / embedding dropout
    vocab_size: int = 512  # word-level vocabulary incl. special tokens (set from the tokenizer)
    max_len: int = 160  # decoder positions: control tokens + report + [EOS] (detailed reports ~120)
    memory_grid: int = 8  # learned 2-D position grid of the patch tokens (resized to the feature map)
    head_hidden: int = 128  # width of the shared hidden layer of the task heads
    head_dropout: float = 0.1  # dropout on pooled features before the heads
    head_pool: str = "avg"  # heads' input: "avg" (global average) | "avgmax" (average ++ max: small
    # lesions, a nodule or the fluid in a costophrenic angle, are not averaged away over the map) | "lesion"
    # (average ++ lesion-attended features ++ lesion-map statistics: a 1x1 conv predicts a map per
    # LESION_CHANNELS on the feature grid, supervised by the phantoms' masks; the heads then read the
    # features where the lesion is, and how large / how sure it is. Issue 10: the global average of a
    # 224 px trunk did not carry the CT tumour class at all, while a mask head found the tumour)
    input_norm: str = "none"  # "per_image": each image standardised to zero mean / unit std before the trunk,
    # so a global brightness / contrast change cannot move the features (issue 11); "none": [0, 1] as given
    context_dim: int = CONTEXT_DIM  # PatientContext.to_vector() length
    context_hidden: int = 32  # MLP width that embeds the patient context for the treatment head
    n_findings: int = len(FINDINGS)  # findings head outputs (sigmoid)
    n_tumour: int = len(TUMOUR_CLASSES)  # tumour head outputs (softmax)
    n_subtypes: int = len(TUMOUR_SUBTYPES)  # malignant subtype head (softmax; supervised where known)
    n_treatments: int = len(TREATMENTS)  # treatment head outputs (sigmoid over the formulary)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {ENCODERS}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {self.input_norm!r}; choose one of {INPUT_NORMS}")
        if self.head_pool not in HEAD_POOLS:
            raise ValueError(f"unknown head_pool {self.head_pool!r}; choose one of {HEAD_POOLS}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a config from another code version), and so is a
        removed option at any value but the one that kept its behaviour (``REMOVED_KEYS``: such a key is dropped)."""
        d = dict(d)
        for key, kept in REMOVED_KEYS.items():
            value = d.pop(key, kept)
            if value != kept:
                raise ValueError(
                    f"{key}={value!r} is no longer supported (a removed option; only {kept!r} is read)"
                )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**d)


#: The teacher: ResNet-50 trunk (23.5M) + 4-layer GPT-2 decoder of width 384 (~9.5M). <= 35M total.
TEACHER_PRESETS: dict[str, ModelConfig] = {
    "resnet50-4l": ModelConfig(
        arch_name="resnet50-4l",
        encoder="resnet50",
        d_model=384,
        n_layers=4,
        n_heads=6,
        head_hidden=128,
        context_hidden=32,
    ),
}

#: The student: MobileNetV3-small trunk (0.9M) + 1-layer decoder of width 192. <= 1/10 of the teacher.
STUDENT_PRESETS: dict[str, ModelConfig] = {
    "mobilenet-1l": ModelConfig(
        arch_name="mobilenet-1l",
        encoder="mobilenet_v3_small",
        d_model=192,
        n_layers=1,
        n_heads=4,
        head_hidden=128,
        context_hidden=32,
    ),
}

#: Tiny random-weight models for tests and the app's demo mode (first = "teacher", second = "student").
TINY_PRESETS: dict[str, ModelConfig] = {
    "tiny-teacher": ModelConfig(
        arch_name="tiny-teacher",
        encoder="tiny_cnn",
        image_size=32,
        tiny_width=16,
        d_model=64,
        n_layers=2,
        n_heads=4,
        max_len=64,
        memory_grid=4,
        head_hidden=32,
        context_hidden=16,
    ),
    "tiny-student": ModelConfig(
        arch_name="tiny-student",
        encoder="tiny_cnn",
        image_size=32,
        tiny_width=8,
        d_model=32,
        n_layers=1,
        n_heads=2,
        max_len=64,
        memory_grid=4,
        head_hidden=16,
        context_hidden=8,
    ),
}

ALL_PRESETS: dict[str, ModelConfig] = {**TEACHER_PRESETS, **STUDENT_PRESETS, **TINY_PRESETS}
