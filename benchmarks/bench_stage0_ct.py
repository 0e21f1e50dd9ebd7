"""The stage-0 mask head (layer3) on held-out CT phantoms at an input size, CT scale and canvas fill (issue 10).

    .venv/bin/python benchmarks/bench_stage0_ct.py --size 128 --scale 1.0            # its training setting
    .venv/bin/python benchmarks/bench_stage0_ct.py --size 224 --scale 0.5714 --fill black   # CT at the 128 px
                                                       # pixel scale on a 224 canvas (ModelConfig.ct_scale)

Reads PRETRAIN/pretrain_state/module.safetensors (trunk + mask head; default runs/v5/pretrain). Prints the tumour
channel's pointing game (argmax cell touched by the tumour) and a 5-fold logistic regression of the tumour class on
(max logit, soft area) of that channel, beside the majority class.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ct_check import window_cells  # noqa: E402


def canvas_input(image: np.ndarray, size: int, scale: float, fill: str) -> torch.Tensor:
    from model.data.imaging import scale_window, to_model_input

    x = torch.from_numpy(to_model_input(image, size, scale))[None, None]
    if scale >= 1 or fill == "black":
        return x
    off, side = scale_window(size, scale)
    win = x[..., off : off + side, off : off + side]
    if fill == "edge":
        return F.pad(win, (off, size - off - side, off, size - off - side), mode="replicate")
    value = float(win.mean()) if fill == "mean" else float(win[..., :4, :4].mean())  # "corner"
    out = torch.full_like(x, value)
    out[..., off : off + side, off : off + side] = win
    return out


def main() -> int:
    from safetensors.torch import load_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from model.commands.train import resolve_preset
    from model.data.generate import case_seed
    from model.data.phantom import make_case
    from model.distill.pretrain import PRETRAIN_SET_SEED, PretrainModule, trunk_stages
    from model.networks import build_model
    from model.types import LESION_CHANNELS, TUMOUR_CLASSES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain", type=Path, default=ROOT / "runs" / "v5" / "pretrain")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--fill", choices=("black", "mean", "edge", "corner"), default="black")
    p.add_argument("--n", type=int, default=90)
    args = p.parse_args()
    torch.set_num_threads(1)
    state = load_file(str(args.pretrain / "pretrain_state" / "module.safetensors"))
    vocab = next(v for k, v in state.items() if k.endswith("wte.weight")).shape[0]
    cfg = dataclasses.replace(
        resolve_preset("resnet50-4l"),
        head_pool="avgmax",
        image_size=128,
        input_norm="per_image",
        vocab_size=vocab,
    )
    module = PretrainModule(build_model(cfg))
    module.load_state_dict(state)
    module.eval()
    ch = LESION_CHANNELS.index("tumour")
    hits, ys, feats = [], [], []
    with torch.inference_mode():
        for i in range(args.n):
            case = make_case(case_seed(PRETRAIN_SET_SEED + 1, "CT", i), "CT", size=256)
            mid, _ = trunk_stages(module.model, canvas_input(case.image, args.size, args.scale, args.fill))
            seg = module.seg(mid)[0, ch]
            ys.append(TUMOUR_CLASSES.index(case.truth.tumour))
            feats.append([float(seg.max()), float(torch.sigmoid(seg).sum())])
            if "tumour" in case.masks:
                r, q = divmod(int(seg.argmax()), seg.shape[1])
                hits.append(bool(window_cells(case.masks["tumour"], args.scale, tuple(seg.shape))[r, q]))
    x, y = np.array(feats), np.array(ys)
    acc = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=5).mean()
    print(
        f"fill {args.fill} size {args.size} scale {args.scale:.3f}: tumour pointing {np.mean(hits):.3f} "
        f"(n {len(hits)}); 3-class from (max, area) {acc:.3f} (majority {np.bincount(y).max() / len(y):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
