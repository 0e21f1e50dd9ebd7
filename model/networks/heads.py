"""Task heads on pooled image features: findings, tumour, malignant subtype, treatment.

The treatment head sees the pooled features, an embedding of the patient context, and the
(detached) finding / tumour probabilities, so that its suggestions follow the predicted findings
(the formulary's rules are written in terms of findings + context).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.networks.config import ModelConfig
from model.types import LESION_CHANNELS


def head_input_width(cfg: ModelConfig, channels: int) -> int:
    """Width of what the heads read for ``cfg.head_pool`` over a ``channels``-wide feature map."""
    if cfg.head_pool == "avgmax":
        return 2 * channels
    if cfg.head_pool == "lesion":
        return 2 * channels + 2 * len(LESION_CHANNELS)
    return channels


@dataclass
class HeadOutput:
    """Logits of every head (apply sigmoid / softmax yourself) and the pooled features."""

    findings_logits: torch.Tensor  # (B, n_findings): sigmoid
    tumour_logits: torch.Tensor  # (B, n_tumour): softmax
    subtype_logits: torch.Tensor  # (B, n_subtypes): softmax, meaningful when malignant
    treatment_logits: torch.Tensor  # (B, n_treatments): sigmoid
    pooled: torch.Tensor  # (B, C) global-average-pooled features (OOD statistics use these)
    lesion_logits: torch.Tensor | None = None  # (B, len(LESION_CHANNELS), h, w) with head_pool "lesion"


class TaskHeads(nn.Module):
    """Shared hidden layer -> findings / tumour / subtype; + context and probabilities -> treatment."""

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        h = cfg.head_hidden
        head_in = head_input_width(cfg, in_channels)
        # LayerNorm first (as in ConvNeXt's head): pooled post-ReLU features are unnormalised (max-pooled
        # ones an order of magnitude above the averages) and stalled the heads under gradient clipping
        self.shared = nn.Sequential(
            nn.LayerNorm(head_in), nn.Dropout(cfg.head_dropout), nn.Linear(head_in, h), nn.GELU()
        )
        self.findings_head = nn.Linear(h, cfg.n_findings)
        self.tumour_head = nn.Linear(h, cfg.n_tumour)
        self.subtype_head = nn.Linear(h, cfg.n_subtypes)
        self.context_mlp = nn.Sequential(nn.Linear(cfg.context_dim, cfg.context_hidden), nn.GELU())
        fused = h + cfg.context_hidden + cfg.n_findings + cfg.n_tumour
        self.treatment_head = nn.Sequential(
            nn.Linear(fused, h), nn.GELU(), nn.Dropout(cfg.head_dropout), nn.Linear(h, cfg.n_treatments)
        )

    def forward(
        self,
        pooled: torch.Tensor,
        context: torch.Tensor,
        head_in: torch.Tensor | None = None,
        lesion_logits: torch.Tensor | None = None,
    ) -> HeadOutput:
        """pooled (B, C) average-pooled features, context (B, context_dim), head_in (B, C or 2C) what
        the heads read (None = ``pooled``) -> HeadOutput."""
        z = self.shared(pooled if head_in is None else head_in)  # (B, h)
        f = self.findings_head(z)  # (B, n_findings)
        t = self.tumour_head(z)  # (B, n_tumour)
        probs = torch.cat([torch.sigmoid(f), torch.softmax(t, -1)], -1).detach()  # (B, nf + nt)
        fused = torch.cat([z, self.context_mlp(context.to(z.dtype)), probs], -1)
        return HeadOutput(
            findings_logits=f,
            tumour_logits=t,
            subtype_logits=self.subtype_head(z),
            treatment_logits=self.treatment_head(fused),
            pooled=pooled,
            lesion_logits=lesion_logits,
        )
