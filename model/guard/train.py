"""Build the guard checkpoint: data (families.py) -> modality classifier -> calibration -> OOD probes -> files.

Deterministic for a TrainGuardConfig (one torch thread, fixed seeds, data generated from seeds); the
shared real data is used when ``../shared/data`` exists and recorded in the card either way.

Calibration uses a split (``calib``) that neither training nor the benchmark's ``test`` split sees, with
positives AND negatives (the held-out family is not in it either): the "neither" threshold keeps at most
``max_positive_refusal`` of calibration positives refused and refuses as many negatives as it can.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.guard.families import (
    HELD_OUT_NEGATIVES,
    POSITIVE_FAMILIES,
    TRAIN_NEGATIVES,
    WRONG_MODALITY,
    Example,
    examples,
    generators,
)
from model.guard.features import STAT_NAMES, guard_image, guard_stats
from model.guard.network import GuardConfig, GuardNet
from model.types import GUARD_CLASSES


@dataclass(frozen=True)
class TrainGuardConfig:
    """What `meddistill train-guard` does (recorded in the card)."""

    out: str = "assets/checkpoints/guard"  # checkpoint folder
    n_positive: int = 400  # per procedural positive family (phantoms)
    real_passes: int = 2  # real sets: each file as is, then (passes - 1) augmented, re-encoded copies
    n_negative: int = 220  # per training negative family
    n_calib: int = 100  # per family in the calibration split
    epochs: int = 12  # passes over the training set
    batch_size: int = 64
    lr: float = 3e-3  # AdamW, cosine to 0
    weight_decay: float = 1e-4
    seed: int = 0  # torch init and batch order
    max_positive_refusal: float = 0.01  # calibration positives the "neither" threshold may refuse
    ood_models: tuple[str, ...] = ("teacher", "student", "student_nokd")  # shipped models to fit probes for
    ood_per_family: int = 120  # training examples per family for the OOD probes (features are costly)
    net: GuardConfig = field(default_factory=GuardConfig)


LABEL_INDEX = {c: i for i, c in enumerate(GUARD_CLASSES)}
MODEL_VIEW = 128  # the shipped models' input size: examples keep a copy this big for the OOD probes


@dataclass
class Encoded:
    """Loaded examples as arrays: images (N, S, S), stats (N, K), labels (N,), families, hints, studies."""

    images: np.ndarray
    stats: np.ndarray
    labels: np.ndarray
    families: list[str]
    studies: list  # the loaded Study of each example (for the OOD probes)
    claims: list[str | None]  # modality the file or user claimed (DICOM header / hint), None for plain images
    skipped: dict[str, int]  # family -> examples the loader refused (they never reach the guard)


def claimed_modality(study, ex: Example) -> str | None:
    """What the DICOM header or the user's hint said, None for a plain image without a hint."""
    if ex.hint is not None:
        return ex.hint
    return study.modality if study.meta.get("Modality") else None


def encode_examples(items: list[Example], size: int) -> Encoded:
    from model.data.imaging import ImageLoadError, load_study, to_model_input

    images, stats, labels, fams, studies, claims, skipped = [], [], [], [], [], [], {}
    for ex in items:
        try:
            study = load_study(ex.data, ex.name, modality_hint=ex.hint)
        except ImageLoadError:
            skipped[ex.family] = skipped.get(ex.family, 0) + 1
            continue
        img = guard_image(study, size)
        images.append(img)
        stats.append(guard_stats(study, img, size))
        labels.append(LABEL_INDEX[ex.label])
        fams.append(ex.family)
        study.pixels = to_model_input(study.pixels, MODEL_VIEW)  # small copy at the models' input size
        studies.append(study)
        claims.append(claimed_modality(study, ex))
    return Encoded(
        np.stack(images).astype(np.float32),
        np.stack(stats).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        fams,
        studies,
        claims,
        skipped,
    )


def split_examples(split: str, per_family: dict[str, int]) -> list[Example]:
    gens = generators(split)
    out: list[Example] = []
    for fam, n in per_family.items():
        if fam in gens:
            out.extend(examples(fam, split, n))
    return out


def training_counts(cfg: TrainGuardConfig) -> dict[str, int]:
    from model.guard.families import shared_files

    counts = {"phantom_cxr": cfg.n_positive, "phantom_ct": cfg.n_positive, "ct_small": 40}
    counts["nih_cxr"] = cfg.real_passes * len(shared_files("nih", "train"))
    counts["real_ct"] = cfg.real_passes * len(shared_files("ct", "train"))
    counts |= {f: cfg.n_negative for f in TRAIN_NEGATIVES}
    return {k: v for k, v in counts.items() if v > 0}


def calib_counts(cfg: TrainGuardConfig) -> dict[str, int]:
    counts = {f: cfg.n_calib for f in (*POSITIVE_FAMILIES, *TRAIN_NEGATIVES, WRONG_MODALITY)}
    counts["ct_small"] = 20
    return counts


# ----------------------------------------------------------------------------------------------
# Classifier


