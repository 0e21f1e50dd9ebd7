"""Write the shipped sample studies into assets/samples (phantoms with ground truth + masks).

    .venv/bin/python benchmarks/make_samples.py

Issue 10 item 7: the Compare page should open on cases a reader can check by eye. So each *textbook*
sample shows one clear thing: a CXR with exactly one finding, moderate or severe and not subtle (one per
finding of ``FINDINGS``; cardiomegaly severe, ratio >= 0.60; a nodule >= 15 mm), a normal CXR, and a
CT slice per tumour class (none; benign >= 12 mm; malignant >= 30 mm). A few *subtle* samples (one finding, flagged
``subtle`` in the truth) show what the models are expected to miss. The seeds come from a fixed,
ordered scan of ``sample_truth`` (no rendering), so the same code gives the same samples.

For each sample it writes ``NAME.png`` (8-bit), ``NAME.json`` (CaseTruth + reports + rulebook
treatments) and ``NAME_mask.png`` (bit mask), and ``index.json`` (textbook samples first, each entry with
``"kind": "textbook" | "subtle"``). Real DICOM comes from pydicom's bundled CT_small.dcm at run time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from model.types import FINDINGS

OUT = Path(__file__).resolve().parents[1] / "assets" / "samples"
SEEDS = range(10_000, 40_000)  # scanned in order; the first seed that fits wins

#: finding -> (sample id, title words); the ids of the first nine samples are kept (tests, benchmarks)
FINDING_SAMPLES = {
    "cardiomegaly": ("cxr_cardiomegaly", "cardiomegaly"),
    "pleural_effusion": ("cxr_effusion", "pleural effusion"),
    "pneumothorax": ("cxr_pneumothorax", "pneumothorax"),
    "nodule": ("cxr_nodule", "nodule"),
    "consolidation": ("cxr_consolidation", "consolidation"),
    "edema": ("cxr_edema", "pulmonary oedema"),
    "atelectasis": ("cxr_atelectasis", "atelectasis"),
}
SUBTLE = ("pleural_effusion", "nodule", "pneumothorax")  # one subtle sample each
#: a floor above "moderate" where moderate starts at a size hard to see at the models' input size
CLEAR_MM = {"nodule": 15.0}


def _only(truth, name: str):
    """The truth's single finding if it is ``name`` (CXR), else None."""
    return truth.findings[0] if len(truth.findings) == 1 and truth.findings[0].name == name else None


def _textbook(name: str):
    def want(truth) -> bool:
        f = _only(truth, name)
        if f is None or f.subtle:
            return False
        if name == "cardiomegaly":  # the ratio is the whole finding: a big heart, plain to see
            return f.severity == "severe"
        return f.severity in ("moderate", "severe") and (f.size_mm or 0.0) >= CLEAR_MM.get(name, 0.0)

    return want


def _subtle(name: str):
    return lambda truth: (f := _only(truth, name)) is not None and f.subtle


def _tumour(cls: str, min_mm: float = 0.0):
    return lambda t: t.tumour == cls and (cls == "none" or t.findings[0].size_mm >= min_mm)


#: sample id -> (modality, predicate on the truth, title, kind); index.json keeps this order
WANTED = {
    **{sid: ("CXR", _textbook(name), f"CXR phantom: {words}", "textbook")
       for name, (sid, words) in FINDING_SAMPLES.items()},
    "cxr_normal": ("CXR", lambda t: not t.findings, "CXR phantom: normal", "textbook"),
    "ct_none": ("CT", _tumour("none"), "CT phantom: no tumour", "textbook"),
    "ct_benign": ("CT", _tumour("benign", 12.0), "CT phantom: benign tumour", "textbook"),
    "ct_malignant": ("CT", _tumour("malignant", 30.0), "CT phantom: malignant tumour", "textbook"),
    **{f"{FINDING_SAMPLES[name][0]}_subtle": ("CXR", _subtle(name), f"CXR phantom: {FINDING_SAMPLES[name][1]} (subtle)",
                                             "subtle")
       for name in SUBTLE},
}  # fmt: skip


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
    for sid, (modality, want, title, kind) in WANTED.items():
        for seed in SEEDS:
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
             "mask": f"{sid}_mask.png", "seed": seed, "kind": kind}
        )  # fmt: skip
        print(f"{sid}: seed {seed} {[(f.name, f.severity, f.size_mm or f.ratio) for f in truth.findings]}")
    (args.out / "index.json").write_text(json.dumps(index, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
