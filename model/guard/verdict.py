"""The input guard: Study -> (modality routed, GuardVerdict attached) before any model speaks.

Checks, in order:

1. ``modality`` - the classifier's p(neither) above its calibrated threshold: not a chest X-ray or a chest
   CT slice (noise, documents, photos, other body parts and modalities...). Refused.
2. ``modality_mismatch`` - the DICOM header names one chest modality and the pixels look like the other
   (p > threshold). Refused. A user's explicit choice (page override, CLI ``--modality``) is trusted: the
   disagreement becomes a note, not a refusal.
3. ``ood:<model>`` - per model, after it ran: its OOD probe (model/guard/ood.py) above threshold. That
   model's output is withheld.

Plain images (PNG/JPEG) carry no modality: the classifier's chest class decides, so no global choice is
needed. Every sentence here names the file, the problem and what the user can do; the page and the CLI
show these same sentences.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np

from model.types import GUARD_CLASSES, GuardVerdict, Prediction, Study

GUARD_DIR = Path(__file__).resolve().parents[2] / "assets" / "checkpoints" / "guard"
MODALITY_NAMES = {"CXR": "a chest X-ray", "CT": "a chest CT slice", "neither": "neither"}
ANYWAY = "show the models' output anyway (--force in the CLI)"
MODEL_NAMES = {"teacher": "The teacher", "student": "The student", "student_nokd": "The no-KD student"}


def _quoted(name: str) -> str:
    return f"'{name}'" if name else "This image"


class Guard:
    """The loaded guard checkpoint; ``check`` is safe to call from several threads."""

    def __init__(self, net, config: dict, path: Path):
        self.net = net.eval()
        self.config = config
        self.path = Path(path)
        self.size = int(config["net"]["image_size"])
        self.neither_threshold = float(config["neither_threshold"])
        self.mismatch_threshold = float(config.get("mismatch_threshold", 0.5))
        self.lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> Guard | None:
        """The guard in ``path`` (default: the shipped one); None when it is not installed."""
        from safetensors.torch import load_model

        from model.guard.network import GuardConfig, GuardNet

        d = Path(path or GUARD_DIR)
        if not (d / "model.safetensors").is_file() or not (d / "config.json").is_file():
            return None
        config = json.loads((d / "config.json").read_text())
        net = GuardNet(GuardConfig.from_dict(config["net"]))
        load_model(net, str(d / "model.safetensors"))
        return cls(net, config, d)

    # -- classifier ---------------------------------------------------------------------------------
    def probabilities(self, study: Study) -> dict[str, float]:
        """GUARD_CLASSES -> probability for one study (about a millisecond on one thread)."""
        import torch  # here: pages import this module before any model (or torch) is loaded

        from model.guard.features import guard_image, guard_stats

        img = guard_image(study, self.size)
        stats = guard_stats(study, img, self.size)
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(img)[None, None], torch.from_numpy(stats)[None])
            p = torch.softmax(logits, 1)[0].tolist()
        return dict(zip(GUARD_CLASSES, p, strict=True))

    def check(self, study: Study, override: str | None = None) -> Study:
        """A copy of the study routed to its modality, with ``verdict`` set (and the guard's notes added).

        ``override`` ("CXR" | "CT") is the user's explicit choice for this study; a DICOM header is the
        claim otherwise; a plain image claims nothing and gets the detected chest modality.
        """
        from model.data.imaging import NO_MODALITY_NOTE

        p = self.probabilities(study)
        detected = max(p, key=p.get)
        chest = "CXR" if p["CXR"] >= p["CT"] else "CT"
        chest_conf = p[chest] / max(1e-9, p["CXR"] + p["CT"])
        header = study.meta.get("Modality")
        plain = header is None and study.meta.get("Format") in ("PNG", "JPEG")
        warnings = [w for w in study.warnings if w != NO_MODALITY_NOTE]
        if override in ("CXR", "CT"):
            claim, source = override, "user"
        elif not plain:
            claim, source = study.modality, "dicom"
        else:
            claim, source = None, ""
        name = _quoted(study.source)
        common = dict(detected_modality=detected, confidence=float(p[detected]), claimed_modality=claim,
                      claim_source=source)  # fmt: skip
        modality = claim or chest
        if p["neither"] > self.neither_threshold:
            look = f"it looks most like {MODALITY_NAMES[chest]} at only {p[chest]:.0%}"
            verdict = GuardVerdict(
                accepted=False,
                reason=f"{name} does not look like a chest X-ray or a chest CT slice (guard score "
                f"{p['neither']:.2f} > threshold {self.neither_threshold:.2f}; {look}). The models were trained "
                f"on chest images only, so no report is shown: upload a frontal chest X-ray or an axial chest "
                f"CT slice, or {ANYWAY}.",
                check="modality",
                score=float(p["neither"]),
                threshold=self.neither_threshold,
                **common,
            )
        elif source == "dicom" and claim != chest and p[chest] > self.mismatch_threshold:
            verdict = GuardVerdict(
                accepted=False,
                reason=f"{name} is labelled {MODALITY_NAMES[claim]} in its DICOM header, but its pixels look "
                f"like {MODALITY_NAMES[chest]} (guard score {p[chest]:.2f} > threshold "
                f"{self.mismatch_threshold:.2f}). No report is shown: check the file, choose the modality "
                f"yourself, or {ANYWAY}.",
                check="modality_mismatch",
                score=float(p[chest]),
                threshold=self.mismatch_threshold,
                **common,
            )
        else:
            if source == "user" and claim != chest:
                note = (
                    f"You chose {MODALITY_NAMES[claim]} for {name}; the guard thinks it looks like "
                    f"{MODALITY_NAMES[chest]} ({chest_conf:.0%}). The models read it as you chose."
                )
            elif source == "dicom":
                note = f"{name}: {MODALITY_NAMES[modality]} per its DICOM header; the pixels agree ({chest_conf:.0%})."
            elif source == "user":
                note = (
                    f"{name}: {MODALITY_NAMES[modality]} as you chose; the pixels agree ({chest_conf:.0%})."
                )
            else:
                # the same probability the page shows beside "detected" (not the share among chest classes)
                note = f"{name}: detected {MODALITY_NAMES[modality]} from the pixels ({p[modality]:.0%})."
            verdict = GuardVerdict(
                accepted=True,
                reason=note,
                check="",
                score=float(p["neither"]),
                threshold=self.neither_threshold,
                **common,
            )
        return dataclasses.replace(study, modality=modality, warnings=tuple(warnings), verdict=verdict)


def check_prediction(study: Study, pred: Prediction) -> GuardVerdict:
    """The verdict for one model's output: the study's verdict, else the model's OOD check."""
    base = study.verdict
    common = dict(
        detected_modality=base.detected_modality if base else study.modality,
        confidence=base.confidence if base else float("nan"),
        claimed_modality=base.claimed_modality if base else None,
        claim_source=base.claim_source if base else "",
    )
    if base is not None and not base.accepted:
        return base
    if pred.ood_flag and pred.ood_method == "guard_probe":  # only a calibrated probe refuses (ood.py)
        who = MODEL_NAMES.get(pred.model_id, f"Model '{pred.model_id}'")
        return GuardVerdict(
            accepted=False,
            reason=f"{who} finds {_quoted(study.source)} unlike the chest images it was trained on (OOD score "
            f"{pred.ood_score:.2f} > threshold {pred.ood_threshold:.2f}). Its report is withheld: try a clearer "
            f"or more typical image, or {ANYWAY}.",
            check=f"ood:{pred.model_id}",
            score=float(pred.ood_score),
            threshold=float(pred.ood_threshold),
            **common,
        )
    return base or GuardVerdict(True, "", "", float(pred.ood_score), float(pred.ood_threshold), **common)


def with_verdict(study: Study, pred: Prediction) -> Prediction:
    """The prediction with its verdict attached (a copy)."""
    return dataclasses.replace(pred, verdict=check_prediction(study, pred))


def guard_missing_note() -> str:
    return (
        f"The input guard is not installed ({GUARD_DIR} has no model.safetensors): images are not checked "
        "before the models read them. Rebuild it with: meddistill train-guard."
    )


def verdict_line(v: GuardVerdict) -> str:
    """A one-line summary for captions and logs."""
    state = "accepted" if v.accepted else f"refused by {v.check}"
    return f"{state}: detected {MODALITY_NAMES.get(v.detected_modality, v.detected_modality)} ({v.confidence:.0%})"


def as_array(probs: dict[str, float]) -> np.ndarray:
    return np.asarray([probs[c] for c in GUARD_CLASSES], dtype=np.float32)