def fit_classifier(train: Encoded, cfg: TrainGuardConfig, log=print) -> GuardNet:
    torch.manual_seed(cfg.seed)
    net = GuardNet(cfg.net)
    x = torch.from_numpy(train.images)[:, None]  # (N, 1, S, S)
    s = torch.from_numpy(train.stats)
    y = torch.from_numpy(train.labels)
    counts = torch.bincount(y, minlength=len(GUARD_CLASSES)).float().clamp_min(1)
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / counts / len(counts))  # balanced classes
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(y) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        total, correct = 0.0, 0
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # left-right flips keep every class
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            logits = net(xb, s[idx])
            loss = loss_fn(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        log(
            f"guard epoch {epoch + 1}/{cfg.epochs}: loss {total / len(y):.4f}, train acc {correct / len(y):.4f}"
        )
    return net.eval()


@torch.inference_mode()
def predict_probs(net: GuardNet, data: Encoded, batch: int = 256) -> np.ndarray:
    """(N, 3) class probabilities."""
    out = []
    for i in range(0, len(data.labels), batch):
        x = torch.from_numpy(data.images[i : i + batch])[:, None]
        out.append(torch.softmax(net(x, torch.from_numpy(data.stats[i : i + batch])), 1))
    return torch.cat(out).numpy() if out else np.zeros((0, len(GUARD_CLASSES)), np.float32)


def choose_neither_threshold(p_neither: np.ndarray, is_positive: np.ndarray, max_refusal: float) -> float:
    """The lowest threshold on p(neither) that refuses at most ``max_refusal`` of the positives (refuse when
    p > threshold); never below 0.5, so a confident chest image is never refused by calibration noise."""
    pos = np.sort(p_neither[is_positive])
    if len(pos) == 0:
        return 0.5
    k = int(np.floor(max_refusal * len(pos)))  # positives allowed above the threshold
    thr = float(pos[len(pos) - 1 - k]) if k < len(pos) else 0.5
    return float(min(max(thr, 0.5), 0.99))


# ----------------------------------------------------------------------------------------------
# Everything


def train_guard(cfg: TrainGuardConfig = TrainGuardConfig(), log=print) -> Path:
    """Train, calibrate and save the guard (classifier + per-model OOD probes) into ``cfg.out``."""
    from model.guard import ood
    from model.guard.families import shared_files

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    size = cfg.net.image_size
    log("guard: generating and loading training files ...")
    train = encode_examples(split_examples("train", training_counts(cfg)), size)
    calib = encode_examples(split_examples("calib", calib_counts(cfg)), size)
    t_data = time.perf_counter() - t0
    log(f"guard: {len(train.labels)} training and {len(calib.labels)} calibration images in {t_data:.0f} s")
    net = fit_classifier(train, cfg, log)
    t_fit = time.perf_counter() - t0 - t_data

    probs = predict_probs(net, calib)
    fams = np.asarray(calib.families)
    is_pos = np.isin(fams, list(POSITIVE_FAMILIES))
    thr = choose_neither_threshold(probs[:, LABEL_INDEX["neither"]], is_pos, cfg.max_positive_refusal)
    calib_report = {
        fam: {
            "n": int((fams == fam).sum()),
            "accuracy": float((probs[fams == fam].argmax(1) == calib.labels[fams == fam]).mean()),
        }
        for fam in sorted(set(calib.families))
    }
    log(f"guard: 'neither' threshold {thr:.3f}; calibration accuracy {calib_report}")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_model

    from model.networks.multitask import count_parameters

    save_model(net, str(out / "model.safetensors"))
    guard_cfg = {
        "net": cfg.net.to_dict(),
        "stats": list(STAT_NAMES),
        "classes": list(GUARD_CLASSES),
        "neither_threshold": thr,
        "mismatch_threshold": 0.5,  # header says one chest modality, pixels say the other with p > this
    }
    t_ood0 = time.perf_counter()
    ood_section = ood.fit_probes(net, guard_cfg, cfg, train, calib, out, log)
    guard_cfg["ood"] = ood_section
    (out / "config.json").write_text(json.dumps(guard_cfg, indent=2) + "\n")
    card = {
        "model_id": "guard",
        "role": "input guard: modality classifier (chest X-ray / chest CT slice / neither) + per-model OOD probes",
        "train_config": _jsonable(asdict(cfg)),
        "command": "meddistill train-guard",
        "training_images": {f: train.families.count(f) for f in sorted(set(train.families))},
        "calibration_images": {f: calib.families.count(f) for f in sorted(set(calib.families))},
        "held_out_families": list(HELD_OUT_NEGATIVES),
        "shared_data_used": bool(shared_files("nih", "train") or shared_files("ct", "train")),
        "loader_refused": {"train": train.skipped, "calib": calib.skipped},
        "calibration": calib_report,
        "neither_threshold": thr,
        "parameters": count_parameters(net),
        "seconds": {
            "data": round(t_data, 1),
            "classifier": round(t_fit, 1),
            "ood_probes": round(time.perf_counter() - t_ood0, 1),
        },
        "disclaimer": "For demonstration and teaching only. Trained on synthetic phantoms, small public sets "
        "and procedural negatives; a refusal or an acceptance is not a clinical statement.",
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"guard: saved to {out} in {time.perf_counter() - t0:.0f} s")
    return out


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d
