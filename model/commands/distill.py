"""`meddistill distill`: train a student from a teacher checkpoint (knowledge distillation).

  meddistill distill --teacher runs/teacher --data data/phantoms --arch mobilenet-1l \\
      --labelled-frac 0.3 --out runs/student
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from model.commands.train import (
    add_data_arguments,
    add_optim_arguments,
    data_config,
    resolve_preset,
    train_config,
)
from model.distill.config import DistillConfig

_DEFAULTS = DistillConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher checkpoint dir")
    p.add_argument(
        "--arch", "--student-arch", dest="arch", default="mobilenet-1l", help="student preset name"
    )
    p.add_argument("--out", required=True, help="checkpoint dir")
    add_data_arguments(p)
    add_optim_arguments(p, epochs=6, lr=2e-3)
    g = p.add_argument_group("distillation (defaults: DistillConfig)")
    for f in (
        "w_ce_report",
        "w_bce_findings",
        "w_ce_tumour",
        "w_ce_subtype",
        "w_bce_treatment",
        "w_kd_tokens",
        "w_kd_findings",
        "w_kd_tumour",
        "w_kd_treatment",
        "w_hint",
        "w_attention",
        "temperature",
        "token_temperature",
    ):
        g.add_argument("--" + f.replace("_", "-"), dest=f, type=float, default=getattr(_DEFAULTS, f))
    g.add_argument("--top-k", type=int, default=_DEFAULTS.top_k, help="cached teacher tokens per position")
    g.add_argument(
        "--hint-size", type=int, default=_DEFAULTS.hint_size, help="pooled teacher feature map side"
    )
    g.add_argument(
        "--no-sequence-kd", action="store_true", help="transfer set without teacher-decoded reports"
    )


def distill_config(args) -> DistillConfig:
    kw = {f: getattr(args, f) for f in DistillConfig.__dataclass_fields__ if hasattr(args, f)}
    kw["sequence_kd"] = not args.no_sequence_kd
    return DistillConfig(**kw)


def main(args) -> int:
    from model.distill import ddp
    from model.distill.recipes import distill_student

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    env = ddp.init_distributed()
    try:
        card = distill_student(
            resolve_preset(args.arch),
            Path(args.teacher),
            data_config(args),
            train_config(args),
            distill_config(args),
            Path(args.out),
            resume=args.resume,
            env=env,
            show_progress=not args.quiet,
        )
        if env.is_main:
            print(f"saved student ({card['parameters']:,} parameters) to {args.out}")
    finally:
        ddp.cleanup(env)
    return 0
