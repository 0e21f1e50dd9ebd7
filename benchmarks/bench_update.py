"""Learning from review (issue 14 target): does one `meddistill update` fix a systematic error?

Two planted errors (the issue: "a finding they miss or a phrasing they never use"), each learnt by its own
update from a fresh store whose version 1 is the shipped weights:

**missed** (a finding the models miss)
1. *Measure* which finding the current (shipped) teacher and student miss: fresh CXR phantoms
   (``--measure-n``, a seed namespace no run trained on), each model's report through the labeler.
   The planted error is the finding both miss most often; ties go to the larger lesion at the model's
   input. ``--finding`` overrides the choice.
2. *Plant* ``--reviews`` (50) reviewed cases of that kind (phantoms with the finding, every label marked
   from the truth, the reference report).
3. *Score* on ``--heldout`` other phantoms of that kind, never reviewed: of the cases where the current
   model's report misses the finding, the share the new version's report states (and the same for the
   finding head at the card's threshold).

**phrasing** (a phrasing they never use)
1. *Measure* which of a few two-item negative sentences ("No pleural effusion or pneumothorax.") both
   models write most often on the same measure phantoms; the reviewers' phrasing swaps its two items
   ("No pneumothorax or pleural effusion."), an order no training report and no model report uses
   (measured: its share is recorded), written with words the tokenizer knows.
2. *Plant* 50 reviewed CXR phantoms where both items are absent: the reference report with its
   negatives about those two items replaced by the reviewers' sentence before the impression.
3. *Score* on held-out phantoms of that kind: of the cases whose current report does not use the
   reviewers' phrasing, the share whose new report does, no longer writes the old sentence, and still
   states every finding the old report stated correctly (no finding lost).

Both: ``run_update`` exactly as ``meddistill update`` runs it (default UpdateConfig unless ``--recipe``;
the real sets in the gate when ../shared/data exists), timed; the phantom test split's clinical-efficacy
micro F1 before/after (the gate's figure); the load average.

    nice -n 0 .venv/bin/python benchmarks/bench_update.py          # both experiments
    -> benchmarks/results/update.json + update.md

Targets (per experiment): >= 80 % of the errors fixed (teacher and student), phantom-test F1 drop <= 1
point, one update with 50 cases <= 15 minutes on this CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_files import write_result  # noqa: E402

from model.types import FINDINGS, Study  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MEASURE_SEED, REVIEW_SEED, HELDOUT_SEED = 7001, 7002, 7003  # generate-data seed namespaces no run used
TARGETS = {"fixed_share": 0.8, "max_f1_drop": 0.01, "max_wall_s": 900.0}


def phantoms(dataset_seed: int, n: int, finding: str | None = None, limit: int = 20000) -> list:
    """The first ``n`` CXR phantoms of a seed namespace (that show ``finding`` when given)."""
    from model.data.generate import case_seed
    from model.data.phantom import make_case

    out = []
    for i in range(limit):
        case = make_case(case_seed(dataset_seed, "CXR", i), "CXR", size=256, case_id=f"b{dataset_seed}_{i}")
        if finding is None or finding in {f.name for f in case.truth.findings}:
            out.append((case_seed(dataset_seed, "CXR", i), case))
        if len(out) == n:
            break
    return out


def study(case) -> Study:
    from model.data.generate import to_uint8

    return Study(pixels=to_uint8(case.image).astype(np.float32) / 255.0, modality="CXR", source="bench")


def predict(predictor, cases) -> list:
    out = []
    for s in range(0, len(cases), 16):
        out += predictor.predict_batch([study(c) for _, c in cases[s : s + 16]])
    return out


def measure(predictors: dict, n: int) -> tuple[dict, dict, dict]:
    """Per finding: n, report recall and head recall per model, median lesion area at the input size;
    and (third) the reports per model, for the phrasing experiment."""
    from model.data.imaging import to_model_input
    from model.review.gate import head_calls, report_calls

    cases = phantoms(MEASURE_SEED, n)
    preds = {name: predict(p, cases) for name, p in predictors.items()}
    size = next(iter(predictors.values())).image_size
    table = {}
    for f in FINDINGS:
        rows = [i for i, (_, c) in enumerate(cases) if f in {x.name for x in c.truth.findings}]
        areas = [float((to_model_input(cases[i][1].masks[f].astype(np.float32), size) > 0.5).sum()) for i in rows
                 if f in cases[i][1].masks]  # fmt: skip
        entry = {"n": len(rows), "median_area_px": float(np.median(areas)) if areas else 0.0}
        for name, p in predictors.items():
            rep = [report_calls(preds[name][i].report)[0][f] for i in rows]
            head = [head_calls(preds[name][i], p.finding_thresholds)[0][f] for i in rows]
            entry[name] = {"report_recall": float(np.mean(rep)) if rows else None,
                           "head_recall": float(np.mean(head)) if rows else None}  # fmt: skip
        table[f] = entry
    reports = {name: [p.report for p in ps] for name, ps in preds.items()}
    return table, {"n": n, "dataset_seed": MEASURE_SEED, "input_px": size}, reports


def choose(table: dict) -> str:
    """The finding both models miss most often in their reports (ties: the larger lesion)."""

    def key(f):
        e = table[f]
        miss = min(1 - e["teacher"]["report_recall"], 1 - e["student"]["report_recall"])
        return (round(miss, 2), e["median_area_px"])

    return max((f for f in table if table[f]["n"] >= 5), key=key)


def fixed_share(finding: str, before, after, thresholds_before, thresholds_after) -> dict:
    """Of the held-out cases the current version gets wrong, the share the new one gets right."""
    from model.review.gate import head_calls, report_calls

    out = {}
    for what in ("report", "head"):

        def call(pred, thr, what=what):
            return (
                report_calls(pred.report)[0][finding]
                if what == "report"
                else head_calls(pred, thr)[0][finding]
            )

        wrong = [i for i, p in enumerate(before) if not call(p, thresholds_before)]
        fixed = [i for i in wrong if call(after[i], thresholds_after)]
        broke = [
            i
            for i, p in enumerate(before)
            if call(p, thresholds_before) and not call(after[i], thresholds_after)
        ]
        out[what] = {
            "errors_before": len(wrong),
            "fixed": len(fixed),
            "fixed_share": len(fixed) / len(wrong) if wrong else None,
            "newly_wrong": len(broke),
            "recall_before": 1 - len(wrong) / len(before),
            "recall_after": float(np.mean([call(p, thresholds_after) for p in after])),
        }
    return out


# ----------------------------------------------------------------------------------------------
# The phrasing experiment

#: two-item negative sentences of the phantom reports -> the findings they negate; the reviewers'
#: phrasing is the same two items in the other order (no report generator writes that order)
PAIR_SENTENCES = {
    "No pleural effusion or pneumothorax.": ("pleural_effusion", "pneumothorax"),
    "No pulmonary oedema or atelectasis.": ("edema", "atelectasis"),
    "No consolidation or mass.": ("consolidation", "nodule"),
}


def swapped(sentence: str) -> str:
    """'No A or B.' -> 'No B or A.'"""
    a, b = sentence.removeprefix("No ").removesuffix(".").split(" or ")
    return f"No {b} or {a}."


def uses(report: str, sentence: str) -> bool:
    from model.data.labeler import split_sentences

    want = sentence.rstrip(".").lower()
    return any(x.rstrip(".").lower() == want for x in split_sentences(report or ""))


def choose_phrasing(reports: dict[str, list[str]], tokenizer) -> dict:
    """The pair sentence both models write most often (share: the lower of the two), with the reviewers'
    rewrite, its share in the models' reports (should be 0) and whether the tokenizer knows every word."""
    rows = []
    for sentence, findings in PAIR_SENTENCES.items():
        share = {m: float(np.mean([uses(r, sentence) for r in rs])) for m, rs in reports.items()}
        new = swapped(sentence)
        rows.append({
            "sentence": sentence, "rewrite": new, "findings": list(findings), "share": share,
            "rewrite_share": {m: float(np.mean([uses(r, new) for r in rs])) for m, rs in reports.items()},
            "rewrite_in_vocabulary": tokenizer.unk_token_id not in tokenizer(new.lower())["input_ids"],
        })  # fmt: skip
    usable = [r for r in rows if r["rewrite_in_vocabulary"]]
    best = max(usable, key=lambda r: min(r["share"].values()))
    return best | {"candidates": rows}


