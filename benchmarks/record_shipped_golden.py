"""Record what the shipped checkpoints compute on a fixed input: the golden file tests/test_shipped.py checks.

    .venv/bin/python benchmarks/record_shipped_golden.py     # -> tests/golden/shipped_outputs.json

Re-run it only when the shipped weights change on purpose (``meddistill pipeline --install``): the test
then proves that code changes (refactors) leave the weights' sha256 and the networks' outputs as they were.
The input is a seeded random image and a fixed token sequence, so the loader, the guard and the decoding
controls (which change on purpose) do not move the golden values; only the weights and the network do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHIPPED = ROOT / "assets" / "checkpoints"
GOLDEN = ROOT / "tests" / "golden" / "shipped_outputs.json"
MODELS = ("teacher", "student", "student_nokd")
WORDS = ["No", "pneumothorax", "."]


def fingerprint(model_dir: Path) -> dict:
    """sha256 of the weights + head logits and next-token logits on a fixed input (rounded to 1e-5)."""
    from model.checkpoints import load_checkpoint, sha256_file
    from model.networks.tokenizer import prompt_ids

    model, tokenizer, card, _ = load_checkpoint(model_dir)
    model.eval()
    size = model.cfg.image_size
    image = torch.from_numpy(np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32))
    context = torch.zeros(1, model.cfg.context_dim)  # PatientContext() unknown everywhere
    ids = prompt_ids("standard", "CXR") + [tokenizer.convert_tokens_to_ids(w) for w in WORDS]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model(image, context, input_ids, torch.ones_like(input_ids))

    def r(t: torch.Tensor) -> list:
        return np.round(t.double().numpy(), 5).tolist()

    return {
        "weights_sha256": sha256_file(model_dir / "model.safetensors"),
        "input_ids": ids,
        "findings_logits": r(out.findings_logits[0]),
        "tumour_logits": r(out.tumour_logits[0]),
        "treatment_logits": r(out.treatment_logits[0]),
        "next_token_argmax": out.lm_logits[0].argmax(-1).tolist(),
        "next_token_max_logit": r(out.lm_logits[0].max(-1).values),
    }


def main() -> int:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    doc = {m: fingerprint(SHIPPED / m) for m in MODELS if (SHIPPED / m / "model.safetensors").is_file()}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}: {', '.join(doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
