"""Tiny models and data for the training tests (imported by the DDP workers too)."""

from __future__ import annotations

import numpy as np

from model.distill.tensorset import TensorSet, build_tensorset
from model.types import CONTEXT_DIM, DETAIL_LEVELS

WORDS = ["normal", "heart", "lungs", "clear", "effusion", "nodule", "right", "left", "small", "large"]


def tiny_model():
    """(model, tokenizer) from the smallest registered preset."""
    from types import SimpleNamespace

    import torch

    class Fake(torch.nn.Module):
        def __init__(self, V=20, C=8):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, C, 3, stride=4, padding=1)
            self.hf, self.ht, self.hs = torch.nn.Linear(C, 7), torch.nn.Linear(C, 3), torch.nn.Linear(C, 3)
            self.htr = torch.nn.Linear(C + CONTEXT_DIM, 7)
            self.emb, self.lm = torch.nn.Embedding(V, C), torch.nn.Linear(C, V)

        def forward(self, images, context, input_ids, attention_mask):
            f = torch.relu(self.conv(images))
            p = f.mean((2, 3))
            h = self.emb(input_ids) + p[:, None]
            return SimpleNamespace(
                findings_logits=self.hf(p),
                tumour_logits=self.ht(p),
                subtype_logits=self.hs(p),
                treatment_logits=self.htr(torch.cat([p, context], 1)),
                lm_logits=self.lm(h),
                features=f,
                pooled=p,
            )

    return Fake(), None


def tiny_tensorset(n: int, seed: int = 0, size: int = 16, max_len: int = 12) -> TensorSet:
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
        prompt = [1, 2 + DETAIL_LEVELS.index(detail)]
        if text is None:
            return prompt, 2
        return prompt + [6 + WORDS.index(w) for w in text.split()] + [5], 2

    return build_tensorset(items, reports, encode, max_len, 0, seed)
