"""Record the shipped models' reports on the shipped samples: the golden file tests/test_shipped_reports.py checks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/record_shipped_reports.py   # -> tests/golden/shipped_reports.json

Recorded with the Hugging Face GPT-2 decoder before the in-house one replaced it (issue 13: cold start), so the
test proves the replacement writes the same words (greedy, beam, sampled) with the same per-token probabilities
(to 1e-4) and the same teacher-forced next-token distributions. Re-run it only when the shipped weights change
or the samples do. Issue 10 item 7 regenerated the samples (one textbook case per finding and tumour class, three
subtle ones): their rows were re-recorded with the in-house decoder, proven equal to the transformers one on the
original nine. The three samples whose images did not change (cxr_normal, ct_none, ct_malignant) keep their
transformers rows (re-recorded, the in-house decoder gave the same tokens, probabilities within 1e-5); a re-run
of this script replaces them with in-house rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "assets" / "samples"
GOLDEN = ROOT / "tests" / "golden" / "shipped_reports.json"
MODELS = ("teacher", "student", "student_nokd")
#: name -> ReportStyle keyword arguments
STYLES: dict[str, dict] = {
    "greedy": {},
    "greedy_brief": {"detail": "brief"},
    "greedy_detailed": {"detail": "detailed"},
    "beam3": {"decoding": "beam", "num_beams": 3},
    "beam6_lp2": {"decoding": "beam", "num_beams": 6, "length_penalty": 2.0},
    "sample": {"decoding": "sample", "temperature": 1.0, "seed": 3},
}


def record_model(name: str) -> dict:
    """``{"weights_sha256": ..., "samples": {sample id: {style: {"tokens", "probs"}, "teacher_forced_max"}}}``."""
    from model.checkpoints import sha256_file
    from model.data.imaging import load_study_path
    from model.inference import Predictor, shipped_checkpoint
    from model.types import ReportStyle

    index = json.loads((SAMPLES / "index.json").read_text())
    p = Predictor.from_dir(name, name)
    p.follow_heads = False  # the decoder's own words (following the heads is tests/test_follow_labels.py)
    p.ground_locations = False  # nor locations read from the lesion map (model/ground_location.py)
    out: dict = {}
    for s in index:
        study = load_study_path(SAMPLES / s["image"], modality_hint=s["modality"])
        row = {}
        for style, kw in STYLES.items():
            pred = p.predict(study, style=ReportStyle(**kw))
            row[style] = {"tokens": pred.tokens, "probs": np.round(pred.token_probs, 5).tolist()}
        tf = p.teacher_forced_probs(study, row["greedy"]["tokens"])  # (T, V)
        row["teacher_forced_max"] = np.round(tf.max(-1).astype(np.float64), 5).tolist()
        out[s["id"]] = row
    return {"weights_sha256": sha256_file(shipped_checkpoint(name) / "model.safetensors"), "samples": out}


def dumps(doc: dict) -> str:
    """JSON with one line per (model, sample, style): readable diffs."""
    lines = ["{"]
    for mi, (m, rec) in enumerate(doc.items()):
        lines += [
            f" {json.dumps(m)}: {{",
            f'  "weights_sha256": {json.dumps(rec["weights_sha256"])},',
            '  "samples": {',
        ]
        for si, (sid, row) in enumerate(rec["samples"].items()):
            lines.append(f"   {json.dumps(sid)}: {{")
            lines += [f"    {json.dumps(k)}: {json.dumps(v)}" + ("," if i < len(row) - 1 else "")
                      for i, (k, v) in enumerate(row.items())]  # fmt: skip
            lines.append("   }" + ("," if si < len(rec["samples"]) - 1 else ""))
        lines += ["  }", " }" + ("," if mi < len(doc) - 1 else "")]
    return "\n".join([*lines, "}"]) + "\n"


def main() -> int:
    torch.set_num_threads(1)
    doc = {m: record_model(m) for m in MODELS}
    GOLDEN.write_text(dumps(doc))
    print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
