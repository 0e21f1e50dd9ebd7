"""ReportModel = image encoder + task heads + report decoder ("one model, three tasks").

Data flow (B = batch, C/h/w = feature map, d = decoder width, L = tokens):

    images (B, 1, S, S) --encoder.forward_features--> features (B, C, h, w)   <- Grad-CAM / FitNets
    features --mean(h, w)--> pooled (B, C) [++ max(h, w)] --heads (+ context)--> HeadOutput  <- OOD: pooled
    features + head probabilities --memory--> (B, h*w + n_findings + n_tumour, d)
    [DETAIL] [MODALITY] words.. --GPT-2 with cross-attention to memory--> lm_logits (B, L, V)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from model.networks.config import ModelConfig
from model.networks.decoder import MemoryBuilder, ReportDecoder
from model.networks.encoders import ImageEncoder
from model.networks.generation import decode
from model.networks.heads import HeadOutput, TaskHeads
from model.networks.tokenizer import SENTENCE_END, decode_ids, prompt_ids
from model.types import LESION_CHANNELS, ReportStyle


@dataclass
class ModelOutput:
    """Everything one teacher-forced forward pass gives (the losses read these by name)."""

    findings_logits: torch.Tensor  # (B, n_findings)
    tumour_logits: torch.Tensor  # (B, n_tumour)
    subtype_logits: torch.Tensor  # (B, n_subtypes)
    treatment_logits: torch.Tensor  # (B, n_treatments)
    lm_logits: torch.Tensor  # (B, L, V): position t predicts token t+1
    features: torch.Tensor  # (B, C, h, w) last trunk feature map
    pooled: torch.Tensor  # (B, C)
    lesion_logits: torch.Tensor | None = None  # (B, len(LESION_CHANNELS), h, w): head_pool "lesion" only


def head_probabilities(heads: HeadOutput) -> torch.Tensor:
    """(B, n_findings + n_tumour) detached probabilities that the decoder memory embeds."""
    return torch.cat(
        [torch.sigmoid(heads.findings_logits), torch.softmax(heads.tumour_logits, -1)], -1
    ).detach()


def standardize_images(images: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B, 1, S, S) -> each image at zero mean and unit standard deviation (``input_norm="per_image"``)."""
    mean = images.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    std = images.std((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (images - mean) / (std + eps)


class ReportModel(nn.Module):
    """Encoder + heads + decoder. Build with :func:`build_model`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg)
        c = self.encoder.out_channels
        self.heads = TaskHeads(cfg, c)
        # head_pool "lesion": a map per LESION_CHANNELS on the feature grid (see ModelConfig.head_pool)
        self.lesion = nn.Conv2d(c, len(LESION_CHANNELS), 1) if cfg.head_pool == "lesion" else None
        self.memory = MemoryBuilder(cfg, c)
        self.decoder = ReportDecoder(cfg)

    # -- stable attachment points ---------------------------------------------------------------
    @property
    def cam_layer(self) -> nn.Module:
        """The module Grad-CAM hooks: the last conv block of the trunk (its output = ``features``)."""
        return self.encoder.cam_layer

    @property
    def hint_channels(self) -> int:
        """Channels of ``features`` (FitNets hint projection size)."""
        return self.encoder.out_channels

    # -- forward pieces ---------------------------------------------------------------------------
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, S, S) in [0, 1] -> features (B, C, h, w)."""
        if self.cfg.input_norm == "per_image":
            images = standardize_images(images)
        return self.encoder.forward_features(images)

    def forward_heads(self, features: torch.Tensor, context: torch.Tensor | None = None) -> HeadOutput:
        """features (B, C, h, w), context (B, context_dim) or None (unknown) -> HeadOutput."""
        pooled = features.mean((2, 3))  # (B, C) global average pool (also the OOD statistics' features)
        if context is None:
            context = pooled.new_zeros(pooled.shape[0], self.cfg.context_dim)
        lesion = None
        if self.cfg.head_pool == "avgmax":
            head_in = torch.cat([pooled, features.amax((2, 3))], 1)
        elif self.lesion is not None:
            lesion = self.lesion(features)  # (B, K, h, w) logits
            # attend where any lesion is most likely; read its size (mean) and certainty (max) per channel
            att = torch.softmax(lesion.amax(1).flatten(1), -1)  # (B, h*w)
            attended = torch.einsum("bcn,bn->bc", features.flatten(2), att)  # (B, C)
            stats = torch.cat([lesion.amax((2, 3)), torch.sigmoid(lesion).mean((2, 3))], 1)  # (B, 2K)
            head_in = torch.cat([pooled, attended, stats], 1)
        else:
            head_in = None
        return self.heads(pooled, context, head_in, lesion)

    def build_memory(
        self, features: torch.Tensor, heads: HeadOutput, memory_probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cross-attention memory (B, h*w + n_findings + n_tumour, d).

        ``memory_probs`` (B, n_findings + n_tumour), training only: values that replace the heads'
        probabilities where they are not NaN (ground-truth labels; see ``TrainConfig.label_cond_p``).
        """
        probs = head_probabilities(heads)
        if memory_probs is not None:
            probs = torch.where(torch.isnan(memory_probs), probs, memory_probs.to(probs.dtype))
        return self.memory(features, probs)

    def forward(
        self,
        images: torch.Tensor,
        context: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        memory_probs: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Teacher-forced pass: heads + next-token logits of ``input_ids`` (B, L).

        ``features`` (B, C, h, w): the trunk's output computed before (the frozen-trunk stage trains the
        heads and decoder on cached features); ``images`` are then not read.
        """
        if features is None:
            features = self.forward_features(images)
        heads = self.forward_heads(features, context)
        lm_logits = self.decoder(input_ids, attention_mask, self.build_memory(features, heads, memory_probs))
        return ModelOutput(
            findings_logits=heads.findings_logits,
            tumour_logits=heads.tumour_logits,
            subtype_logits=heads.subtype_logits,
            treatment_logits=heads.treatment_logits,
            lm_logits=lm_logits,
            features=features,
            pooled=heads.pooled,
            lesion_logits=heads.lesion_logits,
        )

    # -- generation -------------------------------------------------------------------------------
    def prompts(self, detail: str | Sequence[str], modality: str | Sequence[str], batch: int) -> torch.Tensor:
        """(B, 2) control-token prompts; ``detail`` / ``modality`` are one value or one per row."""
        details = [detail] * batch if isinstance(detail, str) else list(detail)
        modalities = [modality] * batch if isinstance(modality, str) else list(modality)
        rows = [prompt_ids(d, m) for d, m in zip(details, modalities, strict=True)]
        return torch.tensor(rows, dtype=torch.long, device=next(self.parameters()).device)

    @torch.inference_mode()
    def decode_report(
        self,
        features: torch.Tensor,
        heads: HeadOutput,
        prompts: torch.Tensor,
        style: ReportStyle | None = None,
        sentence_end_id: int | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Generate from already computed features and heads (so callers can time each stage)."""
        return decode(
            self.decoder, self.build_memory(features, heads), prompts, style or ReportStyle(), sentence_end_id
        )

    @torch.inference_mode()
    def generate_report(
        self,
        images: torch.Tensor,
        context: torch.Tensor | None = None,
        detail: str | Sequence[str] = "standard",
        style: ReportStyle | None = None,
        modality: str | Sequence[str] = "CXR",
        sentence_end_id: int | None = None,
        features: torch.Tensor | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Per row: generated token ids (without prompt and [EOS]) and each token's probability.

        ``style.detail`` is ignored in favour of ``detail``; ``sentence_end_id`` (the tokenizer's
        id of ".") enables ``style.max_sentences``. ``features`` (B, C, h, w): the trunk's output computed
        before (as in ``forward``); ``images`` are then not read.
        """
        if features is None:
            features = self.forward_features(images)
        heads = self.forward_heads(features, context)
        prompts = self.prompts(detail, modality, features.shape[0])
        return self.decode_report(features, heads, prompts, style, sentence_end_id)


def build_model(cfg: ModelConfig) -> ReportModel:
    """A randomly initialised ReportModel."""
    return ReportModel(cfg)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def generate_texts(
    model: ReportModel,
    tokenizer,
    images: torch.Tensor,
    context: torch.Tensor | None,
    details: Sequence[str],
    modalities: Sequence[str],
    max_len: int,
    features: torch.Tensor | None = None,
) -> list[str]:
    """Greedy report texts for a batch (sequence-level KD: the teacher's decoded reports); ``features``:
    the batch's trunk output computed before (see ``ReportModel.generate_report``)."""
    was_training = model.training
    model.eval()
    style = ReportStyle(max_new_tokens=max(1, max_len - 2))
    period = tokenizer.convert_tokens_to_ids(SENTENCE_END)
    ids, _ = model.generate_report(images, context, list(details), style, list(modalities), period, features)
    model.train(was_training)
    return [decode_ids(tokenizer, row)[1] for row in ids]


generate_ids = generate_texts  # its old name (it returns texts, not ids); kept for callers
