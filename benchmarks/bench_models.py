"""README table "Teacher vs KD student vs no-KD student" on the phantom test split.

    .venv/bin/python benchmarks/bench_models.py                       # shipped checkpoints
    .venv/bin/python benchmarks/bench_models.py --data runs/default/data --threads 2 --limit 200

Finding macro-AUROC / F1, tumour accuracy, treatment F1, BLEU-4, clinical-efficacy F1, parameters,
checkpoint MB and median CPU latency per study (encode + heads + greedy report, batch 1, the three
models interleaved round by round in one run), with ratios to the teacher and the issue's targets.
Reuses ``model.evaluate.run.evaluate`` (Grad-CAM, trade-off, METEOR, semantic and memory off).
Writes benchmarks/results/models.json + models.md.

Data: ``--data``, else the phantom set named in the teacher's model card when it still exists,
else the pipeline's default set regenerated deterministically (seed 0) into runs/bench_cache/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.evaluate.run import EvalConfig, evaluate  # noqa: E402
from model.evaluate.summary import to_jsonable  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "bench_cache"  # ignored by git

#: (label, group, metric, format)
ROWS = (
    ("Finding macro-AUROC", "findings", "macro_auroc", "{:.3f}"),
    ("Finding macro-F1", "findings", "macro_f1", "{:.3f}"),
    ("Tumour accuracy", "tumour", "accuracy", "{:.3f}"),
    ("Treatment macro-F1", "treatment", "macro_f1", "{:.3f}"),
    ("Report BLEU-4", "report", "bleu_4", "{:.3f}"),
    ("Clinical-efficacy F1 (micro)", "clinical", "micro_f1", "{:.3f}"),
    ("Clinical-efficacy F1 (example)", "clinical", "example_f1", "{:.3f}"),
    ("Parameters (M)", "efficiency", "parameters", "M"),
    ("Checkpoint (MB)", "efficiency", "checkpoint_mb", "{:.1f}"),
    ("Median CPU latency / study (ms)", "efficiency", "latency_median_ms", "{:.1f}"),
)


def _fmt(v, fmt: str) -> str:
    if v is None:
        return "–"
    return f"{v / 1e6:.2f}" if fmt == "M" else fmt.format(v)


def resolve_data(arg: str | None, checkpoints: dict[str, Path]) -> Path:
    if arg:
        return Path(arg)
    card_path = Path(checkpoints.get("teacher", next(iter(checkpoints.values())))) / "model_card.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        d = ((card.get("training") or {}).get("data_config") or {}).get("data_dir")
        if d and (Path(d) / "annotation.json").is_file():
            return Path(d)
    from model.commands.pipeline import PROFILES
    from model.data.generate import generate_dataset

    out = CACHE / "phantoms_default_seed0"
    if not (out / "annotation.json").is_file():
        prof = PROFILES["default"]
        print(f"regenerating the default phantom set into {out} ...", flush=True)
        generate_dataset(out, prof.n_cxr, prof.n_ct, seed=0)
    return out


def build_table(result: dict) -> tuple[str, dict]:
    order = result["model_order"]
    models = result["models"]
    ref = order[0]
    val = lambda m, g, k: (models[m]["metrics"].get(g) or {}).get(k)  # noqa: E731
    head = ["Metric", *order, *[f"{o} / {ref}" for o in order[1:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, group, key, fmt in ROWS:
        row = [label, *[_fmt(val(m, group, key), fmt) for m in order]]
        for o in order[1:]:
            a, b = val(o, group, key), val(ref, group, key)
            row.append(f"{a / b:.3f}" if a is not None and b not in (None, 0) else "–")
        lines.append("| " + " | ".join(row) + " |")

    checks = {}
    if {"teacher", "student"} <= set(order):
        p = val("teacher", "efficiency", "parameters") / val("student", "efficiency", "parameters")
        s = val("teacher", "efficiency", "latency_median_ms") / val(
            "student", "efficiency", "latency_median_ms"
        )
        ce_t, ce_s = val("teacher", "clinical", "micro_f1"), val("student", "clinical", "micro_f1")
        checks["params_ratio_teacher_over_student"] = p
        checks["speedup_teacher_over_student"] = s
        checks["ce_f1_retention"] = ce_s / ce_t if ce_t else None
        checks["target_10x_fewer_params"] = p >= 10
        checks["target_6x_faster"] = s >= 6
        checks["target_95pct_ce_f1"] = bool(ce_t) and ce_s / ce_t >= 0.95
    if {"student", "student_nokd"} <= set(order):
        for g, k, name in (("clinical", "micro_f1", "ce_f1"), ("report", "bleu_4", "bleu_4")):
            a, b = val("student", g, k), val("student_nokd", g, k)
            checks[f"kd_beats_nokd_{name}"] = a is not None and b is not None and a > b
    return "\n".join(lines), checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", metavar="NAME=DIR", help="default: shipped checkpoints")
    p.add_argument("--data", default=None)
    p.add_argument("--limit", type=int, default=None, help="test cases (default: the whole split)")
    p.add_argument("--threads", type=int, default=2, help="torch threads, the same for every model")
    p.add_argument("--runs", type=int, default=30, help="timed latency rounds (>= 20)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from model.commands.evaluate import parse_checkpoints

    checkpoints = parse_checkpoints(args.checkpoints)
    if not checkpoints:
        print("no checkpoints (none shipped yet): pass --checkpoints NAME=DIR ...", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    data = resolve_data(args.data, checkpoints)
    cfg = EvalConfig(
        limit=args.limit, cam_limit=0, tradeoff_limit=0, memory=False, meteor=False, semantic=False,
        real_dir=None, latency_runs=max(20, args.runs), threads=args.threads, progress=not args.quiet,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = evaluate(checkpoints, data, None, cfg)
    wall = time.perf_counter() - t0
    table, checks = build_table(result)
    lat = {m: result["models"][m]["efficiency"]["latency"] for m in result["model_order"]}
    note = (
        f"Phantom {result['data']['split']} split: {result['data']['n_cases']} cases "
        f"({result['data']['n_cxr']} CXR, {result['data']['n_ct']} CT) from `{data}`. Latency: batch 1, "
        f"{cfg.latency_runs} interleaved rounds after {cfg.latency_warmup} warm-up, {args.threads} torch threads, "
        f"{platform.processor() or platform.machine()}. Benchmark wall time {wall:.0f} s."
    )
    print(table)
    print()
    print(note)
    print(json.dumps(to_jsonable(checks)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "created": result["created"],
        "command": "python benchmarks/bench_models.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": result["data"],
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "threads": args.threads,
        "metrics": {m: result["models"][m]["metrics"] for m in result["model_order"]},
        "latency": lat,
        "checks": checks,
        "protocol": result["protocol"],
        "wall_s": round(wall, 1),
    }
    (RESULTS / "models.json").write_text(json.dumps(to_jsonable(out), indent=1) + "\n")
    (RESULTS / "models.md").write_text(f"{table}\n\n{note}\n\nTargets: `{json.dumps(to_jsonable(checks))}`\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
