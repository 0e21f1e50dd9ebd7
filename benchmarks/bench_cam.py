"""Grad-CAM layer x method choice by pointing game on the VALIDATION phantoms (issue 10).

For the shipped teacher and student, every CAM layer the trunk offers (``gradcam.CAM_LAYERS``:
ResNet-50 ``layer4`` stride 32 vs ``layer3`` stride 16; MobileNetV3 ``features.12`` vs ``features.8``)
and every method in GradCAM / GradCAM++ / HiResCAM / LayerCAM, on the validation split of the shipped
run (re-rendered from its seed, ``model.evaluate.phantom_cases``), with the evaluation's target rule
(present finding with the largest mask on CXR, the true tumour class on CT; normal studies have no
mask and are skipped):

- pointing game (``localization.pointing_hit``, 3 % tolerance), a flat map counted as a miss;
- IoU of the map thresholded at 0.5 x max (``rel:0.5``), a flat map scoring 0;
- flat-map rate (``gradcam.is_flat``: no localised positive evidence).

Models with a lesion head (``head_pool`` "lesion") also offer the "lesion" method: their own lesion
map (``gradcam.lesion_map``, last trunk stage only), scored the same way.

The method for both models (the page and the evaluation use one) is the one with the best mean pointing
game over the models, each model at its best layer for that method (ties: IoU); that layer is the
model's default. The test split is never looked at.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cam.py --cxr 96 --ct 32     # ~6 min, 1 thread
    -> benchmarks/results/cam.json + cam.md
    ... --dirs teacher=runs/v9/teacher student=runs/v9/student      (checkpoints not yet installed)
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

from result_files import f3 as _f  # noqa: E402
from result_files import write_result  # noqa: E402

from model.evaluate import localization  # noqa: E402
from model.explain.gradcam import LESION_METHOD, cam_layers, explain, methods_for  # noqa: E402
from model.types import TUMOUR_CLASSES  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("teacher", "student")
METHODS = ("gradcam", "gradcam++", "hirescam", "layercam")


def cam_target(case) -> tuple[str, np.ndarray] | None:
    """The evaluation's rule (``run._cam_target``) on a case with a mask; None for normal studies."""
    if case.study.modality == "CT":
        t = case.truth.tumour
        return (
            (f"tumour:{t}", case.masks["tumour"])
            if t in TUMOUR_CLASSES[1:] and "tumour" in case.masks
            else None
        )
    present = [f.name for f in case.truth.findings if f.name in case.masks]
    if not present:
        return None
    name = max(present, key=lambda n: int(case.masks[n].sum()))
    return f"finding:{name}", case.masks[name]


