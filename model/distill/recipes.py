"""The three training recipes behind the CLI: teacher, no-KD student (ground truth only), KD student.

``train_supervised`` trains any architecture from ground truth; ``distill_student`` trains a student
from a teacher checkpoint on a labelled subset plus a teacher-labelled transfer set. Both end the
same way: best weights, OOD statistics on the validation images, a model card that records exactly
which data the checkpoint saw, and ``train_log.jsonl`` beside the weights.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.distill import ddp
from model.distill.config import DistillConfig, TrainConfig
from model.distill.data_plan import DataConfig, cap_per_source, describe, split_labelled
from model.distill.teacher_cache import cache_teacher_outputs
from model.distill.tensorset import TensorSet, build_tensorset
from model.distill.trainer import LOG_NAME, FitResult, fit, make_projector
from model.networks.multitask import count_parameters
from model.types import DETAIL_LEVELS, DISCLAIMER

# ----------------------------------------------------------------------------------------------
# Data


def load_samples(cfg: DataConfig, split: str) -> list:
    """Samples of one split from the phantom dataset and, when configured, the real sets."""
    from model.data.sources import build_sources

    out = []
    for source in build_sources(cfg.data_dir, cfg.real_root):
        out += source.samples(split)
    return cap_per_source(out, cfg.max_per_source)


def report_encoder(tokenizer, max_len: int):
    """``encode(text, detail, modality) -> (ids, prompt_len)``: the model side's sequence format."""
    from model.networks import encode_report

    def encode(text: str | None, detail: str, modality: str) -> tuple[list[int], int]:
        return encode_report(tokenizer, text, detail=detail, modality=modality, max_len=max_len)

    return encode


def lesion_grid(mask_path, modality: str) -> torch.Tensor:
    """A phantom's bitmask PNG -> (len(LESION_CHANNELS), LESION_GRID, LESION_GRID) bool: a cell is set where any
    of its pixels is lesion (the target of the lesion head; cardiomegaly's mask is the heart)."""
    import torch.nn.functional as F

    from model.data.generate import read_masks
    from model.types import LESION_CHANNELS, LESION_GRID

    masks = read_masks(mask_path, modality)
    shape = next(iter(masks.values())).shape if masks else (LESION_GRID, LESION_GRID)
    full = torch.zeros((len(LESION_CHANNELS), *shape), dtype=torch.float32)
    for name, m in masks.items():
        if name in LESION_CHANNELS:
            full[LESION_CHANNELS.index(name)] = torch.from_numpy(np.asarray(m, dtype=np.float32))
    return F.adaptive_max_pool2d(full[None], LESION_GRID)[0] > 0


def to_tensorset(samples: list, tokenizer, cfg: DataConfig, seed: int) -> TensorSet:
    """Load, resize and tokenise every sample once (see tensorset.py for why)."""
    from model.data.dataset import ReportDataset

    ds = ReportDataset(samples, cfg.image_size, detail="standard", seed=seed)
    items = [ds[i] for i in range(len(ds))]
    for item, s in zip(items, samples, strict=True):
        item.setdefault("source", s.source)
        if getattr(s, "mask_path", None):
            item["lesion"] = lesion_grid(s.mask_path, s.modality)
    reports = []
    for s in samples:
        if s.report_origin == "none" or not (s.reports or s.report):
            reports.append(None)
        else:
            reports.append(dict(s.reports) if s.reports else {lvl: s.report for lvl in DETAIL_LEVELS})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return build_tensorset(items, reports, report_encoder(tokenizer, cfg.max_len), cfg.max_len, pad_id, seed)


def training_texts(samples: list) -> list[str]:
    """Every report text of the training samples (the tokenizer's corpus)."""
    texts = []
    for s in samples:
        if s.reports:
            texts += [t for t in s.reports.values() if t]
        elif s.report:
            texts.append(s.report)
    return texts


# ----------------------------------------------------------------------------------------------
# Shared ending


def _is_head(name: str) -> bool:
    return any(p in name for p in ("head",))


def finetune_heads(
    model, train: TensorSet, val: TensorSet, tcfg: TrainConfig, dcfg: DistillConfig, run_dir, env
):
    """Optional per-task stage: freeze encoder + decoder, train the task heads at a lower lr."""
    return fit(
        model,
        train,
        val,
        tcfg,
        dcfg,
        run_dir,
        env=env,
        stage="finetune",
        trainable=_is_head,
        lr=tcfg.lr * tcfg.finetune_lr_frac,
        epochs=tcfg.finetune_epochs,
    )


