"""Length / detail trade-off of the shipped models, on the evaluation's own cases rebuilt from seed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tradeoff.py              # measure, write results
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tradeoff.py --into assets/eval/phantom_test.json
    .venv/bin/python benchmarks/bench_tradeoff.py --into assets/eval/phantom_test.json --reuse   # no re-run

Why: the Metrics page's clinical-F1-vs-length curves are flat from 16 to 128 tokens. This re-runs
only the trade-off (``model.evaluate.tradeoff.curves_for_model``, ~1-2 min on 2 cores, instead of the
whole ``bench_eval.py``) on the first ``tradeoff.n_cases`` cases of an evaluation result (the same
cases ``meddistill evaluate`` used: its case order), rebuilt from their seeds (no data folder needed),
and adds the curves that say why: ``positives_complete`` and ``statement_recall``. It also measures,
on the whole reports at the evaluation's cap, by which token the positive labels are all stated.

Writes benchmarks/results/tradeoff.json + tradeoff.md; ``--into RESULT.json`` also replaces that
result's ``tradeoff`` block (everything else in the file is left as it is) and rewrites RESULT.md.
Measured 2026-12-03 on the shared 2-core machine under heavy load: 972 s for the three models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.data.rebuild import rebuild_case  # noqa: E402
from model.evaluate import clinical, tradeoff  # noqa: E402
from model.evaluate.run import load_predictors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def positives_stated_by(text: str, label, uncertain: str = "positive") -> int:
    """The smallest number of words after which the report's positive labels are all stated."""
    from model.networks.tokenizer import detokenize, words

    w = words(text)
    full = clinical.positive_labels(label(text), uncertain)
    for k in range(len(w) + 1):
        if clinical.positive_labels(label(detokenize(w[:k])), uncertain) == full:
            return k
    return len(w)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--result", default=str(ROOT / "assets" / "eval" / "phantom_test.json"))
    p.add_argument("--checkpoints", nargs="+", metavar="NAME=DIR", help="default: shipped checkpoints")
    p.add_argument("--into", default=None, help="replace this result JSON's tradeoff block")
    p.add_argument(
        "--reuse", action="store_true", help="with --into: take the block from benchmarks/results/tradeoff.json"
    )
    p.add_argument("--n-cases", type=int, default=None, help="default: the result's tradeoff.n_cases")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.reuse:
        if not args.into:
            p.error("--reuse needs --into RESULT.json")
        measured = json.loads((RESULTS / "tradeoff.json").read_text())
        return _write_into(Path(args.into), measured["tradeoff"])

    from model.commands.evaluate import parse_checkpoints
    from model.data.imaging import load_study

    result = json.loads(Path(args.result).read_text())
    old = result.get("tradeoff") or {}
    caps = tuple(old.get("max_new_tokens") or tradeoff.MAX_NEW_TOKENS)
    details = tuple(old.get("details") or ("brief", "standard", "detailed"))
    n = args.n_cases or old.get("n_cases") or 48
    cases = [c for c in result["cases"] if c.get("source", "").startswith("phantom")][:n]

    t0 = time.perf_counter()
    rebuilt = [rebuild_case(result, c) for c in cases]
    studies = [
        dataclasses.replace(load_study(r.png(), f"{c['id']}.png"), modality=c["modality"], source=c["id"])
        for r, c in zip(rebuilt, cases, strict=True)
    ]
    contexts = [r.truth.context for r in rebuilt]
    references = {d: [r.reports[d] for r in rebuilt] for d in details}
    assert all(r.reports["standard"] == c["reference"] for r, c in zip(rebuilt, cases, strict=True))
    rebuild_s = time.perf_counter() - t0

    label = clinical.default_labeler()
    ref_labels = {d: [label(t) for t in refs] for d, refs in references.items()}
    predictors = load_predictors(parse_checkpoints(args.checkpoints))
    t0 = time.perf_counter()
    curves = {}
    for name, pred in predictors.items():
        t1 = time.perf_counter()
        curves[name] = tradeoff.curves_for_model(
            pred, studies, contexts, references, caps=caps, details=details, labeler=label,
            reference_labels=ref_labels, uncertain=(result.get("config") or {}).get("uncertain", "positive"),
        )  # fmt: skip
        print(f"{name}: {time.perf_counter() - t1:.0f} s", flush=True)
    tradeoff_s = time.perf_counter() - t0

    # by which word are the positive findings stated? (the evaluation's reports and the references)
    stated_by = {}
    for name in predictors:
        ks = [positives_stated_by((c["models"].get(name) or {}).get("report") or "", label) for c in cases]
        stated_by[name] = {"median": float(np.median(ks)), "p90": float(np.percentile(ks, 90)), "max": max(ks)}
    for d in details:
        ks = [positives_stated_by(t, label) for t in references[d]]
        stated_by[f"reference_{d}"] = {"median": float(np.median(ks)), "p90": float(np.percentile(ks, 90)),
                                       "max": max(ks)}  # fmt: skip

    block = {
        "max_new_tokens": list(caps),
        "details": list(details),
        "n_cases": len(cases),
        "model_caps": {n_: tradeoff.model_cap(p_) for n_, p_ in predictors.items()},
        "protocol": {
            **tradeoff.tradeoff_protocol(caps, details, len(cases)),
            "cases": f"the first {len(cases)} phantom cases of {result.get('name')}, rebuilt from their seeds "
            "(benchmarks/bench_tradeoff.py)",
            "positives_stated_by": "words until a report's positive labels are all stated (labeler on "
            "prefixes), over the evaluation's reports at its cap and the references",
        },
        "positives_stated_by": stated_by,
        "curves": curves,
    }
    cmd = "benchmarks/bench_tradeoff.py " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"command": cmd.strip(), "rebuild_s": round(rebuild_s, 2), "tradeoff_s": round(tradeoff_s, 2),
           "threads": args.threads, "tradeoff": block}  # fmt: skip
    (RESULTS / "tradeoff.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Length / detail trade-off ({len(cases)} cases of {result.get('name')}, rebuilt from seed)", "",
             "| model | detail | metric | " + " | ".join(str(c) for c in caps) + " |",
             "|---|---|---|" + "---|" * len(caps)]  # fmt: skip
    for name, per in curves.items():
        for d, cur in per.items():
            for key in ("clinical_f1", "statement_recall", "positives_complete", "bleu_4", "mean_tokens"):
                vals = " | ".join("–" if v is None else f"{v:.3g}" for v in cur[key])
                lines.append(f"| {name} | {d} | {key} | {vals} |")
    lines += ["", "Words until every positive label is stated: "
              + "; ".join(f"{k} median {v['median']:g}, p90 {v['p90']:g}, max {v['max']}" for k, v in stated_by.items()),
              "", f"Command: `{cmd.strip()}`; trade-off {tradeoff_s:.0f} s, rebuild {rebuild_s:.1f} s."]  # fmt: skip
    (RESULTS / "tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return _write_into(Path(args.into), block) if args.into else 0


def _write_into(target: Path, block: dict) -> int:
    """Replace ``target``'s tradeoff block (same JSON layout as ``meddistill evaluate`` writes)."""
    whole = json.loads(target.read_text())
    whole["tradeoff"] = block
    target.write_text(json.dumps(whole, indent=1, allow_nan=False) + "\n")
    if target.with_suffix(".md").is_file():  # the summary beside it shows the trade-off table too
        from model.evaluate.summary import markdown_summary

        target.with_suffix(".md").write_text(markdown_summary(whole))
    print(f"replaced the tradeoff block of {target} (and its .md summary)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
