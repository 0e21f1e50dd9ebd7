"""The KD student's set-up with one teacher trunk pass per image, against the old separate passes (issue 10).

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/bench_shared_trunk.py            # runs/v6/teacher
    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/bench_shared_trunk.py --n 40 --no-write

Builds a transfer set of ``--n`` training phantoms outside the labelled subset (labels stripped) and a
labelled set in the full profile's proportion (labelled_frac 0.3), then, in one process:
- before: ``decode_transfer_reports`` (trunk + greedy decode per transfer row) then ``cache_teacher_outputs``
  (trunk again over every row), as ``distill_student`` did;
- after: ``recipes.teacher_training_set`` (the trunk once per row, shared by the decode and the cache);
- what float16 features (``cache_features``' default) would have changed: reports that differ, and the
  max abs difference of the cached logits; the same on a tiny random-weight teacher.
Adds the figures to benchmarks/results/retrain_v6.json under "shared_trunk_pass" (the rest is kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from model.distill.config import DistillConfig  # noqa: E402
from model.distill.data_plan import DataConfig, split_labelled  # noqa: E402
from model.distill.feature_stage import cache_features  # noqa: E402
from model.distill.recipes import (  # noqa: E402
    decode_transfer_reports,
    load_samples,
    teacher_training_set,
    to_tensorset,
)
from model.distill.teacher_cache import cache_teacher_outputs  # noqa: E402
from model.distill.tensorset import TensorSet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "retrain_v6.json"
TARGET_FIELDS = ("findings_logits", "tumour_logits", "subtype_logits", "treatment_logits", "features",
                 "token_topk_logits")  # fmt: skip


def _copy(s: TensorSet) -> TensorSet:
    return s.subset(torch.arange(len(s)))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def separate_passes(teacher, tokenizer, labelled, transfer, data, dcfg) -> TensorSet:
    """``distill_student`` before the shared pass: decode the transfer set, then cache the teacher."""
    transfer = _copy(transfer)
    decode_transfer_reports(teacher, tokenizer, transfer, data, show_progress=False)
    return cache_teacher_outputs(teacher, TensorSet.concat([labelled, transfer]), dcfg, show_progress=False)


def target_diff(a: TensorSet, b: TensorSet) -> dict:
    """Max abs difference per cached teacher target (only where both decodes gave the same sequence)."""
    same = (a.ids == b.ids).flatten(1).all(1)  # (N,) rows whose sequences agree
    out = {"rows_compared": int(same.sum())}
    for name in TARGET_FIELDS:
        x, y = getattr(a.teacher, name), getattr(b.teacher, name)
        if x is None or y is None:
            continue
        out[name] = float((x[same].float() - y[same].float()).abs().max()) if same.any() else None
    out["topk_index_equal"] = bool(
        torch.equal(a.teacher.token_topk_index[same], b.teacher.token_topk_index[same])
    )
    return out


def fp16_effect(teacher, tokenizer, labelled, transfer, data, dcfg, ref: TensorSet) -> dict:
    """What float16 features (cache_features' default) would change against the float32 shared pass."""
    rows = TensorSet.concat([labelled, transfer])
    feats = cache_features(teacher, rows, show_progress=False).float()  # float16-rounded trunk output
    t = _copy(transfer)
    decode_transfer_reports(teacher, tokenizer, t, data, show_progress=False, features=feats[len(labelled) :])
    train = cache_teacher_outputs(teacher, TensorSet.concat([labelled, t]), dcfg, show_progress=False,
                                  features=feats)  # fmt: skip
    n = len(labelled)
    changed = int((~(train.ids[n:] == ref.ids[n:]).flatten(1).all(1)).sum())
    return {
        "reports_changed": changed,
        "of": len(transfer),
        "cached_targets_max_abs_diff": target_diff(train, ref),
    }


def tiny_case(dcfg: DistillConfig) -> dict:
    from test_recipes import TEXTS
    from tiny_training import WORDS, tiny_model, tiny_tensorset

    from model.networks import build_tokenizer

    tokenizer = build_tokenizer([" ".join(WORDS[i:] + WORDS[:i]) + "." for i in range(len(WORDS))] + TEXTS)
    teacher, _ = tiny_model("tiny-teacher", len(tokenizer), seed=0, spread=True)
    teacher.eval()
    labelled, transfer = tiny_tensorset(24, seed=0), tiny_tensorset(40, seed=1).strip_labels()
    data = DataConfig(data_dir="unused", max_len=labelled.ids.shape[-1])
    ref = separate_passes(teacher, tokenizer, labelled, transfer, data, dcfg)
    shared = teacher_training_set(
        teacher, tokenizer, labelled, _copy(transfer), data, dcfg, show_progress=False
    )
    return {
        "model": "tiny-teacher (random weights, spread decoder), 24 labelled + 40 transfer rows of 32 px",
        "float32_shared_vs_separate": {"ids_equal": bool(torch.equal(shared.ids, ref.ids))}
        | {"cached_targets_max_abs_diff": target_diff(shared, ref)},
        "float16_features": fp16_effect(teacher, tokenizer, labelled, transfer, data, dcfg, ref),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="runs/v6/teacher")
    ap.add_argument("--data-dir", default="runs/v6/data")
    ap.add_argument("--n", type=int, default=200, help="transfer rows")
    ap.add_argument("--labelled-frac", type=float, default=0.3, help="labelled rows = n * frac / (1 - frac)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from model.checkpoints import load_checkpoint

    threads = torch.get_num_threads()
    dcfg = DistillConfig()
    teacher, tokenizer, card, _ = load_checkpoint(ROOT / args.teacher)
    teacher.eval()
    dc = card["training"]["data_config"]
    data = DataConfig(data_dir=str(ROOT / args.data_dir), image_size=dc["image_size"], max_len=dc["max_len"])
    lab_all, rest = split_labelled(load_samples(data, "train"), args.labelled_frac, data.seed)
    n_lab = round(args.n * args.labelled_frac / (1 - args.labelled_frac))
    labelled = to_tensorset(lab_all[:n_lab], tokenizer, data, 0)
    transfer = to_tensorset(rest[: args.n], tokenizer, data, 2).strip_labels()

    record: dict = {"load_before": _load()}
    t = time.perf_counter()
    ref = separate_passes(teacher, tokenizer, labelled, transfer, data, dcfg)
    record["before_s"] = round(time.perf_counter() - t, 1)
    record["load_between"] = _load()
    t = time.perf_counter()
    shared = teacher_training_set(
        teacher, tokenizer, labelled, _copy(transfer), data, dcfg, show_progress=False
    )
    record["after_s"] = round(time.perf_counter() - t, 1)
    record["load_after"] = _load()
    print(record, flush=True)

    out = {
        "what": "issue 10: the KD student's set-up (sequence-level KD decode of the transfer rows + teacher cache "
        "of every row) with the teacher's trunk run once per image (recipes.teacher_training_set, float32 "
        "features shared by both) against the separate passes distill_student made before",
        "command": "OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/bench_shared_trunk.py "
        f"--teacher {args.teacher} --n {args.n}",
        "rows": {"transfer": len(transfer), "labelled": len(labelled), "image_size": data.image_size},
        "machine": {
            "platform": platform.platform(),
            "torch_threads": threads,
            "cpus": os.cpu_count(),
            "load_average_1_5_15": {k: v for k, v in record.items() if k.startswith("load")},
            "note": "shared 2-core CPU, another engineer's training "
            "job at high priority beside it; this ran at nice 15",
        },  # fmt: skip
        "before_s": record["before_s"],
        "after_s": record["after_s"],
        "speedup": round(record["before_s"] / record["after_s"], 2),
        "per_transfer_row_s": {
            "before": round(record["before_s"] / args.n, 3),
            "after": round(record["after_s"] / args.n, 3),
        },  # fmt: skip
        "identical": {
            "ids_equal": bool(torch.equal(shared.ids, ref.ids)),
            "seq_len_equal": bool(torch.equal(shared.seq_len, ref.seq_len)),
            "cached_targets_max_abs_diff": target_diff(shared, ref),
        },  # fmt: skip
        "student_set_carries_teacher_features": shared.features is not None,
    }
    out["float16_features_instead"] = fp16_effect(teacher, tokenizer, labelled, transfer, data, dcfg, ref)
    out["tiny_model"] = tiny_case(dataclasses.replace(dcfg, top_k=4, hint_size=2))
    print(json.dumps(out, indent=1))
    if not args.no_write:
        doc = json.loads(RESULTS.read_text())
        doc["shared_trunk_pass"] = out
        RESULTS.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
