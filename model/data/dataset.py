"""Torch dataset over :class:`~model.data.sources.Sample` (items become a ``TensorSet`` for training).

Images go through ``model.data.imaging.load_study_path`` + ``to_model_input`` (the one resize rule
shared with inference), then are quantised to uint8 whether cached or not, so ``cache=True`` and
``cache=False`` give identical items. Every random choice (detail level, augmentation) is drawn from
``(seed, epoch, index)``, so items are reproducible in any DataLoader worker; call
``set_epoch`` to vary them between epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from model.data.sources import Sample
from model.types import DETAIL_LEVELS, IGNORE_INDEX


def load_pixels(sample: Sample) -> np.ndarray:
    """(H, W) float32 in [0, 1] for a sample, from its loader or its file."""
    if sample.loader is not None:
        return np.asarray(sample.loader(), dtype=np.float32)
    from model.data.imaging import load_study_path

    return load_study_path(sample.image_path).pixels


def load_model_image(sample: Sample, size: int) -> np.ndarray:
    """(size, size) uint8: the sample's pixels after the shared resize rule."""
    from model.data.imaging import to_model_input

    x = to_model_input(load_pixels(sample), size)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def augment_image(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild, laterality-preserving jitter of a float image in [0, 1].

    No horizontal flips: reports say "left" and "right", and the heart sits on the patient's left.
    A shift of up to 4 % (edge-padded) and a gamma / contrast change of about +-20 %.
    """
    h, w = x.shape
    dy, dx = (rng.integers(-1, 2, size=2) * rng.integers(0, max(1, int(0.04 * h)) + 1, size=2)).tolist()
    if dy or dx:
        padded = np.pad(x, ((abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
        x = padded[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]
    x = np.power(np.clip(x, 0.0, 1.0), rng.uniform(0.8, 1.25))
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    return np.clip((x - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0).astype(np.float32)


#: Intensity jitter ranges for real images: brightness, contrast and gamma differ by scanner, site and
#: export (../shared/data/chest_ct: normal slices are far brighter than cancer ones), not by disease.
#: Wide enough to cover that gap (median ~0.28 vs ~0.11 after a gamma of ~1.5), so the heads cannot
#: lean on it. Issue 11.
JITTER_GAMMA: tuple[float, float] = (0.6, 1.7)
JITTER_CONTRAST: tuple[float, float] = (0.7, 1.3)
JITTER_BRIGHTNESS: tuple[float, float] = (-0.12, 0.12)


def intensity_jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random gamma, contrast and brightness change of a float image in [0, 1] (no geometry).

    Gamma is drawn log-uniformly in JITTER_GAMMA (as likely to darken as to brighten), contrast
    about the image's own mean (so contrast alone keeps the mean), then a brightness offset.
    """
    lo, hi = np.log(JITTER_GAMMA[0]), np.log(JITTER_GAMMA[1])
    x = np.power(np.clip(x, 0.0, 1.0), float(np.exp(rng.uniform(lo, hi))))
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(*JITTER_CONTRAST) + mean + rng.uniform(*JITTER_BRIGHTNESS)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def jitter_batch(images: torch.Tensor, rows: Sequence[bool], seed: Sequence[int]) -> torch.Tensor:
    """``images`` (B, 1, S, S) in [0, 1] with :func:`intensity_jitter` on the rows where ``rows`` is
    True; draws come from ``seed`` (e.g. ``(run seed, epoch, step)``) and the row, so a resumed or
    replicated run sees the same jitter. Returns a new tensor; ``images`` is left as it was."""
    out = images.clone()
    for i, on in enumerate(rows):
        if on:
            rng = np.random.default_rng([*map(int, seed), i])
            x = intensity_jitter(images[i, 0].detach().cpu().numpy(), rng)  # (S, S)
            out[i, 0] = torch.from_numpy(x).to(out.dtype)
    return out


def is_real_source(source: str) -> bool:
    """True for a real image set (``nih1000``, ``chest_ct``, an R2Gen set); False for phantoms / unknown."""
    return bool(source) and not source.startswith("phantom")


class ReportDataset(Dataset):
    """Items for the multi-task model (see docs/interfaces.md, "sources.py / dataset.py").

    ``detail``: a level of DETAIL_LEVELS, or "random" (one level per item, drawn from the seed and
    epoch). Samples without a report give ``report == ""`` and ``has_report == False``.
    ``augment``: shift + mild gamma / contrast (:func:`augment_image`); ``intensity``: the wider
    :func:`intensity_jitter` on items whose source :func:`is_real_source` ("real"), on every item
    ("all"), or none ("off").
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        detail: str = "random",
        seed: int = 0,
        augment: bool = False,
        cache: bool = False,
        intensity: str = "off",
    ):
        if intensity not in ("off", "real", "all"):
            raise ValueError(f"intensity must be 'off', 'real' or 'all', not {intensity!r}")
        if detail != "random" and detail not in DETAIL_LEVELS:
            raise ValueError(f"detail must be 'random' or one of {DETAIL_LEVELS}, not {detail!r}")
        self.samples = list(samples)
        self.image_size = int(image_size)
        self.detail = detail
        self.seed = int(seed)
        self.augment = augment
        self.cache = cache
        self.intensity = intensity
        self.epoch = 0
        self._images: dict[int, np.ndarray] = {}  # index -> (S, S) uint8, when cache=True

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def image_uint8(self, index: int) -> np.ndarray:
        """(S, S) uint8 image of one item before augmentation (cached when ``cache=True``)."""
        img = self._images.get(index)
        if img is None:
            img = load_model_image(self.samples[index], self.image_size)
            if self.cache:
                self._images[index] = img
        return img

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = self.image_uint8(index).astype(np.float32) / 255.0
        if self.augment:
            image = augment_image(image, rng)
        if self.intensity == "all" or (self.intensity == "real" and is_real_source(s.source)):
            image = intensity_jitter(image, rng)
        detail = (
            DETAIL_LEVELS[int(rng.integers(len(DETAIL_LEVELS)))] if self.detail == "random" else self.detail
        )
        report = s.reports.get(detail) or s.report or ""
        findings = np.asarray(s.finding_targets, dtype=np.float32)
        treatments = np.asarray(s.treatment_targets, dtype=np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image))[None],  # (1, S, S)
            "findings": torch.from_numpy(findings.copy()),  # (7,), NaN = unknown
            "findings_mask": torch.from_numpy(~np.isnan(findings)),  # (7,) bool, True = known
            "tumour": torch.tensor(
                s.tumour_target if s.tumour_target >= 0 else IGNORE_INDEX, dtype=torch.long
            ),
            "subtype": torch.tensor(
                s.subtype_target if s.subtype_target >= 0 else IGNORE_INDEX, dtype=torch.long
            ),
            "treatments": torch.from_numpy(treatments.copy()),  # (len(TREATMENTS),), NaN = unknown
            "treatments_mask": torch.from_numpy(~np.isnan(treatments)),
            "context": torch.from_numpy(s.context.to_vector()),  # (CONTEXT_DIM,)
            "has_report": bool(report),
            "report": report,
            "detail": detail,
            "id": s.id,
            "modality": s.modality,
            "source": s.source,
            "report_origin": s.report_origin,
        }
