"""Record the shipped models' reports on the shipped samples: the golden file tests/test_shipped_reports.py checks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/record_shipped_reports.py   # -> tests/golden/shipped_reports.json

Recorded with the Hugging Face GPT-2 decoder before the in-house one replaced it (issue 13: cold start), so the
test proves the replacement writes the same words (greedy, beam, sampled) with the same per-token probabilities
(to 1e-4) and the same teacher-forced next-token distributions. Re-run it only when the shipped weights change.
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


def record() -> dict:
    from model.data.imaging import load_study_path
    from model.inference import Predictor
    from model.types import ReportStyle

    index = json.loads((SAMPLES / "index.json").read_text())
    doc: dict = {}
    for m in MODELS:
        p = Predictor.from_dir(m, m)
        doc[m] = {}
        for s in index:
            study = load_study_path(SAMPLES / s["image"], modality_hint=s["modality"])
            row = {}
            for name, kw in STYLES.items():
                pred = p.predict(study, style=ReportStyle(**kw))
                row[name] = {"tokens": pred.tokens, "probs": np.round(pred.token_probs, 5).tolist()}
            greedy = row["greedy"]["tokens"]
            tf = p.teacher_forced_probs(study, greedy)  # (T, V)
            row["teacher_forced_max"] = np.round(tf.max(-1).astype(np.float64), 5).tolist()
            doc[m][s["id"]] = row
    return doc


def main() -> int:
    torch.set_num_threads(1)
    doc = record()
    GOLDEN.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
