"""The stage-0 mask head (layer3) on held-out CT phantoms at an input size, CT scale and canvas fill (issue 10).

    .venv/bin/python benchmarks/bench_stage0_ct.py --size 128 --scale 1.0            # its training setting
    .venv/bin/python benchmarks/bench_stage0_ct.py --size 224 --scale 0.5714 --fill black   # CT at the 128 px
                                                       # pixel scale on a 224 canvas

Reads PRETRAIN/pretrain_state/module.safetensors (trunk + mask head; default runs/v5/pretrain). Prints the tumour
channel's pointing game (argmax cell touched by the tumour) and a 5-fold logistic regression of the tumour class on
(max logit, soft area) of that channel, beside the majority class. The canvas (``--scale`` < 1) is this
benchmark's own: the models' input rule once had it as an option, refuted by these rows
(benchmarks/results/retrain_v8.json) and removed.
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


def scale_window(size: int, scale: float) -> tuple[int, int]:
    """(offset, side) of the centred square an image fills on a ``size`` canvas at ``scale`` (1.0: all of it)."""
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    side = max(1, int(round(size * scale)))
    return (size - side) // 2, side


def canvas_input(image: np.ndarray, size: int, scale: float, fill: str) -> torch.Tensor:
    """(1, 1, size, size): the image resized to ``scale * size`` (the shared rule) and centred on a canvas
    filled with ``fill``."""
    from model.data.imaging import to_model_input

    off, side = scale_window(size, scale)
    win = torch.from_numpy(to_model_input(image, side))[None, None]
    if side == size:
        return win
    if fill == "edge":
        return F.pad(win, (off, size - off - side, off, size - off - side), mode="replicate")
    value = {"black": 0.0, "mean": float(win.mean()), "corner": float(win[..., :4, :4].mean())}[fill]
    out = torch.full((1, 1, size, size), value)
    out[..., off : off + side, off : off + side] = win
    return out


def window_cells(mask: np.ndarray, scale: float, grid: tuple[int, int]) -> torch.Tensor:
    """(h, w) bool: feature cells the mask touches, with the mask placed like its image (``scale``)."""
    off, side = scale_window(mask.shape[0], scale)
    canvas = torch.zeros(mask.shape)
    small = F.adaptive_max_pool2d(torch.from_numpy(mask).float()[None], side)[0]
    canvas[off : off + side, off : off + side] = small
    return F.adaptive_max_pool2d(canvas[None, None], grid)[0, 0] > 0


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
