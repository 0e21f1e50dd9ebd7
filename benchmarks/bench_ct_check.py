"""CT check of a teacher (issue 10): tumour-head accuracy and lesion-map pointing on held-out CT phantoms.

    .venv/bin/python benchmarks/bench_ct_check.py CHECKPOINT [--n 90] [--threads 1]

CHECKPOINT: a checkpoint folder, or a ``stage_*/best.safetensors`` snapshot of a lesion-head ResNet-50 teacher
at 224 px. ``--n`` CT phantoms from the pre-training stream's validation seeds (no training split holds them),
each through the shared resize rule at the model's input size. Prints accuracy beside the majority
class, malignant / benign recall, the predicted-class counts and, for a lesion head, how often the argmax of its
tumour channel falls in a cell the tumour touches (pointing game).
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


def load(path: Path):
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from model.commands.train import resolve_preset
        from model.networks import build_model

        state = load_file(str(path))
        vocab = next(v for k, v in state.items() if k.endswith("wte.weight")).shape[0]
        base = resolve_preset("resnet50-4l")
        cfg = dataclasses.replace(
            base, head_pool="lesion", image_size=224, input_norm="per_image", vocab_size=vocab,
            max_len=max(base.max_len, 104),
        )  # fmt: skip
        model = build_model(cfg)
        model.load_state_dict(state)
        return model
    from model.checkpoints import load_checkpoint

    return load_checkpoint(path)[0]


def mask_cells(mask: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """(h, w) bool: feature cells the mask touches."""
    return F.adaptive_max_pool2d(torch.from_numpy(mask).float()[None, None], grid)[0, 0] > 0


def main() -> int:
    from model.data.generate import case_seed
    from model.data.imaging import to_model_input
    from model.data.phantom import make_case
    from model.distill.pretrain import PRETRAIN_SET_SEED
    from model.types import LESION_CHANNELS, TUMOUR_CLASSES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--n", type=int, default=90)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.checkpoint).eval()
    size = model.cfg.image_size
    ys, preds, hits = [], [], []
    with torch.inference_mode():
        for i in range(args.n):
            case = make_case(
                case_seed(PRETRAIN_SET_SEED + 1, "CT", i), "CT", size=256
            )  # stream validation seeds
            x = torch.from_numpy(to_model_input(case.image, size))[None, None]
            heads = model.forward_heads(model.forward_features(x))
            ys.append(TUMOUR_CLASSES.index(case.truth.tumour))
            preds.append(int(heads.tumour_logits.argmax()))
            if heads.lesion_logits is not None and "tumour" in case.masks:
                les = heads.lesion_logits[0, LESION_CHANNELS.index("tumour")]
                r, q = divmod(int(les.argmax()), les.shape[1])
                hits.append(bool(mask_cells(case.masks["tumour"], tuple(les.shape))[r, q]))
    y, pr = np.array(ys), np.array(preds)
    print(
        f"{args.checkpoint}: n {args.n} accuracy {float((pr == y).mean()):.3f} "
        f"(majority {np.bincount(y).max() / args.n:.3f}) malignant recall {float((pr[y == 2] == 2).mean()):.3f} "
        f"benign recall {float((pr[y == 1] == 1).mean()):.3f} pred counts {np.bincount(pr, minlength=3).tolist()} "
        f"lesion pointing {round(float(np.mean(hits)), 3) if hits else None}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