def _ood_extras(model, val: TensorSet) -> dict[str, torch.Tensor]:
    """Mahalanobis statistics of pooled features on the validation images (for Prediction.ood_score)."""
    from model.ood import fit_ood_stats

    images = val.images.float() / 255.0
    return fit_ood_stats(model, images, val.context)


def _fit_summary(r: FitResult) -> dict:
    return {
        "best_epoch": r.best_epoch,
        "steps": r.steps,
        "epochs_run": r.epochs_run,
        "stopped_early": r.stopped_early,
        "wall_s": round(r.wall_s, 1),
    }


def _finish(
    model,
    tokenizer,
    out_dir: Path,
    card: dict,
    val: TensorSet,
    env: ddp.DistEnv,
) -> Path:
    """OOD stats + checkpoint + log beside it (rank 0 only)."""
    from model.checkpoints import save_checkpoint

    if not env.is_main:
        return out_dir
    model.eval()
    extras = _ood_extras(model, val)
    card["disclaimer"] = DISCLAIMER
    save_checkpoint(out_dir, model, tokenizer, card, extras)
    return out_dir


def _command_line() -> str:
    return " ".join(["meddistill", *sys.argv[1:]]) if sys.argv else ""


def _build(
    model_cfg, vocab_size: int, dropout: float | None, data: DataConfig, intensity_norm: bool | None = None
):
    """The preset with this run's vocabulary, input size (served the same), sequence length and input
    normalisation (``TrainConfig.intensity_norm``; None = on when the run uses real sets)."""
    from model.networks import build_model

    if intensity_norm is None:
        intensity_norm = data.real_root is not None
    changes = {
        "vocab_size": vocab_size,
        "image_size": data.image_size,
        "max_len": max(model_cfg.max_len, data.max_len),
        "input_norm": "per_image" if intensity_norm else "none",
    }
    if dropout is not None:
        changes["dropout"] = dropout
    cfg = dataclasses.replace(model_cfg, **changes)
    return build_model(cfg), cfg


# ----------------------------------------------------------------------------------------------
# What both recipes share: the samples, the stages, the card


def _start(tcfg: TrainConfig, env: ddp.DistEnv | None) -> tuple[ddp.DistEnv, float]:
    """Every recipe's first step: torch's thread count, the process group (or none), the clock."""
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    return env or ddp.DistEnv(), time.perf_counter()


def _samples(data: DataConfig) -> tuple[list, list, list]:
    """(labelled, rest, val): the labelled subset of the training samples (``data.labelled_frac``), the
    other training samples (the KD transfer set) and the validation samples."""
    labelled, rest = split_labelled(load_samples(data, "train"), data.labelled_frac, data.seed)
    return labelled, rest, load_samples(data, "val")


def _train_stages(model, train_set, val_set, tcfg, dcfg, out_dir, env, resume, show_progress, projector=None):
    """The joint stage, then the optional heads-only fine-tuning: (the result kept, card's "stages")."""
    if env.is_main and not resume:
        _reset_log(out_dir)
    frozen = tuple(tcfg.freeze)
    joint_set = train_set.repeat_sources(tcfg.repeat_sources)
    result = fit(
        model, joint_set, val_set, tcfg, dcfg, out_dir,
        env=env, projector=projector, resume=resume, show_progress=show_progress,
        trainable=(lambda name: not name.startswith(frozen)) if frozen else None,
    )  # fmt: skip (fit's _finish makes every parameter trainable again)
    stages = {"joint": _fit_summary(result)}
    if tcfg.feature_epochs > 0:
        from model.distill.feature_stage import feature_stage

        fs = feature_stage(model, train_set, val_set, tcfg, dcfg, out_dir, env, resume, show_progress)
        stages["features"] = _fit_summary(fs)
        result = fs if fs.best_metrics else result
    if tcfg.finetune_epochs > 0:
        ft = finetune_heads(model, train_set, val_set, tcfg, dcfg, out_dir, env)
        stages["finetune"] = _fit_summary(ft)
        result = ft if ft.best_metrics else result
    return result, stages


