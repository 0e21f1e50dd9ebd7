"""Tiny models and data for the training tests (imported by the DDP workers too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.distill.tensorset import TensorSet, build_tensorset
from model.networks import EOS_ID, prompt_ids
from model.types import CONTEXT_DIM, DETAIL_LEVELS

WORDS = ["normal", "heart", "lungs", "clear", "effusion", "nodule", "right", "left", "small", "large"]


def tiny_model(
    name: str = "tiny-student", vocab_size: int = 32, seed: int | None = None, spread: bool = False
):
    """(model, config) from a tiny random-weight preset: the one tiny-model builder of the test suite.

    ``seed`` seeds torch first (reproducible weights); ``spread`` widens the decoder's matrices and the
    memory projection so that greedy outputs vary with the input instead of one token winning everywhere.
    """
    from dataclasses import replace

    import torch

    from model.networks import TINY_PRESETS, build_model

    if seed is not None:
        torch.manual_seed(seed)
    cfg = replace(TINY_PRESETS[name], vocab_size=vocab_size)
    model = build_model(cfg)
    if spread:
        with torch.no_grad():
            for n, p in model.decoder.named_parameters():
                if p.ndim == 2 and "wpe" not in n:
                    p.normal_(0, 0.5)
            model.memory.proj.weight.normal_(0, 1.0)
    return model, cfg


def tiny_checkpoint(
    out: Path, tokenizer, name: str = "tiny-student", model_id: str = "tiny", seed: int = 0,
    card: dict | None = None, extras: dict | None = None,
) -> Path:  # fmt: skip
    """A saved random-weight checkpoint of a tiny preset (the folder ``Predictor.from_dir`` reads)."""
    from model.checkpoints import save_checkpoint

    model, _ = tiny_model(name, len(tokenizer), seed=seed)
    return save_checkpoint(out, model.eval(), tokenizer, {"model_id": model_id, **(card or {})}, extras or {})


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


def tiny_kd_setup(n: int = 8):
    """(teacher, student, train, dcfg): tiny teacher and student (seed 0), ``n`` training rows with the
    teacher's outputs cached (top-4 tokens, 2x2 hint maps), for the KD training tests."""
    import torch

    from model.distill.config import DistillConfig
    from model.distill.teacher_cache import cache_teacher_outputs

    torch.manual_seed(0)
    teacher, _ = tiny_model("tiny-teacher")
    student, _ = tiny_model("tiny-student")
    train = tiny_tensorset(n)
    dcfg = DistillConfig(top_k=4, hint_size=2)
    cache_teacher_outputs(teacher, train, dcfg, show_progress=False)
    return teacher, student, train, dcfg