def phrasing_cases(dataset_seed: int, n: int, findings: tuple[str, ...], limit: int = 20000) -> list:
    """The first ``n`` CXR phantoms of a seed namespace where none of ``findings`` is present."""
    from model.data.generate import case_seed
    from model.data.phantom import make_case

    out = []
    for i in range(limit):
        case = make_case(case_seed(dataset_seed, "CXR", i), "CXR", size=256, case_id=f"p{dataset_seed}_{i}")
        if not set(findings) & {f.name for f in case.truth.findings}:
            out.append((case_seed(dataset_seed, "CXR", i), case))
        if len(out) == n:
            break
    return out


def reviewer_text(reference: str, findings: tuple[str, ...], rewrite: str) -> str:
    """The reference report in the reviewers' house style: every sentence negating only ``findings``
    dropped, the reviewers' sentence before the impression (the last sentence)."""
    from model.data.labeler import split_sentences

    keep = []
    for x in split_sentences(reference):
        labels = _labels(x)
        about = {k for k, v in labels.items() if v is not None}
        if about and about <= set(findings):
            continue  # a negative about the pair alone ("No pneumothorax.", "The costophrenic angles ...")
        keep.append(x if x.endswith(".") else x + ".")
    return " ".join([*keep[:-1], rewrite, *keep[-1:]])


