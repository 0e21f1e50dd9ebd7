"""The pipeline's install checks (``model.distill.checks``) run on the three shipped checkpoints.

Validation phantoms of the shipped run, re-rendered from its seed (``model.evaluate.phantom_cases``);
each checkpoint served as the app serves it (``Predictor.from_dir``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_checks.py          # ~3 min, 1 thread
    -> benchmarks/results/checks.json + checks.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_files import write_result  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("teacher", "student", "student_nokd")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="validation cases per modality (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "checks.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    from model.distill.checks import CheckConfig, cases_from_split, failure_message, run_checks
    from model.evaluate.phantom_cases import SHIPPED_RUN
    from model.inference import Predictor, shipped_checkpoint

    cases = cases_from_split(args.limit)
    records = {}
    for name in MODELS:
        p = Predictor.from_dir(shipped_checkpoint(name), name)
        rec = run_checks(p, cases, CheckConfig())
        rec["message"] = None if rec["passed"] else failure_message(name, rec)
        records[name] = rec
        print(
            name,
            "PASS" if rec["passed"] else "FAIL",
            {k: c["passed"] for k, c in rec["checks"].items()},
            flush=True,
        )
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_checks.py"
        + (f" --limit {args.limit}" if args.limit else ""),
        "data": {"split": "val", "run": SHIPPED_RUN, "n_cases": len(cases)},
        "results": records,
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
    }
    write_result(args.out, result, to_markdown)
    return 0


def to_markdown(r: dict) -> str:
    lines = [
        "# Install checks on the shipped checkpoints",
        "",
        f"`{r['command']}` ({r['wall_s']} s). {r['data']['n_cases']} validation phantoms of the shipped run.",
        "",
        "| model | verdict | collapse | ood | baseline |",
        "|---|---|---|---|---|",
    ]
    for name, rec in r["results"].items():
        cells = [("pass" if c["passed"] else "**FAIL**") + ": " + c["detail"] for c in rec["checks"].values()]
        lines.append(f"| {name} | {'pass' if rec['passed'] else '**FAIL**'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
