"""Untrained demo checkpoints: the app runs (labelled "untrained demo weights") before any training.

Each served model id is built from a named tiny preset (``DEMO_PRESETS``), never chosen by position;
tests and benchmarks use the same builder for their throw-away checkpoints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

#: served model id -> ``TINY_PRESETS`` name of its demo weights
DEMO_PRESETS: dict[str, str] = {"teacher": "tiny-teacher", "student": "tiny-student"}
DEMO_TRAINING_DATA = "none: untrained demo weights (random initialisation)"


DEMO_SEED = 0  # the demo models' weights: seed + position in the presets


def build_demo_checkpoints(out_dir: Path, presets: dict[str, str] | None = None) -> dict[str, Path]:
    """Random-weight checkpoints ``out_dir/MODEL_ID`` for each ``presets`` entry (default ``DEMO_PRESETS``),
    sharing one word tokenizer trained on phantom reports; returns model id -> checkpoint dir."""
    import torch

    from model.checkpoints import save_checkpoint
    from model.networks import TINY_PRESETS, build_model, build_tokenizer

    tokenizer = build_tokenizer(demo_texts())
    dirs = {}
    for i, (model_id, preset) in enumerate((presets or DEMO_PRESETS).items()):
        cfg = dataclasses.replace(TINY_PRESETS[preset], vocab_size=len(tokenizer))
        card = {
            "model_id": model_id,
            "arch_name": preset,
            "training_data": DEMO_TRAINING_DATA,
            "untrained": True,
        }
        dirs[model_id] = Path(out_dir) / model_id
        # seeded, without touching the caller's RNG: the weights (so the demo reports) used to depend on
        # whatever ran before, and a report of punctuation only made the review tests fail now and then
        with torch.random.fork_rng():
            torch.manual_seed(DEMO_SEED + i)
            model = build_model(cfg)
        save_checkpoint(dirs[model_id], model, tokenizer, card, {})
    return dirs


def demo_texts(n: int = 60) -> list[str]:
    """Phantom reports at every detail level (deterministic) for the demo tokenizer."""
    import numpy as np

    from model.data.phantom import sample_truth
    from model.data.reports import write_reports

    rng = np.random.default_rng(0)
    texts = []
    for i in range(n):
        truth = sample_truth(rng, "CXR" if i % 2 else "CT", f"demo{i}")
        texts.extend(write_reports(truth, rng).values())
    return texts