def _labels(sentence: str) -> dict:
    from model.evaluate.clinical import default_labeler
    from model.types import FINDINGS

    labels = default_labeler()(sentence)
    return {f: labels.get(f) for f in FINDINGS}


def phrasing_fixed(sentence: str, rewrite: str, truth: list[set], before: list, after: list) -> dict:
    """Of the held-out cases whose current report does not use ``rewrite``, the share whose new report
    uses it, no longer writes ``sentence``, and keeps every finding the old report stated correctly."""
    from model.review.gate import report_calls

    def stated(pred) -> set:
        return {f for f, v in report_calls(pred.report)[0].items() if v}

    wrong = [i for i, p in enumerate(before) if not uses(p.report, rewrite)]
    lost = [i for i in range(len(before)) if (stated(before[i]) & truth[i]) - stated(after[i])]
    fixed = [i for i in wrong if uses(after[i].report, rewrite) and not uses(after[i].report, sentence)
             and i not in lost]  # fmt: skip
    return {
        "errors_before": len(wrong),
        "fixed": len(fixed),
        "fixed_share": len(fixed) / len(wrong) if wrong else None,
        "findings_lost": len(lost),
        "old_sentence_before": float(np.mean([uses(p.report, sentence) for p in before])),
        "old_sentence_after": float(np.mean([uses(p.report, sentence) for p in after])),
        "rewrite_before": float(np.mean([uses(p.report, rewrite) for p in before])),
        "rewrite_after": float(np.mean([uses(p.report, rewrite) for p in after])),
        "example_after": after[0].report if after else None,
    }


# ----------------------------------------------------------------------------------------------
# The teacher sweep behind the features recipe's defaults (--sweep)


