"""`meddistill train-guard`: rebuild the input guard (modality classifier + per-model OOD probes).

Deterministic for its arguments (one torch thread, seeded data); a few minutes on one CPU thread. Uses
``../shared/data`` when present (recorded in the card). Writes ``--out`` (default: the shipped guard).

Examples:
  meddistill train-guard                       # rebuild assets/checkpoints/guard
  meddistill train-guard --out runs/guard --epochs 4 --n-negative 80
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from model.guard.train import TrainGuardConfig

    d = TrainGuardConfig()
    p.add_argument("--out", default=d.out, help="checkpoint folder to write")
    p.add_argument("--n-positive", type=int, default=d.n_positive, help="phantoms per chest modality")
    p.add_argument("--n-negative", type=int, default=d.n_negative, help="images per training negative family")
    p.add_argument("--n-calib", type=int, default=d.n_calib, help="calibration images per family")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--ood-models",
        default=",".join(d.ood_models),
        help="shipped models to fit OOD probes for ('' = none)",
    )


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from model.guard.train import TrainGuardConfig, train_guard

    cfg = TrainGuardConfig(
        out=args.out,
        n_positive=args.n_positive,
        n_negative=args.n_negative,
        n_calib=args.n_calib,
        epochs=args.epochs,
        seed=args.seed,
        ood_models=tuple(m for m in args.ood_models.split(",") if m),
    )
    train_guard(cfg)
    return 0
