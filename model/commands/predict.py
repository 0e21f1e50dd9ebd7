"""`meddistill predict FILE`: findings and a report for one image file.

Examples:
  meddistill predict chest.png                      # shipped student, standard report
  meddistill predict ct.dcm --model teacher --detail detailed --json
  meddistill predict chest.png --model runs/student --decoding beam --age 70 --allergy penicillin

For demonstration and teaching only, not for clinical use.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.types import ALLERGIES, DETAIL_LEVELS, DISCLAIMER, FINDING_LABELS, PatientContext, ReportStyle


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="image file: PNG, JPEG or DICOM")
    p.add_argument(
        "--model", default="student", help="teacher | student | student_nokd (shipped) or a checkpoint dir"
    )
    p.add_argument("--detail", choices=DETAIL_LEVELS, default="standard", help="report detail level")
    p.add_argument("--max-tokens", type=int, default=96, help="hard cap on generated tokens")
    p.add_argument("--max-sentences", type=int, default=None, help="cut the report after N sentences")
    p.add_argument("--decoding", choices=("greedy", "beam", "sample"), default="greedy")
    p.add_argument("--num-beams", type=int, default=3)
    p.add_argument("--temperature", type=float, default=1.0, help="sampling only")
    p.add_argument("--seed", type=int, default=0, help="sampling only")
    p.add_argument("--modality", choices=("CXR", "CT"), default=None, help="override the detected modality")
    p.add_argument("--json", action="store_true", help="print the whole Prediction as JSON")
    g = p.add_argument_group("patient context (optional; feeds the treatment head)")
    g.add_argument("--age", type=int, default=None)
    g.add_argument("--sex", choices=("F", "M"), default=None)
    g.add_argument("--allergy", action="append", choices=ALLERGIES, default=[], help="repeatable")
    g.add_argument("--renal-impairment", action="store_true")
    g.add_argument("--pregnant", action="store_true")


def _fail(msg: str) -> int:
    print(f"meddistill predict: error: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from model.checkpoints import CheckpointError
    from model.data.imaging import ImageLoadError, load_study_path
    from model.inference import Predictor, resolve_checkpoint

    try:
        study = load_study_path(args.file, modality_hint=args.modality)
    except ImageLoadError as e:
        return _fail(str(e))
    ckpt = resolve_checkpoint(args.model)
    if not ckpt.is_dir():
        return _fail(f"no checkpoint at {ckpt} (train one, or pass --model DIR).")
    try:
        predictor = Predictor.from_dir(ckpt)
    except CheckpointError as e:
        return _fail(str(e))
    context = PatientContext(
        age=args.age,
        sex=args.sex,
        allergies=tuple(args.allergy),
        renal_impairment=True if args.renal_impairment else None,
        pregnant=True if args.pregnant else None,
    )
    style = ReportStyle(
        detail=args.detail,
        max_new_tokens=args.max_tokens,
        max_sentences=args.max_sentences,
        decoding=args.decoding,
        num_beams=args.num_beams,
        temperature=args.temperature,
        seed=args.seed,
    )
    pred = predictor.predict(study, context=context, style=style)
    if args.json:
        doc = pred.to_dict() | {"file": str(args.file), "checkpoint": str(ckpt), "disclaimer": DISCLAIMER}
        print(json.dumps(doc, indent=2, default=float))
        return 0
    print(f"[{pred.model_id}] {study.modality}  ({DISCLAIMER})")
    print(pred.report or "(empty report)")
    print()
    if study.modality == "CXR":
        for name, p in sorted(pred.findings.items(), key=lambda kv: -kv[1]):
            print(f"  {FINDING_LABELS[name]:<20} {p:6.1%}")
    else:
        for name, p in pred.tumour.items():
            print(f"  tumour {name:<13} {p:6.1%}")
    top = pred.treatments[0]
    print(f"  top treatment: {top.name} ({top.probability:.1%})")
    flag = "  OUT OF DISTRIBUTION" if pred.ood_flag else ""
    print(f"  latency {pred.latency_ms['total']:.0f} ms, OOD score {pred.ood_score:.2f}{flag}")
    return 0