def sweep(specs: str, finding: str, n_reviews: int, n_heldout: int, replay: int, test_n: int) -> list[dict]:
    """The shipped teacher trained by the features recipe on ``n_reviews`` reviewed cases of ``finding``
    + ``replay`` replayed phantoms, once per spec "epochs,lr,review_repeat" (';'-separated), from the same
    cached features; per spec: the held-out report / head recall of the finding and the phantom-test CE F1
    (the first ``test_n`` cases). The update's defaults (RECIPE_DEFAULTS) were picked from this table."""
    import copy
    import tempfile

    from model.checkpoints import load_checkpoint
    from model.data.reports import write_reports
    from model.distill.config import DistillConfig, TrainConfig
    from model.distill.data_plan import DataConfig
    from model.distill.feature_stage import stage_configs, trainable, with_features
    from model.distill.recipes import to_tensorset
    from model.distill.trainer import fit
    from model.inference import Predictor
    from model.review import ReviewStore
    from model.review.gate import head_calls, phantom_test_cases, report_calls, score_phantom_test
    from model.review.samples import replay_samples, review_from_phantom, review_sample

    tmp = Path(tempfile.mkdtemp(prefix="bench_update_sweep_"))
    store = ReviewStore.open(data_dir=tmp / "data")
    for seed, case in phantoms(REVIEW_SEED, n_reviews, finding):
        text = write_reports(case.truth, np.random.default_rng([seed, 1]))["standard"]
        store.save_review(*review_from_phantom(case, text, model_version=1))
    reviews = store.list_reviews()
    heldout = phantoms(HELDOUT_SEED, n_heldout, finding)
    model, tok, card, extras = load_checkpoint(ROOT / "assets" / "checkpoints" / "teacher")
    data = DataConfig(data_dir="(sweep)", image_size=model.cfg.image_size,
                      max_len=int(card["training"]["data_config"].get("max_len") or model.cfg.max_len))  # fmt: skip
    train = to_tensorset([review_sample(r, store) for r in reviews] + replay_samples(replay, 0), tok, data, 0)
    val = to_tensorset(
        [review_sample(r, store) for r in reviews] + replay_samples(32, 1, "val"), tok, data, 1
    )
    train, val = with_features(model, train, False), with_features(model, val, False)
    tests = phantom_test_cases(test_n)
    init = copy.deepcopy(model.state_dict())

    def score(tag: str, extra: dict) -> dict:
        p = Predictor(model, tok, card, extras, "sweep")
        preds = predict(p, heldout)
        row = {"spec": tag, **extra,
               "report_recall": float(np.mean([report_calls(x.report)[0][finding] for x in preds])),
               "head_recall": float(np.mean([head_calls(x, p.finding_thresholds)[0][finding] for x in preds])),
               "ce_f1": score_phantom_test(p, tests)["ce_f1"], "load_average": os.getloadavg()[0]}  # fmt: skip
        print(row, flush=True)
        return row

    rows = [score("shipped", {})]
    for spec in specs.split(";"):
        epochs, lr, repeat = int(spec.split(",")[0]), float(spec.split(",")[1]), int(spec.split(",")[2])
        model.load_state_dict(init)
        tcfg = TrainConfig(epochs=1, batch_size=16, lr=lr, warmup_frac=0.1, patience=epochs, seed=0,
                           feature_epochs=epochs, feature_lr_frac=1.0, augment="off")  # fmt: skip
        tc, dc = stage_configs(tcfg, DistillConfig().without_kd())
        t0 = time.perf_counter()
        r = fit(model, train.repeat_sources({"review": repeat}), val, tc, dc, tmp / spec.replace(",", "_"),
                stage="features", trainable=trainable, lr=lr, epochs=epochs, show_progress=False)  # fmt: skip
        rows.append(
            score(spec, {"replay": replay, "steps": r.steps, "fit_s": round(time.perf_counter() - t0, 1)})
        )
    return rows


# ----------------------------------------------------------------------------------------------
# One experiment: plant, update, score


