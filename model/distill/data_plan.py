"""Which data a run sees: sources, splits, the labelled subset and the transfer set.

Everything here is deterministic for a seed, and :func:`provenance` writes down exactly what a
checkpoint saw (sources, counts per source and split, a hash of the sample ids) for its model card.

The fair comparison of DESIGN.md ("Where distillation earns its keep"): a student gets a labelled
subset (``labelled_frac`` of every training source, chosen by seed); the KD student also gets a
*transfer set* = the rest of the training images with their labels removed, soft-labelled by the
teacher (and, with sequence-level KD, given the teacher's decoded reports). The no-KD student gets
the same labelled subset and the same number of optimiser steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFAULT_REAL_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repo


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how much of it a run uses."""

    data_dir: str  # phantom dataset written by `meddistill generate-data`
    real_root: str | None = None  # ../shared/data (NIH thumbnails, real CT); None = phantoms only
    image_size: int = 128  # model input side (the one resize rule: data.imaging.to_model_input)
    max_len: int = 64  # tokens per report sequence
    labelled_frac: float = 1.0  # fraction of each training source kept with its labels
    max_per_source: int | None = None  # cap items per source and split (quick runs, tests)
    seed: int = 0  # subset choice

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_real_root(arg: str | None, use_real: bool = True) -> str | None:
    """``--real-data`` argument, else ../shared/data when it exists, else None."""
    if not use_real:
        return None
    if arg:
        return arg
    return str(DEFAULT_REAL_ROOT) if DEFAULT_REAL_ROOT.is_dir() else None


def split_labelled(samples: Sequence, frac: float, seed: int) -> tuple[list, list]:
    """(labelled, rest): ``frac`` of each source, chosen by a seeded shuffle (stable across runs)."""
    if frac >= 1.0:
        return list(samples), []
    by_source: dict[str, list] = {}
    for s in samples:
        by_source.setdefault(s.source, []).append(s)
    labelled, rest = [], []
    for name in sorted(by_source):
        group = sorted(by_source[name], key=lambda s: s.id)
        order = np.random.default_rng([seed, len(name), sum(map(ord, name))]).permutation(len(group))
        k = int(round(frac * len(group)))
        labelled += [group[i] for i in order[:k]]
        rest += [group[i] for i in order[k:]]
    return labelled, rest


def cap_per_source(samples: Sequence, limit: int | None) -> list:
    """The first ``limit`` samples of each source (in id order); all when ``limit`` is None."""
    if limit is None:
        return list(samples)
    seen: dict[str, int] = {}
    out = []
    for s in sorted(samples, key=lambda s: (s.source, s.id)):
        if seen.get(s.source, 0) < limit:
            out.append(s)
            seen[s.source] = seen.get(s.source, 0) + 1
    return out


def ids_hash(ids: Sequence[str]) -> str:
    """sha256 of the sorted sample ids, one per line: two runs saw the same items iff equal."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def describe(samples: Sequence) -> dict:
    """Counts per source and modality + the id hash of one group of samples."""
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.source] = counts.get(s.source, 0) + 1
    return {
        "n": len(samples),
        "per_source": dict(sorted(counts.items())),
        "ids_sha256": ids_hash([s.id for s in samples]),
    }