def chance(cases) -> dict:
    """What no model reaches by looking: a uniformly random point (expected hit = share of the image the
    dilated mask covers) and the image centre, under the same pointing-game tolerance."""
    from scipy import ndimage

    shares, centre = [], []
    for _case, _, mask in cases:
        h, w = mask.shape
        tol = round(localization.DEFAULT_TOLERANCE_FRAC * max(h, w))
        grown = ndimage.binary_dilation(mask, structure=np.ones((2 * tol + 1, 2 * tol + 1), bool))
        shares.append(float(grown.mean()))
        centre.append(bool(grown[h // 2, w // 2]))
    return {"random_point": float(np.mean(shares)), "centre_point": float(np.mean(centre)), "n": len(cases)}


def _block(hits, ious, flats) -> dict:
    return {
        "pointing_game": float(np.mean(hits)) if hits else None,
        "iou": float(np.mean(ious)) if ious else None,
        "flat_rate": float(np.mean(flats)) if flats else None,
        "n": len(hits),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cxr", type=int, default=96, help="validation CXR cases with a mask")
    ap.add_argument("--ct", type=int, default=32, help="validation CT cases with a tumour")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--methods", nargs="*", default=list(METHODS), help=f"CAM methods tried (of {METHODS})")
    ap.add_argument(
        "--dirs", nargs="*", default=[], metavar="MODEL=DIR", help="checkpoint dirs (default: shipped)"
    )
    ap.add_argument("--out", default=str(RESULTS / "cam.json"))
    ap.add_argument("--chance-only", action="store_true", help="add the chance baseline to an existing --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    from model.evaluate.phantom_cases import SHIPPED_RUN, split_cases
    from model.inference import Predictor, shipped_checkpoint

    cases = []
    for modality, want in (("CXR", args.cxr), ("CT", args.ct)):
        got = 0
        for c in split_cases("val", modality):
            if got >= want:
                break
            t = cam_target(c)
            if t is not None:
                cases.append((c, *t))
                got += 1

    if args.chance_only:
        result = json.loads(Path(args.out).read_text())
        result["chance"] = chance(cases)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(to_markdown(result))
        print(to_markdown(result))
        return 0
    dirs = dict(kv.split("=", 1) for kv in args.dirs)
    predictors = {m: Predictor.from_dir(dirs.get(m) or shipped_checkpoint(m), m) for m in args.models}
    grid = {}
    rows = {m: {} for m in predictors}  # model -> "layer|method" -> lists
    per_target = {m: {} for m in predictors}
    for m, p in predictors.items():
        layers = cam_layers(p.model)
        grid[m] = {
            layer: f"{p.image_size // stride} x {p.image_size // stride} (stride {stride})"
            for layer, stride in layers.items()
        }
        combos = [(layer, method) for layer in layers for method in args.methods]
        if LESION_METHOD in methods_for(p.model):
            combos.append((next(iter(layers)), LESION_METHOD))  # the lesion map sits on the last stage
        for layer, method in combos:
            key = f"{layer}|{method}"
            hits, ious, flats, kinds = [], [], [], []
            for c, target, mask in cases:
                e = explain(p, c.study, target, method=method, context=c.truth.context, layer=layer)
                hit = (not e.flat) and localization.pointing_hit(e.heatmap, mask)
                iou = 0.0 if e.flat else localization.mask_iou(e.heatmap, mask)
                hits.append(bool(hit))
                ious.append(float(iou))
                flats.append(bool(e.flat))
                kinds.append(target.split(":")[1] if target.startswith("finding") else "tumour")
            rows[m][key] = _block(hits, ious, flats)
            per_target[m][key] = {
                k: _block(
                    [h for h, kk in zip(hits, kinds, strict=True) if kk == k],
                    [i for i, kk in zip(ious, kinds, strict=True) if kk == k],
                    [f for f, kk in zip(flats, kinds, strict=True) if kk == k],
                )
                for k in sorted(set(kinds))
            }
            print(m, key, rows[m][key], f"{time.perf_counter() - t0:.0f}s", flush=True)

    def rank(b: dict) -> tuple:
        return (b["pointing_game"] or 0.0, b["iou"] or 0.0, -(b["flat_rate"] or 0.0))

    best = {m: max(r, key=lambda k: rank(r[k])) for m, r in rows.items()}
    offered = [
        k
        for k in (*args.methods, LESION_METHOD)
        if all(any(key.endswith(f"|{k}") for key in r) for r in rows.values())
    ]

    def layer_for(m: str, method: str) -> str:
        return max((k for k in rows[m] if k.endswith(f"|{method}")), key=lambda k: rank(rows[m][k])).split(
            "|"
        )[0]

    method_score = {
        method: float(
            np.mean([rows[m][f"{layer_for(m, method)}|{method}"]["pointing_game"] or 0.0 for m in rows])
        )
        for method in offered
    }
    chosen_method = max(
        offered,
        key=lambda k: (
            method_score[k],
            np.mean([rows[m][f"{layer_for(m, k)}|{k}"]["iou"] or 0.0 for m in rows]),
        ),
    )
    best_layer = {m: layer_for(m, chosen_method) for m in rows}
    baseline = {
        m: rows[m].get(f"{next(iter(cam_layers(predictors[m].model)))}|gradcam") or _block([], [], [])
        for m in rows
    }
    chosen = {m: rows[m][f"{best_layer[m]}|{chosen_method}"] for m in rows}
    result = {
        "command": f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cam.py --cxr {args.cxr} --ct {args.ct}"
        + (f" --methods {' '.join(args.methods)}" if args.methods != list(METHODS) else "")
        + (f" --dirs {' '.join(args.dirs)}" if args.dirs else ""),
        "checkpoints": {m: str(dirs.get(m) or shipped_checkpoint(m)) for m in predictors},
        "data": {
            "split": "val",
            "run": SHIPPED_RUN,
            "n_cases": len(cases),
            "n_cxr": sum(c.study.modality == "CXR" for c, _, _ in cases),
            "n_ct": sum(c.study.modality == "CT" for c, _, _ in cases),
            "targets": "present finding with the largest mask (CXR), true tumour class (CT); normals skipped",
        },
        "protocol": {
            **localization.localization_protocol(),
            "flat": "gradcam.is_flat (normalised map max < 0.5): counted as a pointing miss and IoU 0",
            "choice": "method: best mean pointing game over the models (ties: IoU), each model at its best layer "
            "for that method; that layer is the model's default",
        },
        "feature_grid": grid,
        "results": rows,
        "per_target": per_target,
        "best_per_model": best,
        "chosen": {"layer": best_layer, "method": chosen_method, "metrics": chosen},
        "baseline_layer4_gradcam": baseline,
        "chance": chance(cases),
        "method_mean_pointing_game": method_score,
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
    }
    write_result(args.out, result, to_markdown)
    return 0


def to_markdown(r: dict) -> str:
    d = r["data"]
    lines = [
        "# Grad-CAM layer x method on the validation phantoms",
        "",
        f"`{r['command']}` ({r['wall_s']} s). {d['n_cases']} validation cases with a mask ({d['n_cxr']} CXR, "
        f"{d['n_ct']} CT). Flat maps count as misses.",
        "",
        "| model | layer | grid | method | pointing game | IoU | flat rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, rows in r["results"].items():
        for key, b in rows.items():
            layer, method = key.split("|")
            lines.append(f"| {m} | {layer} | {r['feature_grid'][m][layer]} | {method} | {_f(b['pointing_game'])} | "
                         f"{_f(b['iou'])} | {_f(b['flat_rate'])} |")  # fmt: skip
    if r.get("chance"):
        lines += ["", f"Chance: a uniformly random point hits {_f(r['chance']['random_point'])}, the image centre "
                  f"{_f(r['chance']['centre_point'])} (same cases, same tolerance)."]  # fmt: skip
    ch = r["chosen"]
    lines += ["", f"Chosen: method **{ch['method']}**, layers {ch['layer']}.", ""]
    for m, b in ch["metrics"].items():
        base = r["baseline_layer4_gradcam"][m]
        ratio = (b["pointing_game"] / base["pointing_game"]) if base["pointing_game"] else None
        lines.append(
            f"- {m}: pointing game {_f(b['pointing_game'])} vs {_f(base['pointing_game'])} with the last stage + "
            f"gradcam (x{_f(ratio)}), IoU {_f(b['iou'])} vs {_f(base['iou'])}, flat {_f(b['flat_rate'])} vs "
            f"{_f(base['flat_rate'])}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
