"""The ``meddistill`` command.

Each sub-command lives in its own module under ``model/commands/`` with two
functions: ``add_arguments(parser)`` and ``main(args) -> int``. Modules are
imported only when their command runs, so ``meddistill --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module under model.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate-data": ("generate_data", "write a phantom dataset (images, annotation.json, labels, masks)"),
    "train": ("train", "train a model from ground truth (teacher, or the no-KD student baseline)"),
    "distill": ("distill", "distil a student from a teacher checkpoint"),
    "pipeline": ("pipeline", "run the whole default pipeline: data, teacher, students, evaluation"),
    "evaluate": ("evaluate", "evaluate checkpoints and write assets/eval/NAME.json"),
    "predict": ("predict", "predict findings and a report for one image file"),
    "audit-data": ("audit_data", "audit a dataset: duplicates, patient leakage, shortcut probe"),
    "train-guard": ("train_guard", "rebuild the input guard (modality classifier + per-model OOD probes)"),
    "feedback": ("feedback", "expert reviews in the review store: list, export (R2Gen layout), import"),
    "models": ("models", "the model registry: list versions, promote one, roll back"),
    "update": ("update", "learn from reviewed cases: fine-tune, re-distil, gate, promote (or reject)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meddistill",
        description="MedDistill Studio: knowledge-distilled medical report generation. "
        "For demonstration and teaching only, not for clinical use.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / an error for unknown commands
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"model.commands.{COMMANDS[name][0]}")
    sub = argparse.ArgumentParser(prog=f"meddistill {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
