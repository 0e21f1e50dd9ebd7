"""Contact sheet of 16 phantoms (mixed chest X-ray and CT), each captioned with its findings.

  .venv/bin/python benchmarks/phantom_contact_sheet.py [--out assets/docs/phantoms.png] [--seed 0]

Writes a 4 x 4 grid for the README: what the phantom engine draws, with its ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.data.phantom import make_case  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "assets" / "docs" / "phantoms.png"


def caption(case) -> str:
    t = case.truth
    if t.modality == "CT":
        f = next(iter(t.findings), None)
        if f is None:
            return "CT: no tumour"
        return f"CT: {t.tumour} {f.character}\n{f.side} {f.zone}, {f.size_mm:.0f} mm"
    if not t.findings:
        return "CXR: normal"
    parts = []
    for f in t.findings:
        name = f.name.replace("pleural_", "").replace("_", " ")
        bits = [
            f.side[0].upper() if f.side in ("left", "right") else "",
            f"CTR {f.ratio:.2f}" if f.ratio else "",
        ]
        if f.name == "nodule":
            bits.append(f"{f.size_mm:.0f} mm")
        parts.append(" ".join(b for b in [name, *bits] if b))
    return "CXR: " + "\n".join(parts[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    # 11 chest X-rays and 5 CT slices; seeds picked in order so the sheet is reproducible
    modalities = ["CXR", "CXR", "CT", "CXR", "CXR", "CT", "CXR", "CXR", "CXR", "CT", "CXR", "CXR", "CT", "CXR",
                  "CT", "CXR"]  # fmt: skip
    fig, axes = plt.subplots(4, 4, figsize=(12, 13.2), dpi=100)
    for i, (ax, mod) in enumerate(zip(axes.flat, modalities, strict=True)):
        case = make_case(args.seed + 101 * i + 7, mod)
        ax.imshow(case.image, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
        for m in case.masks.values():
            ax.contour(m.astype(np.float32), levels=[0.5], colors=["#ff5a36"], linewidths=0.6, alpha=0.7)
        ax.set_title(caption(case), fontsize=9, loc="left")
        ax.axis("off")
    fig.suptitle(
        "MedDistill phantoms: chest X-ray and CT with ground truth (outlines = finding masks)", fontsize=11
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
