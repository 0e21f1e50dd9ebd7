"""`meddistill generate-data`: write a phantom dataset (images, masks, labels, annotation.json).

Examples:
  meddistill generate-data --out data/phantoms --n-cxr 800 --n-ct 200 --seed 0
  meddistill generate-data --out data/phantoms --n-cxr 4000 --n-ct 1000 --workers 2 --size 256

The set is identical for a seed whatever ``--workers``. A folder that is not empty and was not
written by this command is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-cxr", type=int, default=800, help="chest X-ray phantoms")
    p.add_argument("--n-ct", type=int, default=200, help="chest CT slice phantoms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--test-frac", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder that is not ours")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from model.data.generate import DatasetDirError, generate_dataset

    try:
        info = generate_dataset(
            args.out,
            n_cxr=args.n_cxr,
            n_ct=args.n_ct,
            seed=args.seed,
            size=args.size,
            val_frac=args.val_frac,
            test_frac=args.test_frac,
            workers=max(1, args.workers),
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (DatasetDirError, ValueError) as err:
        print(f"meddistill generate-data: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(
        f"{m} " + "/".join(str(c[s]) for s in ("train", "val", "test")) for m, c in info["counts"].items()
    )
    print(
        f"wrote {args.n_cxr + args.n_ct} phantoms to {args.out} (train/val/test: {counts}) "
        f"in {info['seconds']:.1f} s = {info['phantoms_per_s']:.1f} phantoms/s"
    )
    return 0
