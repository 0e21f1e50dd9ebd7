"""`meddistill evaluate`: every metric for teacher / students -> assets/eval/NAME.json (+ NAME.md).

Examples:
  meddistill evaluate --data runs/default/data                        # shipped checkpoints
  meddistill evaluate --checkpoints teacher=runs/x/teacher student=runs/x/student \\
      student_nokd=runs/x/student_nokd --data runs/x/data --limit 100 --out assets/eval/phantom_test.json
  meddistill evaluate --external ~/my_cxr --format folders --label-map my_labels.json \
      --out assets/eval/external_my_cxr.json                          # a labelled set you bring

The JSON layout is documented in docs/eval_schema.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model.types import DETAIL_LEVELS

DEFAULT_OUT = "assets/eval/phantom_test.json"


def parse_checkpoints(items: list[str] | None) -> dict[str, Path]:
    """``["teacher=DIR", ...]`` -> {name: DIR}; default: the shipped checkpoints that exist."""
    if not items:
        from model.inference import SHIPPED_MODELS, shipped_checkpoint

        found = {}
        for name in SHIPPED_MODELS:
            try:
                path = shipped_checkpoint(name)
            except Exception:  # a missing shipped checkpoint: leave it out
                continue
            if Path(path).is_dir():
                found[name] = Path(path)
        return found
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--checkpoints expects NAME=DIR, got {item!r}")
        out[name] = Path(path)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoints", nargs="+", metavar="NAME=DIR", help="default: shipped teacher/student/student_nokd"
    )
    p.add_argument("--data", default=None, help="phantom set written by `meddistill generate-data`")
    p.add_argument(
        "--external",
        default=None,
        metavar="DIR",
        help="score a labelled set you bring instead of the phantoms (see --format, --label-map)",
    )
    p.add_argument(
        "--format",
        default="folders",
        choices=("folders", "nih-csv", "r2gen"),
        help="layout of --external: class folders, an NIH-style CSV, or R2Gen annotation.json",
    )
    p.add_argument(
        "--label-map",
        default=None,
        metavar="FILE",
        help="JSON: source label -> our finding / tumour class (see README)",
    )
    p.add_argument(
        "--counterfactual-limit",
        type=int,
        default=100,
        help="intensity-swap test on real / external sets: cases per class (0 = off)",
    )
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--limit", type=int, default=None, help="at most N cases per section (stable subset)")
    p.add_argument("--val-limit", type=int, default=200, help="validation cases for the max-F1 thresholds")
    p.add_argument("--out", default=DEFAULT_OUT, help="result JSON (a .md summary is written beside it)")
    p.add_argument("--detail", choices=DETAIL_LEVELS, default="standard")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--uncertain", choices=("positive", "negative", "ignore"), default="positive",
                   help="clinical efficacy: how the labeler's 'uncertain' counts")  # fmt: skip
    p.add_argument("--cam-limit", type=int, default=100, help="cases with Grad-CAM localisation (0 = off)")
    p.add_argument(
        "--tradeoff-limit", type=int, default=48, help="cases in the length/detail trade-off (0 = off)"
    )
    p.add_argument("--tradeoff-tokens", type=int, nargs="+", default=None, help="max_new_tokens grid")
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (latency uses the same for all)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-meteor", action="store_true")
    p.add_argument("--real-dir", default=None, help="real sets root (default ../shared/data when present)")
    p.add_argument("--no-real", action="store_true", help="phantoms only")
    p.add_argument("--real-limit", type=int, default=200)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace):
    import torch

    from model.evaluate.run import EvalConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EvalConfig(
        split=args.split,
        limit=args.limit,
        val_limit=args.val_limit,
        detail=args.detail,
        max_new_tokens=args.max_tokens,
        uncertain=args.uncertain,
        cam_limit=args.cam_limit,
        tradeoff_limit=args.tradeoff_limit,
        latency_runs=args.latency_runs,
        threads=args.threads,
        memory=not args.no_memory,
        meteor=False if args.no_meteor else None,
        real_limit=args.real_limit,
        counterfactual_limit=args.counterfactual_limit,
        progress=not args.quiet,
    )
    overrides = {}
    if args.tradeoff_tokens:
        overrides["tradeoff_tokens"] = tuple(args.tradeoff_tokens)
    if args.no_real:
        overrides["real_dir"] = None
    elif args.real_dir:
        overrides["real_dir"] = args.real_dir
    import dataclasses

    return dataclasses.replace(cfg, **overrides)


def main(args: argparse.Namespace) -> int:
    from model.evaluate.run import evaluate
    from model.evaluate.summary import metrics_table

    try:
        checkpoints = parse_checkpoints(args.checkpoints)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if not checkpoints:
        print("No checkpoints: pass --checkpoints NAME=DIR ... (none are shipped yet).", file=sys.stderr)
        return 2
    missing = [f"{k}={v}" for k, v in checkpoints.items() if not Path(v).is_dir()]
    if missing:
        print(f"Checkpoint folder not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.external:
        return _main_external(args, checkpoints)
    if not args.data:
        print("Nothing to evaluate: pass --data DIR (a phantom set) or --external DIR (a labelled set).",
              file=sys.stderr)  # fmt: skip
        return 2
    if not (Path(args.data) / "annotation.json").is_file():
        print(f"{args.data} is not a phantom set (no annotation.json): run `meddistill generate-data`.",
              file=sys.stderr)  # fmt: skip
        return 2
    t0 = time.perf_counter()
    result = evaluate(checkpoints, args.data, args.out, config_from_args(args))
    print(metrics_table(result["models"], result["model_order"], result["retention"]))
    print(json.dumps({"out": str(Path(args.out)), "summary": str(Path(args.out).with_suffix(".md")),
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip
    return 0


def _main_external(args: argparse.Namespace, checkpoints: dict) -> int:
    """``--external DIR``: the models on a user's labelled set -> evaluation JSON (+ .md)."""
    from model.evaluate.external import LabelMapError, evaluate_external
    from model.evaluate.summary import metrics_table

    out = args.out if args.out != DEFAULT_OUT else f"assets/eval/external_{Path(args.external).name}.json"
    t0 = time.perf_counter()
    try:
        result = evaluate_external(checkpoints, args.external, args.format, out, args.label_map,
                                   config_from_args(args))  # fmt: skip
    except (LabelMapError, FileNotFoundError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    print(metrics_table(result["models"], result["model_order"], result["retention"]))
    ext = result["external"]
    if ext["unmapped_labels"]:
        print(f"Left out (not in the label map): {', '.join(ext['unmapped_labels'])}", file=sys.stderr)
    print(json.dumps({"out": str(Path(out)), "summary": str(Path(out).with_suffix(".md")),
                      "n_cases": result["data"]["n_cases"], "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip
    return 0