def run_experiment(kind: str, planted: dict, reviewed: list, heldout: list, texts: list[str], current: dict,
                   args, real_root) -> dict:  # fmt: skip
    """Plant ``reviewed`` (with reviewer ``texts``) in a fresh store, run one update, score ``heldout``."""
    import tempfile

    from model.inference import Predictor
    from model.review import ReviewStore
    from model.review.gate import GateConfig
    from model.review.samples import review_from_phantom
    from model.review.update import UpdateConfig, run_update, version_path

    print(f"[{kind}] planted error: {planted}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"bench_update_{kind}_") as tmp:
        store = ReviewStore.open(data_dir=Path(tmp) / "data")
        for (_, case), text in zip(reviewed, texts, strict=True):
            store.save_review(*review_from_phantom(case, text, model_version=1))
        cfg = UpdateConfig(threads=args.threads, gate=GateConfig(phantom_test_n=args.phantom_test_n))
        if args.recipe:
            cfg = UpdateConfig(recipe=args.recipe, threads=args.threads, gate=cfg.gate)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        result = run_update(store, cfg, real_root=real_root, show_progress=True)
        update_s = time.perf_counter() - t0
        load_after = os.getloadavg()
        v2 = store.version(result.version)
        new = {r: Predictor.from_dir(version_path(v2) / r, r) for r in ("teacher", "student")}
        before = {r: predict(current[r], heldout) for r in current}
        after = {r: predict(new[r], heldout) for r in new}
        if kind == "missed":
            f = planted["finding"]
            fixed = {r: fixed_share(f, before[r], after[r], current[r].finding_thresholds,
                                    new[r].finding_thresholds) for r in current}  # fmt: skip
        else:
            truth = [{x.name for x in c.truth.findings} for _, c in heldout]
            fixed = {r: {"report": phrasing_fixed(planted["sentence"], planted["rewrite"], truth, before[r],
                                                  after[r])} for r in current}  # fmt: skip
        metrics = v2.metrics
        plan = __import__("json").loads((version_path(v2) / "update_state.json").read_text())
    f1 = {
        r: {
            "before": metrics["current"][r]["phantom_test"]["ce_f1"],
            "after": metrics["candidate"][r]["phantom_test"]["ce_f1"],
        }
        for r in ("teacher", "student")
    }
    for r in f1:
        f1[r]["drop_points"] = 100 * (f1[r]["before"] - f1[r]["after"])
    met = {
        "fixed_share": all((fixed[r]["report"]["fixed_share"] or 0) >= TARGETS["fixed_share"] for r in fixed),
        "f1_drop": all(f1[r]["drop_points"] <= 100 * TARGETS["max_f1_drop"] for r in f1),
        "wall_time": update_s <= TARGETS["max_wall_s"],
    }
    return {
        "planted_error": planted | {"reviews": len(reviewed), "heldout": len(heldout)},
        "update": {
            "version": result.version,
            "promoted": result.promoted,
            "wall_s": round(update_s, 1),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "trained_on_reviews": len(result.feedback_ids),
            "reviews_mode": metrics.get("reviews_mode"),
            "config": plan["config"],
            "steps": {k: v.get("fit") for k, v in plan["done"].items() if k in ("teacher", "student")},
            "checks": [c.sentence() for c in result.checks],
        },
        "fixed_on_heldout": fixed,
        "phantom_test_ce_f1": f1,
        "gate_metrics": {k: metrics[k] for k in ("current", "candidate")},
        "targets_met": met,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", default="missed,phrasing", help="comma list of: missed, phrasing")
    p.add_argument("--finding", default=None, help="the missed experiment's finding (default: measured)")
    p.add_argument("--recipe", default=None, help="update recipe (default: UpdateConfig's)")
    p.add_argument("--measure-n", type=int, default=300)
    p.add_argument("--reviews", type=int, default=50)
    p.add_argument("--heldout", type=int, default=60)
    p.add_argument("--phantom-test-n", type=int, default=300, help="phantom test cases the gate scores")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--out", default=str(RESULTS / "update.json"))
    p.add_argument("--sweep", default=None, metavar="SPECS",
                   help="only sweep the teacher's features recipe: 'epochs,lr,review_repeat;...' "
                        "(40 reviews of --finding, default pneumothorax) -> update_sweep.json")  # fmt: skip
    p.add_argument("--sweep-replay", type=int, default=120, help="replayed phantoms in the sweep")
    args = p.parse_args()
    if args.sweep:
        import json

        torch_threads = args.threads
        __import__("torch").set_num_threads(torch_threads)
        rows = sweep(args.sweep, args.finding or "pneumothorax", 40, args.heldout, args.sweep_replay, 80)
        out = RESULTS / "update_sweep.json"
        old = json.loads(out.read_text()) if out.is_file() else {"rows": []}
        old["rows"] += [{**r, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} for r in rows]
        out.write_text(json.dumps(old, indent=1) + "\n")
        return 0

    import torch

    from model.data.reports import write_reports
    from model.distill.data_plan import resolve_real_root
    from model.inference import Predictor

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_all = time.perf_counter()
    shipped = ROOT / "assets" / "checkpoints"
    current = {r: Predictor.from_dir(shipped / r, r) for r in ("teacher", "student")}
    real_root = resolve_real_root(None, not args.no_real)

    t0 = time.perf_counter()
    table, measured_on, reports = measure(current, args.measure_n)
    measure_s = time.perf_counter() - t0

    def reference(seed, case) -> str:
        return write_reports(case.truth, np.random.default_rng([seed, 1]))["standard"]

    experiments = {}
    for kind in [k.strip() for k in args.experiments.split(",") if k.strip()]:
        if kind == "missed":
            finding = args.finding or choose(table)
            planted = {
                "finding": finding,
                "kind": f"CXR phantoms with {finding}",
                "why": "the finding both current models miss most often in their reports (ties: larger lesion)"
                if args.finding is None
                else "chosen with --finding",
                "measured": table[finding],
            }
            reviewed = phantoms(REVIEW_SEED, args.reviews, finding)
            heldout = phantoms(HELDOUT_SEED, args.heldout, finding)
            texts = [reference(seed, case) for seed, case in reviewed]
        elif kind == "phrasing":
            planted = choose_phrasing(reports, current["teacher"].tokenizer)
            pair = tuple(planted["findings"])
            planted |= {"kind": f"CXR phantoms without {' or '.join(pair)}",
                        "why": "the pair sentence both current models write most often; the reviewers write "
                               "its two items in the other order, which no model report uses"}  # fmt: skip
            reviewed = phrasing_cases(REVIEW_SEED, args.reviews, pair)
            heldout = phrasing_cases(HELDOUT_SEED, args.heldout, pair)
            texts = [
                reviewer_text(reference(seed, case), pair, planted["rewrite"]) for seed, case in reviewed
            ]
            planted["example_review_text"] = texts[0]
        else:
            raise SystemExit(f"unknown experiment {kind!r}")
        experiments[kind] = run_experiment(kind, planted, reviewed, heldout, texts, current, args, real_root)

    result_doc = {
        "benchmark": "bench_update",
        "command": "nice -n 0 .venv/bin/python benchmarks/bench_update.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": args.threads,
        "cpu_cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "note": "beside a priority CPU training job on a shared 2-core CPU: wall times include that contention",
        "measure": {"on": measured_on, "per_finding": table, "wall_s": round(measure_s, 1)},
        "experiments": experiments,
        "targets": TARGETS,
        "total_wall_s": round(time.perf_counter() - t_all, 1),
    }
    write_result(args.out, result_doc, to_markdown)
    return 0


def to_markdown(r: dict) -> str:
    lines = [
        "# Learning from review: one update on 50 reviewed cases of a systematic error",
        "",
        f"`{r['command']}` ({r['threads']} thread(s) per process; {r['cpu_cores']} cores; load average "
        f"{r['load_average_before']} at the start). {r['note']}.",
        "",
        f"Targets per experiment: >= {100 * r['targets']['fixed_share']:.0f} % of held-out errors fixed (teacher "
        f"and student reports), phantom-test CE F1 drop <= {100 * r['targets']['max_f1_drop']:.0f} point, "
        f"update <= {r['targets']['max_wall_s']:.0f} s.",
    ]
    for kind, e in r["experiments"].items():
        pe, up = e["planted_error"], e["update"]
        c = up["config"]
        what = pe.get("finding") or f"'{pe['sentence']}' -> '{pe['rewrite']}'"
        lines += [
            "",
            f"## {kind}: {what}",
            "",
            f"Planted error on {pe['kind']} ({pe['why']}); {pe['reviews']} reviewed cases, {pe['heldout']} "
            "held-out cases of that kind never reviewed.",
            "",
            f"Update (recipe `{c.get('recipe', 'full')}`, teacher {c['teacher_epochs']} passes at lr "
            f"{c['teacher_lr']}, student {c['student_epochs']} at {c['student_lr']}, reviews x"
            f"{c.get('review_repeat', 1)}, replay {c['replay_ratio']} per review): version {up['version']} "
            f"{'promoted' if up['promoted'] else 'REJECTED by the gate'} in {up['wall_s']:.0f} s (load average "
            f"{up['load_average_before']} -> {up['load_average_after']}); trained on {up['trained_on_reviews']} "
            f"reviews; gate: {up['reviews_mode']}.",
            "",
        ]
        if kind == "missed":
            lines += ["| model | output | errors before | fixed | fixed share | newly wrong | recall before -> after |",
                      "|---|---|---|---|---|---|---|"]  # fmt: skip
            for role, d in e["fixed_on_heldout"].items():
                for out, x in d.items():
                    share = "-" if x["fixed_share"] is None else f"{100 * x['fixed_share']:.0f} %"
                    lines.append(f"| {role} | {out} | {x['errors_before']} | {x['fixed']} | {share} | "
                                 f"{x['newly_wrong']} | {x['recall_before']:.2f} -> {x['recall_after']:.2f} |")  # fmt: skip
        else:
            lines += ["| model | errors before | fixed | fixed share | findings lost | old sentence before -> after | "
                      "new phrasing before -> after |", "|---|---|---|---|---|---|---|"]  # fmt: skip
            for role, d in e["fixed_on_heldout"].items():
                x = d["report"]
                share = "-" if x["fixed_share"] is None else f"{100 * x['fixed_share']:.0f} %"
                lines.append(f"| {role} | {x['errors_before']} | {x['fixed']} | {share} | {x['findings_lost']} | "
                             f"{x['old_sentence_before']:.2f} -> {x['old_sentence_after']:.2f} | "
                             f"{x['rewrite_before']:.2f} -> {x['rewrite_after']:.2f} |")  # fmt: skip
        lines += [
            "",
            "| model | phantom-test CE micro F1 before | after | drop (points) |",
            "|---|---|---|---|",
        ]
        for role, d in e["phantom_test_ce_f1"].items():
            lines.append(f"| {role} | {d['before']:.3f} | {d['after']:.3f} | {d['drop_points']:+.1f} |")
        lines += ["", "Gate checks:", ""] + [f"- {x}" for x in up["checks"]]
        lines += ["", f"Targets met: {e['targets_met']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