def _card(role: str, cfg, model, training: dict, result, stages: dict, env, t0: float) -> dict:
    """The model card both recipes write: architecture, size, how it was trained, validation metrics."""
    return {
        "model_id": role,
        "role": role,
        "arch": cfg.arch_name,
        "model_config": dataclasses.asdict(cfg),
        "parameters": count_parameters(model),
        "training": {
            "command": _command_line(),
            **training,
            "stages": stages,
            "ddp_world_size": env.world_size,
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        "metrics": {"validation": result.best_metrics},
    }


# ----------------------------------------------------------------------------------------------
# Recipes


def train_supervised(
    model_cfg,
    data: DataConfig,
    tcfg: TrainConfig,
    out_dir: Path,
    *,
    role: str = "teacher",
    tokenizer_from: Path | None = None,
    resume: bool = False,
    env: ddp.DistEnv | None = None,
    show_progress: bool = True,
) -> dict:
    """Train from ground truth only (the teacher, or the no-KD student baseline); returns the card."""
    env, t0 = _start(tcfg, env)
    out_dir = Path(out_dir)
    labelled, _, val_samples = _samples(data)
    tokenizer, tok_origin = _tokenizer(labelled, tokenizer_from)
    torch.manual_seed(tcfg.seed)
    model, cfg = _build(model_cfg, len(tokenizer), tcfg.dropout, data, tcfg.intensity_norm)
    init = None
    if tcfg.init_from:
        from model.distill.pretrain import load_pretrained

        init = {"path": str(tcfg.init_from), **load_pretrained(model, Path(tcfg.init_from))}
        record = Path(tcfg.init_from).with_name("pretrain.json")
        if record.is_file():
            import json

            doc = json.loads(record.read_text())
            init["pretrain"] = {k: doc.get(k) for k in ("config", "steps", "images_seen", "wall_s", "validation")}
    train_set = to_tensorset(labelled, tokenizer, data, tcfg.seed)
    val_set = to_tensorset(val_samples, tokenizer, data, tcfg.seed + 1)
    dcfg = DistillConfig().without_kd()
    result, stages = _train_stages(model, train_set, val_set, tcfg, dcfg, out_dir, env, resume, show_progress)
    training = {
        "recipe": "supervised (ground truth only, no teacher)",
        "train_config": tcfg.to_dict(),
        "loss_config": dcfg.to_dict(),
        "data_config": data.to_dict(),
        "tokenizer": tok_origin,
        "data": {"labelled": describe(labelled), "transfer": None, "val": describe(val_samples)},
    }
    if init is not None:
        training["init"] = init
    card = _card(role, cfg, model, training, result, stages, env, t0)
    if role == "student_nokd":
        card["training"]["fair_comparison"] = (
            "Same labelled subset as the KD student (same seed and labelled_frac), same optimiser-step "
            "budget, no teacher, no transfer set."
        )
    _finish(model, tokenizer, out_dir, card, val_set, env)
    return card


def distill_student(
    student_cfg,
    teacher_dir: Path,
    data: DataConfig,
    tcfg: TrainConfig,
    dcfg: DistillConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    env: ddp.DistEnv | None = None,
    show_progress: bool = True,
) -> dict:
    """Train a student from a teacher checkpoint: labelled subset + teacher-labelled transfer set."""
    from model.checkpoints import load_checkpoint

    env, t0 = _start(tcfg, env)
    out_dir = Path(out_dir)
    teacher, tokenizer, teacher_card, _ = load_checkpoint(teacher_dir)
    teacher.eval()
    labelled, rest, val_samples = _samples(data)
    torch.manual_seed(tcfg.seed)
    student, cfg = _build(student_cfg, len(tokenizer), tcfg.dropout, data, tcfg.intensity_norm)
    lab_set = to_tensorset(labelled, tokenizer, data, tcfg.seed)
    transfer, transfer_note = None, None
    t_cache = time.perf_counter()
    if rest:
        transfer = to_tensorset(rest, tokenizer, data, tcfg.seed + 2).strip_labels()
        transfer_note = describe(rest) | {
            "labels": "removed; soft labels from the teacher (cached logits, top-k token distributions, pooled features)",
            "reports": "teacher's greedy-decoded reports (sequence-level KD, Kim & Rush 2016)"
            if dcfg.sequence_kd
            else "none (token-level KD on the prompt only)",
        }
    progress = show_progress and env.is_main
    train_set = teacher_training_set(
        teacher, tokenizer, lab_set, transfer, data, dcfg, bf16=tcfg.bf16, show_progress=progress
    )
    cache_s = time.perf_counter() - t_cache
    val_set = to_tensorset(val_samples, tokenizer, data, tcfg.seed + 1)
    projector = None
    if dcfg.w_hint > 0:
        projector = make_projector(student.hint_channels, teacher.hint_channels)
    del teacher
    result, stages = _train_stages(
        student, train_set, val_set, tcfg, dcfg, out_dir, env, resume, show_progress, projector
    )
    training = {
        "recipe": "knowledge distillation from the teacher (labelled subset + teacher-labelled transfer set)",
        "teacher": {
            "dir": str(teacher_dir),
            "arch": teacher_card.get("arch"),
            "parameters": teacher_card.get("parameters"),
            "weights_sha256": teacher_card.get("weights_sha256") or teacher_card.get("sha256"),
        },
        "train_config": tcfg.to_dict(),
        "distill_config": dcfg.to_dict(),
        "data_config": data.to_dict(),
        "tokenizer": f"the teacher's ({teacher_dir}): token-level KD needs one vocabulary",
        "data": {"labelled": describe(labelled), "transfer": transfer_note, "val": describe(val_samples)},
        "teacher_cache_s": round(cache_s, 1),
    }
    card = _card("student", cfg, student, training, result, stages, env, t0)
    _finish(student, tokenizer, out_dir, card, val_set, env)
    return card


# ----------------------------------------------------------------------------------------------
# Pieces


def _tokenizer(samples: list, tokenizer_from: Path | None):
    """The teacher's tokenizer when given (students), else a new one from these training reports."""
    if tokenizer_from is not None:
        from model.checkpoints import load_tokenizer

        return load_tokenizer(
            tokenizer_from
        ), f"reused from {tokenizer_from} (one vocabulary with the teacher)"
    from model.networks import build_tokenizer

    return build_tokenizer(training_texts(samples)), "built from this run's training reports"


def _reset_log(out_dir: Path) -> None:
    log = Path(out_dir) / LOG_NAME
    if log.exists():
        log.unlink()
    for stage_dir in Path(out_dir).glob("stage_*"):
        shutil.rmtree(stage_dir)


def teacher_training_set(
    teacher,
    tokenizer,
    labelled: TensorSet,
    transfer: TensorSet | None,
    data: DataConfig,
    dcfg: DistillConfig,
    *,
    bf16: bool = False,
    show_progress: bool = True,
) -> TensorSet:
    """The KD student's training set: ``labelled`` ++ ``transfer`` (whose reports become the teacher's
    greedy decodes when ``dcfg.sequence_kd``), with the teacher's outputs cached (``data.teacher``).

    The teacher's trunk runs once per row (issue 10: at 224 px it is ~0.30 s of the decode's ~0.36 s per
    report, and the cache used to run it again over the same images). Its features are kept in the
    trunk's own dtype (float32; bfloat16 under ``bf16``), so the decode and the cache see exactly what a
    live pass gives them, and are dropped on return: the set never carries them, since
    ``TensorSet.features`` feeds a model its OWN trunk output and a student must never get the teacher's.
    """
    from model.distill.feature_stage import cache_features

    parts = [labelled] if transfer is None else [labelled, transfer]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        # (N, C, h, w), row-aligned with labelled ++ transfer (no copy of the images for it)
        features = torch.cat(
            [cache_features(teacher, p, show_progress=show_progress, dtype=None) for p in parts]
        )
        if transfer is not None and dcfg.sequence_kd:
            decode_transfer_reports(teacher, tokenizer, transfer, data, features=features[len(labelled) :])
    train_set = TensorSet.concat(parts) if transfer is not None else labelled  # with the decoded reports
    cache_teacher_outputs(teacher, train_set, dcfg, show_progress=show_progress, bf16=bf16, features=features)
    return train_set


@torch.no_grad()
def decode_transfer_reports(
    teacher,
    tokenizer,
    data: TensorSet,
    cfg: DataConfig,
    show_progress: bool = True,
    features: torch.Tensor | None = None,
) -> None:
    """Sequence-level KD: replace each transfer item's report with the teacher's greedy decode.

    The item keeps its (seeded) detail level; the decoded ids become its sequence and targets.
    ``features`` (N, C, h, w): the teacher's trunk output for every row, computed before (the trunk is
    then skipped; see ``teacher_training_set``).
    """
    from model.networks import generate_texts

    encode = report_encoder(tokenizer, cfg.max_len)
    bs = 32
    for start in range(0, len(data), bs):
        idx = torch.arange(start, min(start + bs, len(data)))
        b = data.batch(idx)
        details = [DETAIL_LEVELS[int(d)] for d in b["detail"]]
        modalities = ["CT" if c else "CXR" for c in b["is_ct"].tolist()]
        images, context = b["images"], b["context"]
        feats = None if features is None else features[idx]  # (B, C, h, w)
        texts = generate_texts(teacher, tokenizer, images, context, details, modalities, cfg.max_len, feats)
        for row, i in enumerate(idx.tolist()):
            d = int(data.fixed_detail[i])
            toks, plen = encode(texts[row], DETAIL_LEVELS[d], modalities[row])
            toks = toks[: cfg.max_len]
            data.ids[i, d].fill_(data.pad_id)
            data.ids[i, d, : len(toks)] = torch.tensor(toks)
            data.prompt_len[i, d] = plen
            data.seq_len[i, d] = len(toks)
            data.has_report[i] = True
    data.detail_mode = "fixed"
