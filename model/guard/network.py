"""The guard's modality classifier: a tiny CNN on a 64 px square plus a few image statistics.

Three outputs over GUARD_CLASSES (chest X-ray / chest CT slice / neither). Small on purpose: it runs before
every prediction and must cost a few milliseconds on one CPU thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from model.guard.features import N_STATS
from model.types import GUARD_CLASSES


@dataclass(frozen=True)
class GuardConfig:
    """Architecture of the guard classifier (saved as config.json beside the weights)."""

    image_size: int = 64  # input square side (the models' resize rule)
    widths: tuple[int, ...] = (16, 32, 48, 64)  # channels of the stride-2 conv stages
    n_stats: int = N_STATS  # image statistics appended to the pooled CNN features
    stats_hidden: int = 32  # width of the statistics branch
    n_classes: int = len(GUARD_CLASSES)  # CXR / CT / neither
    dropout: float = 0.1  # before the classifier layer

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GuardConfig:
        d = dict(d)
        d["widths"] = tuple(d.get("widths", cls.widths))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class GuardNet(nn.Module):
    """CNN features (avg ++ max pooled) ++ statistics MLP -> class logits."""

    def __init__(self, cfg: GuardConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], 1
        for c in cfg.widths:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.stats = nn.Sequential(nn.Linear(cfg.n_stats, cfg.stats_hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(2 * c_in + cfg.stats_hidden, cfg.n_classes)
        )

    def forward(self, images: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        f = self.features(images)  # (B, C, S/16, S/16)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)  # (B, 2C)
        return self.head(torch.cat([pooled, self.stats(stats)], 1))  # (B, n_classes)
