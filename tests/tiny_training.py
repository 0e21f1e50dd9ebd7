"""Tiny models and data for the training tests (imported by the DDP workers too)."""

from __future__ import annotations

import numpy as np

from model.distill.tensorset import TensorSet, build_tensorset
from model.networks import EOS_ID, prompt_ids
from model.types import CONTEXT_DIM, DETAIL_LEVELS

WORDS = ["normal", "heart", "lungs", "clear", "effusion", "nodule", "right", "left", "small", "large"]


def tiny_model(name: str = "tiny-student", vocab_size: int = 32):
    """(model, config) from a tiny random-weight preset (vocabulary of the fake token ids below)."""
    from dataclasses import replace

    from model.networks import TINY_PRESETS, build_model

    cfg = replace(TINY_PRESETS[name], vocab_size=vocab_size)
    return build_model(cfg), cfg


def tiny_tensorset(n: int, seed: int = 0, size: int = 32, max_len: int = 12) -> TensorSet:
    rng = np.random.default_rng(seed)
    items, reports = [], []
    for i in range(n):
        ct = i % 2 == 1
        f = rng.integers(0, 2, 7).astype(np.float32)
        if ct:
            f[:] = np.nan
        items.append(
            dict(
                image=rng.random((1, size, size)).astype(np.float32),
                context=np.zeros(CONTEXT_DIM, np.float32),
                findings=f,
                tumour=int(rng.integers(0, 3)) if ct else -100,
                subtype=-100,
                treatments=rng.integers(0, 2, 7).astype(np.float32),
                modality="CT" if ct else "CXR",
                id=f"s{seed}-{i}",
                source="fake",
            )
        )
        words = list(rng.choice(WORDS, 6))
        reports.append({lvl: " ".join(words[: 2 + 2 * j]) for j, lvl in enumerate(DETAIL_LEVELS)})

    def encode(text, detail, modality):
        prompt = prompt_ids(detail, modality)
        if text is None:
            return prompt, 2
        return prompt + [16 + WORDS.index(w) for w in text.split()] + [EOS_ID], 2

    return build_tensorset(items, reports, encode, max_len, 0, seed)
