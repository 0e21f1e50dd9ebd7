"""README table "Full evaluation": every metric for teacher / KD student / no-KD student + how long it takes.

    .venv/bin/python benchmarks/bench_eval.py                         # shipped checkpoints
    .venv/bin/python benchmarks/bench_eval.py --data runs/default/data --threads 2

Runs the complete ``meddistill evaluate`` (phantom test split + the real sets in ../shared/data when
present, Grad-CAM localisation, calibration, efficiency with interleaved latency and peak memory,
length/detail trade-off) into assets/eval/phantom_test.json (+ .md, which the dashboard reads), and
copies the markdown summary with the wall time to benchmarks/results/eval.md + eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_models import resolve_data  # noqa: E402
from model.evaluate.run import EvalConfig, evaluate  # noqa: E402
from model.evaluate.summary import markdown_summary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", metavar="NAME=DIR", help="default: shipped checkpoints")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=str(ROOT / "assets" / "eval" / "phantom_test.json"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from model.commands.evaluate import parse_checkpoints

    checkpoints = parse_checkpoints(args.checkpoints)
    if not checkpoints:
        print("no checkpoints (none shipped yet): pass --checkpoints NAME=DIR ...", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    data = resolve_data(args.data, checkpoints)
    cfg = EvalConfig(limit=args.limit, threads=args.threads, progress=not args.quiet,
                     **({"real_dir": None} if args.no_real else {}))  # fmt: skip
    t0 = time.perf_counter()
    result = evaluate(checkpoints, data, args.out, cfg)
    wall = time.perf_counter() - t0
    md = markdown_summary(json.loads(Path(args.out).read_text()))
    cmd = "python benchmarks/bench_eval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval.md").write_text(f"{md}\nCommand: `{cmd}`; wall time {wall:.0f} s.\n")
    (RESULTS / "eval.json").write_text(
        json.dumps(
            {"command": cmd, "wall_s": round(wall, 1), "out": args.out, "timing": result["timing"]}, indent=1
        )
        + "\n"
    )
    print(md)
    print(f"evaluation wall time: {wall:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
