"""The input guard: checks every study before a model speaks (see verdict.py for the checks).

- ``Guard.load()`` / ``Guard.check(study, override)`` -> the study routed to its modality with a
  ``GuardVerdict``; ``check_prediction`` / ``with_verdict`` -> one model's verdict (its OOD probe).
- ``train.train_guard`` (``meddistill train-guard``) rebuilds ``assets/checkpoints/guard`` deterministically.
"""

from model.guard.verdict import (
    ANYWAY,
    GUARD_DIR,
    MODALITY_NAMES,
    Guard,
    check_prediction,
    guard_missing_note,
    verdict_line,
    with_verdict,
)

__all__ = [
    "ANYWAY",
    "GUARD_DIR",
    "MODALITY_NAMES",
    "Guard",
    "check_prediction",
    "guard_missing_note",
    "verdict_line",
    "with_verdict",
]
