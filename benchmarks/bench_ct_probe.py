"""Does a teacher's trunk see the phantom CT tumour? Linear probes on its features (issue 10 diagnosis).

    .venv/bin/python benchmarks/bench_ct_probe.py assets/checkpoints/teacher runs/v6/teacher --n 240
        -> benchmarks/results/ct_probe.json

``--size`` probes at another input size (the trunk is fully convolutional); ``--pretrain`` loads a stage-0
``pretrain.safetensors`` into the checkpoint first (probing the pre-trained trunk itself). For each ResNet-50 checkpoint: ``--n`` held-out CT phantoms from the pre-training stream's validation seeds
(``model.distill.pretrain.stream_case``: no training split contains them), rendered at 256 px and resized to
the checkpoint's input size. Features: layer4 global average (what the heads read), layer4 global max, layer3
global max (stride 16). Logistic regression, 5-fold cross-validation, features standardised: 3-class accuracy
(none / benign / malignant) and malignant-vs-rest accuracy, beside the majority baselines and the checkpoint's
own tumour head. A probe at its baseline means the trunk's features do not carry the class, whatever the head.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def probe(ckpt: Path, n: int, size: int | None = None, pretrain: Path | None = None) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from model.checkpoints import load_checkpoint
    from model.distill.pretrain import stream_case, trunk_stages

    model, _, _, _ = load_checkpoint(ckpt)
    if pretrain is not None:  # the stage-0 trunk in this checkpoint's architecture
        from model.distill.pretrain import load_pretrained

        load_pretrained(model, pretrain)
    size = size or model.cfg.image_size
    model.eval()
    if model.cfg.encoder != "resnet50":
        raise SystemExit(f"{ckpt}: the probe reads ResNet-50 stages; this checkpoint has {model.cfg.encoder}")
    feats: dict[str, list] = {"layer4_avg": [], "layer4_max": [], "layer3_max": []}
    y, head = [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(n):
            case = stream_case(i, 0, 1.0, size, "val")
            mid, f4 = trunk_stages(model, case["image"][None])
            feats["layer4_avg"].append(f4.mean((2, 3))[0].numpy())
            feats["layer4_max"].append(f4.amax((2, 3))[0].numpy())
            feats["layer3_max"].append(mid.amax((2, 3))[0].numpy())
            y.append(int(case["tumour"]))
            head.append(int(model.forward_heads(f4).tumour_logits.argmax()))
    y_arr = np.array(y)
    out = {
        "checkpoint": str(ckpt) + (f" + {pretrain}" if pretrain else ""),
        "image_size": size,
        "n": n,
        "class_counts": dict(
            zip(("none", "benign", "malignant"), np.bincount(y_arr, minlength=3).tolist(), strict=True)
        ),
        "baseline_3class": round(float(np.bincount(y_arr).max() / n), 4),
        "baseline_malignant_vs_rest": round(float(max((y_arr == 2).mean(), 1 - (y_arr == 2).mean())), 4),
        "head_accuracy": round(float((np.array(head) == y_arr).mean()), 4),
        "probes": {},
        "wall_s": None,
    }
    for name, rows in feats.items():
        x = np.array(rows)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        clf = LogisticRegression(C=0.01, max_iter=3000)
        out["probes"][name] = {
            "acc_3class": round(float(cross_val_score(clf, x, y_arr, cv=5).mean()), 4),
            "acc_malignant_vs_rest": round(float(cross_val_score(clf, x, y_arr == 2, cv=5).mean()), 4),
        }
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--n", type=int, default=240)
    p.add_argument("--size", type=int, default=None, help="input size (default: each checkpoint's own)")
    p.add_argument(
        "--pretrain", type=Path, default=None, help="load this stage-0 pretrain.safetensors into each checkpoint first"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ct_probe.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = [probe(c, args.n, args.size, args.pretrain) for c in args.checkpoints]
    for r in results:
        print(json.dumps(r))
    doc = {"command": " ".join(["benchmarks/bench_ct_probe.py", *sys.argv[1:]]), "results": results}
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
