"""`meddistill predict FILE`: findings and a report for one image file.

Examples:
  meddistill predict chest.png                      # shipped student, standard report
  meddistill predict ct.dcm --model teacher --detail detailed --json
  meddistill predict chest.png --model runs/student --decoding beam --age 70 --allergy penicillin

The input guard checks the image first (model/guard): when it refuses (not a chest X-ray or chest CT slice,
a DICOM header that disagrees with the pixels, or a model that finds the image unlike its training data),
the command prints why and exits with status 3 and no report, unless ``--force``. The loader's and the
guard's notes are always printed (text: lines starting "note:" on stderr; --json: "warnings").

For demonstration and teaching only, not for clinical use.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.types import (
    ALLERGIES,
    DETAIL_LEVELS,
    DISCLAIMER,
    FINDING_LABELS,
    TREATMENT_LABELS,
    TREATMENT_THRESHOLD,
    PatientContext,
    ReportStyle,
    split_treatments,
)


def treatment_lines(pred) -> list[str]:
    """The text output's treatment block: the same rule as the page (``split_treatments``)."""
    shown, others = split_treatments(pred.treatments)
    if not shown:
        lines = [f"  treatments: none (no item at p >= {TREATMENT_THRESHOLD:.2f} that the rulebook supports)"]
    else:
        lines = ["  treatments (educational, not advice):"]
        lines += [f"    {TREATMENT_LABELS[t.name]} ({t.probability:.1%}): {t.reason}" for t in shown]
    if others:
        lines.append(
            f"  other suggestions (below {TREATMENT_THRESHOLD:.2f} or not supported by the rulebook):"
        )
        lines += [f"    {TREATMENT_LABELS[t.name]} ({t.probability:.1%}): {t.reason}" for t in others]
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="image file: PNG, JPEG or DICOM")
    p.add_argument(
        "--model", default="student", help="teacher | student | student_nokd (shipped) or a checkpoint dir"
    )
    p.add_argument("--detail", choices=DETAIL_LEVELS, default="standard", help="report detail level")
    p.add_argument("--max-tokens", type=int, default=96, help="hard cap on generated tokens")
    p.add_argument("--max-sentences", type=int, default=None, help="cut the report after N sentences")
    p.add_argument("--decoding", choices=("greedy", "beam", "sample"), default="greedy")
    p.add_argument("--num-beams", type=int, default=3, help="beam only: candidate reports kept per step")
    p.add_argument(
        "--length-penalty", type=float, default=1.0, help="beam only: score = log-prob / length^penalty"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling only")
    p.add_argument("--seed", type=int, default=0, help="sampling only")
    p.add_argument(
        "--modality",
        choices=("CXR", "CT"),
        default=None,
        help="say what the image shows (overrides the guard's detection; loads other DICOM modalities best effort)",
    )
    p.add_argument(
        "--force", action="store_true", help="show the models' output even when the input guard refuses the image"
    )
    p.add_argument("--json", action="store_true", help="print the whole Prediction as JSON")
    g = p.add_argument_group("patient context (optional; feeds the treatment head)")
    g.add_argument("--age", type=int, default=None)
    g.add_argument("--sex", choices=("F", "M"), default=None)
    g.add_argument("--allergy", action="append", choices=ALLERGIES, default=[], help="repeatable")
    g.add_argument("--renal-impairment", action="store_true")
    g.add_argument("--pregnant", action="store_true")


REFUSED = 3  # exit status when the input guard refuses the image (and --force is not given)


def _fail(msg: str) -> int:
    print(f"meddistill predict: error: {msg}", file=sys.stderr)
    return 2


def _refused(args: argparse.Namespace, study, verdict, notes: list[str]) -> int:
    """Print the guard's sentence (and the notes) without any model output; exit status 3."""
    if args.json:
        doc = {"file": str(args.file), "refused": True, "verdict": verdict.to_dict(), "warnings": notes,
               "disclaimer": DISCLAIMER}  # fmt: skip
        print(json.dumps(doc, indent=2, default=float))
    print(f"meddistill predict: refused: {verdict.reason}", file=sys.stderr)
    return REFUSED


def _notes(study) -> list[str]:
    """The loader's warnings, then the guard's sentence: the same words the page shows."""
    notes = list(study.warnings)
    v = study.verdict
    if v is not None and v.accepted and v.reason:
        notes.append(v.reason)
    return notes


def main(args: argparse.Namespace) -> int:
    from model.checkpoints import CheckpointError
    from model.data.imaging import ImageLoadError, load_study_path
    from model.inference import Predictor, resolve_checkpoint

    try:
        study = load_study_path(args.file, modality_hint=args.modality)
    except ImageLoadError as e:
        extra = " In the CLI: --modality CXR or --modality CT." if "Choose a modality" in str(e) else ""
        return _fail(str(e) + extra)
    ckpt = resolve_checkpoint(args.model)
    if not ckpt.is_dir():
        return _fail(f"no checkpoint at {ckpt} (train one, or pass --model DIR).")
    from model.guard import Guard, guard_missing_note, with_verdict

    guard = Guard.load()
    if guard is None:
        study.warnings = (*study.warnings, guard_missing_note())
    else:
        study = guard.check(study, override=args.modality)
    notes = _notes(study)
    if not args.json:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    if study.verdict is not None and not study.verdict.accepted:
        if not args.force:
            return _refused(args, study, study.verdict, notes)
        print(f"note: shown anyway (--force): {study.verdict.reason}", file=sys.stderr)
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
        length_penalty=args.length_penalty,
        temperature=args.temperature,
        seed=args.seed,
    )
    pred = with_verdict(study, predictor.predict(study, context=context, style=style))
    if not pred.verdict.accepted and pred.verdict is not study.verdict:  # the model's own OOD check
        if not args.force:
            return _refused(args, study, pred.verdict, notes)
        print(f"note: shown anyway (--force): {pred.verdict.reason}", file=sys.stderr)
    if args.json:
        doc = pred.to_dict() | {
            "file": str(args.file),
            "checkpoint": str(ckpt),
            "refused": False,
            "treatments_shown": [t.name for t in split_treatments(pred.treatments)[0]],
            "treatment_threshold": TREATMENT_THRESHOLD,
            "forced": bool(args.force and not pred.verdict.accepted),
            "warnings": notes,
            "disclaimer": DISCLAIMER,
        }
        print(json.dumps(doc, indent=2, default=float))
        return 0
    print(f"[{pred.model_id}] {study.modality}  ({DISCLAIMER})")
    print(pred.report or "(empty report)")
    if pred.truncated:
        print(f"(shortened to {pred.token_limit} tokens: the unfinished last sentence was dropped; "
              "raise --max-tokens to read the rest)")  # fmt: skip
    print()
    if study.modality == "CXR":
        for name, p in sorted(pred.findings.items(), key=lambda kv: -kv[1]):
            print(f"  {FINDING_LABELS[name]:<20} {p:6.1%}")
    else:
        for name, p in pred.tumour.items():
            print(f"  tumour {name:<13} {p:6.1%}")
    for line in treatment_lines(pred):
        print(line)
    flag = "  OUT OF DISTRIBUTION" if pred.ood_flag else ""
    print(f"  latency {pred.latency_ms['total']:.0f} ms, OOD score {pred.ood_score:.2f}{flag}")
    return 0
