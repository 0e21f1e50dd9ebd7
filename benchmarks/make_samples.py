"""Write the shipped sample studies into assets/samples (phantoms with ground truth + masks).

    .venv/bin/python benchmarks/make_samples.py

Picks phantom seeds whose truth shows a spread of findings (normal, cardiomegaly + effusion, nodule,
pneumothorax, consolidation; CT none / benign / malignant), writes for each ``NAME.png`` (8-bit),
``NAME.json`` (CaseTruth + reports + rulebook treatments) and ``NAME_mask.png`` (bit mask), and
``index.json``. Real DICOM comes from pydicom's bundled CT_small.dcm at run time (not copied).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from model.types import FINDINGS

OUT = Path(__file__).resolve().parents[1] / "assets" / "samples"

#: sample id -> (modality, predicate on the truth, title)
WANTED = {
    "cxr_cardiomegaly": ("CXR", lambda t: {"cardiomegaly"} <= _names(t), "CXR phantom: cardiomegaly"),
    "cxr_effusion": ("CXR", lambda t: {"pleural_effusion"} <= _names(t), "CXR phantom: pleural effusion"),
    "cxr_nodule": ("CXR", lambda t: {"nodule"} <= _names(t), "CXR phantom: nodule"),
    "cxr_pneumothorax": ("CXR", lambda t: {"pneumothorax"} <= _names(t), "CXR phantom: pneumothorax"),
    "cxr_consolidation": ("CXR", lambda t: {"consolidation"} <= _names(t), "CXR phantom: consolidation"),
    "cxr_normal": ("CXR", lambda t: not t.findings, "CXR phantom: normal"),
    "ct_malignant": ("CT", lambda t: t.tumour == "malignant", "CT phantom: malignant tumour"),
    "ct_benign": ("CT", lambda t: t.tumour == "benign", "CT phantom: benign tumour"),
    "ct_none": ("CT", lambda t: t.tumour == "none", "CT phantom: no tumour"),
}


def _names(truth) -> set[str]:
    return {f.name for f in truth.findings}


def _mask_bits(case, modality: str) -> np.ndarray:
    bits = np.zeros(case.image.shape, np.uint8)
    names = ["tumour"] if modality == "CT" else list(FINDINGS)
    for i, n in enumerate(names):
        if n in case.masks:
            bits |= (np.asarray(case.masks[n], bool).astype(np.uint8) << i).astype(np.uint8)
    return bits


def main(argv: list[str] | None = None) -> int:
    from model.data.phantom import render_case, sample_truth

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index, used = [], set()
    for sid, (modality, want, title) in WANTED.items():
        for seed in range(10_000, 12_000):
            truth = sample_truth(np.random.default_rng(seed), modality, sid)
            if (modality, seed) not in used and want(truth):
                used.add((modality, seed))
                break
        else:
            print(f"skip {sid}: no seed found")
            continue
        case = render_case(truth, seed, size=args.size)
        Image.fromarray((np.clip(case.image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            args.out / f"{sid}.png"
        )
        Image.fromarray(_mask_bits(case, modality)).save(args.out / f"{sid}_mask.png")
        record = case.truth.to_dict() | {"seed": seed, "pixel_spacing": list(case.pixel_spacing)}
        try:
            from model.data.reports import write_reports

            record["reports"] = write_reports(case.truth, np.random.default_rng(seed))
        except ImportError:
            pass
        try:
            from model.data.formulary import suggest_treatments

            record["treatments"] = [
                t.__dict__
                for t in suggest_treatments(case.truth.findings, case.truth.tumour, case.truth.context)
            ]
        except ImportError:
            pass
        (args.out / f"{sid}.json").write_text(json.dumps(record, indent=1))
        index.append(
            {"id": sid, "title": title, "modality": modality, "image": f"{sid}.png", "truth": f"{sid}.json",
             "mask": f"{sid}_mask.png", "seed": seed}
        )  # fmt: skip
        print(f"{sid}: seed {seed}")
    (args.out / "index.json").write_text(json.dumps(index, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
