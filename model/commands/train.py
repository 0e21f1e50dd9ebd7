"""`meddistill train`: train any architecture from ground truth (the teacher, or the no-KD student).

Examples:
  meddistill train --data data/phantoms --arch resnet50-4l --out runs/teacher
  meddistill train --data data/phantoms --student-arch mobilenet-1l --no-kd \\
      --tokenizer-from runs/teacher --labelled-frac 0.3 --max-steps 600 --out runs/student_nokd
  torchrun --standalone --nproc_per_node=2 -m model.cli train ...   (DDP, gloo on CPU)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from model.distill.config import TrainConfig
from model.distill.data_plan import DataConfig, resolve_real_root


def resolve_preset(name: str):
    """A ModelConfig from any preset registry (teacher, student, tiny)."""
    from model.networks import STUDENT_PRESETS, TEACHER_PRESETS, TINY_PRESETS

    for registry in (TEACHER_PRESETS, STUDENT_PRESETS, TINY_PRESETS):
        if name in registry:
            return registry[name]
    known = sorted({*TEACHER_PRESETS, *STUDENT_PRESETS, *TINY_PRESETS})
    raise SystemExit(f"unknown architecture {name!r}; choose one of: {', '.join(known)}")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="phantom dataset dir (from `meddistill generate-data`)")
    g.add_argument("--real-data", default=None, help="real sets root (default: ../shared/data when present)")
    g.add_argument("--no-real", action="store_true", help="phantoms only")
    g.add_argument("--image-size", type=int, default=128)
    g.add_argument("--max-len", type=int, default=104, help="tokens per report sequence")
    g.add_argument(
        "--labelled-frac", type=float, default=1.0, help="fraction of each training source labelled"
    )
    g.add_argument("--max-per-source", type=int, default=None, help="cap items per source and split")


def add_optim_arguments(p: argparse.ArgumentParser, epochs: int = 6, lr: float = 1e-3) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--max-steps", type=int, default=None, help="optimiser-step budget (caps epochs)")
    g.add_argument("--batch-size", type=int, default=32, help="per process")
    g.add_argument("--lr", type=float, default=lr)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    g.add_argument("--warmup-frac", type=float, default=0.05)
    g.add_argument("--schedule", choices=("cosine", "linear", "constant"), default="cosine")
    g.add_argument("--grad-clip", type=float, default=1.0)
    g.add_argument("--patience", type=int, default=3, help="early stopping (epochs)")
    g.add_argument("--finetune-epochs", type=int, default=0, help="extra heads-only stage")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--bf16", action="store_true", help="CPU bfloat16 autocast + channels-last (AMX CPUs)")
    g.add_argument("--time-budget", type=float, default=None, help="seconds; the lr schedule fits the budget")
    g.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/stage_*/train_state")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", "--student-arch", dest="arch", default="resnet50-4l", help="preset name")
    p.add_argument("--out", required=True, help="checkpoint dir")
    p.add_argument(
        "--role", default=None, help="model id in the card (default: teacher, or student_nokd with --no-kd)"
    )
    p.add_argument(
        "--no-kd", action="store_true", help="baseline student: ground truth only (train never uses KD)"
    )
    p.add_argument(
        "--tokenizer-from", default=None, help="reuse a checkpoint's tokenizer (students: the teacher's)"
    )
    add_data_arguments(p)
    add_optim_arguments(p)


def data_config(args) -> DataConfig:
    return DataConfig(
        data_dir=args.data,
        real_root=resolve_real_root(args.real_data, not args.no_real),
        image_size=args.image_size,
        max_len=args.max_len,
        labelled_frac=args.labelled_frac,
        max_per_source=args.max_per_source,
        seed=args.seed,
    )


def train_config(args) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        warmup_frac=args.warmup_frac,
        schedule=args.schedule,
        grad_clip=args.grad_clip,
        patience=args.patience,
        seed=args.seed,
        finetune_epochs=args.finetune_epochs,
        threads=args.threads,
        bf16=args.bf16,
        time_budget_s=args.time_budget,
    )


def main(args) -> int:
    from model.distill import ddp
    from model.distill.recipes import train_supervised

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    env = ddp.init_distributed()
    try:
        role = args.role or ("student_nokd" if args.no_kd else "teacher")
        card = train_supervised(
            resolve_preset(args.arch),
            data_config(args),
            train_config(args),
            Path(args.out),
            role=role,
            tokenizer_from=Path(args.tokenizer_from) if args.tokenizer_from else None,
            resume=args.resume,
            env=env,
            show_progress=not args.quiet,
        )
        if env.is_main:
            print(f"saved {role} ({card['parameters']:,} parameters) to {args.out}")
            print(
                "validation:",
                {
                    k: round(v, 4)
                    for k, v in card["metrics"]["validation"].items()
                    if "auroc" in k or "accuracy" in k or k == "val_total"
                },
            )
    finally:
        ddp.cleanup(env)
    return 0
