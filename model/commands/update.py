"""`meddistill update`: learn from the reviewed cases in the store (issue 14).

Fine-tunes the current teacher on the reviews it has not learned from, mixed with replay of its original
training phantoms; re-distils the student from the updated teacher; gates the candidate against the
current version (held-out reviews, the phantom test split, the real sets) and promotes it only when
every check passes. Otherwise it says which check failed and by how much, and keeps it as "rejected".

  meddistill update                         # store at $MEDDISTILL_DATA_DIR (default ./userdata)
  meddistill update --recipe full           # train every weight (slow; the old recipe)
  meddistill update --resume                # continue an interrupted update where it stopped
  torchrun --standalone --nproc_per_node=2 -m model.cli update ...   (DDP, gloo on CPU)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from model.review.gate import GateConfig
from model.review.update import RECIPE_DEFAULTS, UpdateConfig

_U, _G = UpdateConfig(), GateConfig()
_RECIPE_HELP = (
    "features (default): the trunk frozen, heads + report decoder trained on its cached features; a step "
    "costs the decoder only and the trunk cannot forget. Chosen because it measured better on "
    "benchmarks/bench_update.py (README, Self-update): one 50-review update in ~6 min instead of 44, and "
    "most held-out errors of a missed finding fixed instead of 7-18 %%. full: every weight trains (the "
    "slow recipe it replaced)"
)


def _default(name: str) -> str:
    return "recipe default: " + ", ".join(f"{r} {d[name]}" for r, d in RECIPE_DEFAULTS.items())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="review store folder (default: $MEDDISTILL_DATA_DIR)")
    p.add_argument("--db-url", default=None, help="database URL (default: $MEDDISTILL_DB_URL or SQLite)")
    p.add_argument("--real-data", default=None, help="real sets root for the gate (default: ../shared/data)")
    p.add_argument("--no-real", action="store_true", help="gate on reviews and phantoms only")
    p.add_argument("--resume", action="store_true", help="continue the unfinished update")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("training (defaults: UpdateConfig and the recipe's RECIPE_DEFAULTS)")
    g.add_argument("--recipe", choices=sorted(RECIPE_DEFAULTS), default=_U.recipe, help=_RECIPE_HELP)
    g.add_argument("--replay-ratio", type=float, default=_U.replay_ratio, help="replayed phantoms per review")
    g.add_argument("--review-repeat", type=int, default=None,
                   help="times each reviewed row appears per pass (" + _default("review_repeat") + ")")  # fmt: skip
    g.add_argument("--teacher-epochs", type=int, default=None, help=_default("teacher_epochs"))
    g.add_argument("--teacher-lr", type=float, default=None, help=_default("teacher_lr"))
    g.add_argument("--student-epochs", type=int, default=None, help=_default("student_epochs"))
    g.add_argument("--student-lr", type=float, default=None, help=_default("student_lr"))
    g.add_argument("--batch-size", type=int, default=_U.batch_size, help="per process")
    g.add_argument(
        "--folds", type=int, default=_U.folds, help="k of the cross-validation when reviews are few"
    )
    g.add_argument("--cv-below", type=int, default=_U.cv_below, help="cross-validate below this many reviews")
    g.add_argument("--holdout-frac", type=float, default=_U.holdout_frac)
    g.add_argument("--seed", type=int, default=_U.seed)
    g.add_argument("--threads", type=int, default=_U.threads, help="torch threads (0 = default)")
    g.add_argument("--bf16", action="store_true", help="CPU bfloat16 autocast (AMX CPUs)")
    g = p.add_argument_group("gate (defaults: GateConfig; drops in [0, 1], 0.01 = 1 point)")
    g.add_argument("--min-review-gain", type=float, default=_G.min_review_gain)
    g.add_argument("--max-f1-drop", type=float, default=_G.max_f1_drop)
    g.add_argument("--max-head-drop", type=float, default=_G.max_head_drop)
    g.add_argument("--max-real-drop", type=float, default=_G.max_real_drop)
    g.add_argument("--phantom-test-n", type=int, default=_G.phantom_test_n)
    g.add_argument("--real-n", type=int, default=_G.real_n)


def update_config(args) -> UpdateConfig:
    gate = GateConfig(
        min_review_gain=args.min_review_gain,
        max_f1_drop=args.max_f1_drop,
        max_head_drop=args.max_head_drop,
        max_real_drop=args.max_real_drop,
        phantom_test_n=args.phantom_test_n,
        real_n=args.real_n,
    )
    return UpdateConfig(
        recipe=args.recipe,
        replay_ratio=args.replay_ratio,
        review_repeat=args.review_repeat,
        teacher_epochs=args.teacher_epochs,
        teacher_lr=args.teacher_lr,
        student_epochs=args.student_epochs,
        student_lr=args.student_lr,
        batch_size=args.batch_size,
        folds=args.folds,
        cv_below=args.cv_below,
        holdout_frac=args.holdout_frac,
        seed=args.seed,
        threads=args.threads,
        bf16=args.bf16,
        gate=gate,
    )


def main(args) -> int:
    from model.checkpoints import CheckpointError
    from model.distill import ddp
    from model.distill.data_plan import resolve_real_root
    from model.review import ReviewStore, StoreError
    from model.review.finetune import VocabularyError
    from model.review.update import UpdateError, run_update

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    env = ddp.init_distributed()
    try:
        store = ReviewStore.open(args.db_url, Path(args.data_dir) if args.data_dir else None, create=False)
        result = run_update(
            store,
            update_config(args),
            real_root=resolve_real_root(args.real_data, not args.no_real),
            resume=args.resume,
            env=env,
            show_progress=not args.quiet,
            log=print if env.is_main else (lambda *a: None),
        )
    except (StoreError, UpdateError, VocabularyError, CheckpointError) as e:
        if env.is_main:
            print(f"meddistill update: {e}")
        return 1
    finally:
        ddp.cleanup(env)
    if env.is_main:
        print(f"version {result.version} (from {result.parent}, {len(result.feedback_ids)} reviewed cases, "
              f"{result.wall_s:.0f} s): {'PROMOTED to current' if result.promoted else 'REJECTED'}")  # fmt: skip
        for check in result.checks:
            print("  " + check.sentence())
        if not result.promoted:
            print("not promoted because: " + "; ".join(result.reasons or ["the gate had nothing to compare"]))
    return 0 if result.promoted else 3
