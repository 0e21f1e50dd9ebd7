"""Stage 0 of the teacher: pre-train its ResNet-50 on a stream of distinct virtual cases (issue 10).

No downloaded weights exist here, so the "pre-trained ResNet-50 start" of the method is built: the
trunk and the findings / tumour heads learn from ``n_images`` phantoms that no later split contains
(each drawn once, from seeds of their own set), rendered on the fly in a worker process. Besides the
heads' labels, every phantom has pixel-exact masks: a 1x1 convolution on the stride-16 stage
(``layer3``, the Grad-CAM layer) predicts, per finding and for the CT tumour, which cells of the grid
contain the lesion. That auxiliary loss teaches the stage Grad-CAM reads *where* a finding is; it is
dropped after this stage (the report model keeps no segmentation head).

The stream is rendered at 256 px and resized to ``image_size`` like the dataset (``to_model_input``):
128 px here costs a third of 224 px per image, so the trunk sees three times more distinct cases in
the same time; the joint stage then fine-tunes at the served size (progressive resizing).

  state: OUT/pretrain_state/ (resumable),  weights: OUT/pretrain.safetensors,  record: OUT/pretrain.json
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from model.types import FINDINGS, LESION_CHANNELS, TUMOUR_CLASSES

#: segmentation channels: one per finding, then the CT tumour
SEG_CHANNELS: tuple[str, ...] = LESION_CHANNELS
#: the pretraining stream's set seed: its cases come from SeedSequence([PRETRAIN_SET_SEED + k, ...]),
#: a set no ``generate-data`` run uses (those take the user's small seeds)
PRETRAIN_SET_SEED = 7_000_003


@dataclass(frozen=True)
class PretrainConfig:
    n_images: int = 24_000  # distinct phantoms streamed, each seen once (the budget may end it sooner)
    image_size: int = 128
    ct_share: float = 0.3  # share of CT slices in the stream
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.03
    min_lr_frac: float = 0.05
    grad_clip: float = 1.0
    w_mask: float = 1.0  # weight of the stride-16 mask loss beside the heads' losses
    mask_pos_weight: float = 4.0  # lesion cells are rare: up-weight them in the mask BCE
    n_val: int = 320  # held-out stream cases scored at the end (same generator, other seeds)
    time_budget_s: float | None = None  # wall clock; the schedule is re-fitted after warm-up
    workers: int = 1  # render processes
    seed: int = 0
    save_every: int = 50  # steps between resumable states

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# The stream


def stream_case(index: int, seed: int, ct_share: float, size: int, split: str = "train") -> dict:
    """One pretraining case: image (1, S, S), labels and the lesion masks at full render size."""
    from model.data.generate import case_seed
    from model.data.imaging import to_model_input
    from model.data.phantom import make_case

    offset = {"train": 0, "val": 1}[split]
    rng = np.random.default_rng([PRETRAIN_SET_SEED, seed, offset, index])
    modality = "CT" if rng.random() < ct_share else "CXR"
    case_seed_ = case_seed(PRETRAIN_SET_SEED + 2 * seed + offset, modality, index)
    case = make_case(case_seed_, modality, size=256)
    img = to_model_input(case.image, size)
    findings = np.zeros(len(FINDINGS), np.float32)
    present = {f.name for f in case.truth.findings}
    for i, name in enumerate(FINDINGS):
        findings[i] = name in present
    masks = np.zeros((len(SEG_CHANNELS), 256, 256), bool)
    for name, m in case.masks.items():
        key = "tumour" if modality == "CT" else name
        if key in SEG_CHANNELS and m.shape == (256, 256):
            masks[SEG_CHANNELS.index(key)] |= m
    tumour = TUMOUR_CLASSES.index(case.truth.tumour) if modality == "CT" else -100
    return {
        "image": torch.from_numpy(img)[None],
        "findings": torch.from_numpy(findings),
        "is_cxr": torch.tensor(modality == "CXR"),
        "tumour": torch.tensor(tumour),
        "masks": torch.from_numpy(masks),
        "seed": torch.tensor(case_seed_, dtype=torch.int64),
    }


class PhantomStream(torch.utils.data.Dataset):
    """Index -> a distinct phantom (rendered on demand; deterministic for (seed, index))."""

    def __init__(self, n: int, cfg: PretrainConfig, split: str = "train"):
        self.n, self.cfg, self.split = n, cfg, split

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        c = self.cfg
        return stream_case(i, c.seed, c.ct_share, c.image_size, self.split)


def mask_targets(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, K, 256, 256) bool -> (B, K, h, w) float: 1 where any pixel of the cell is lesion."""
    return F.adaptive_max_pool2d(masks.float(), grid)


# ----------------------------------------------------------------------------------------------
# The model pieces


def trunk_stages(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ResNet-50 report model: images (B, 1, S, S) -> (layer3 (B, 1024, S/16, S/16), layer4 features)."""
    from model.networks.multitask import standardize_images

    enc = model.encoder
    x = standardize_images(images) if model.cfg.input_norm == "per_image" else images
    x = x.expand(-1, enc.trunk.in_channels, -1, -1)
    x = (x - enc.mean) / enc.std
    t = enc.trunk
    x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
    mid = t.layer3(t.layer2(t.layer1(x)))
    return mid, t.layer4(mid)


class PretrainModule(nn.Module):
    """The report model's trunk + heads, and the auxiliary mask head on layer3."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seg = nn.Conv2d(1024, len(SEG_CHANNELS), 1)

    def forward(self, images: torch.Tensor):
        mid, feats = trunk_stages(self.model, images)
        heads = self.model.forward_heads(feats)
        return heads, self.seg(mid)


def pretrain_losses(out, batch: dict, cfg: PretrainConfig) -> dict[str, torch.Tensor]:
    heads, seg = out
    cxr = batch["is_cxr"]
    zero = seg.sum() * 0
    bce = (
        F.binary_cross_entropy_with_logits(heads.findings_logits[cxr], batch["findings"][cxr])
        if cxr.any()
        else zero
    )
    ce = F.cross_entropy(heads.tumour_logits[~cxr], batch["tumour"][~cxr]) if (~cxr).any() else zero
    target = mask_targets(batch["masks"], seg.shape[-2:])
    pos_weight = torch.full((seg.shape[1], 1, 1), cfg.mask_pos_weight)
    mask = F.binary_cross_entropy_with_logits(seg, target, pos_weight=pos_weight)
    return {"bce_findings": bce, "ce_tumour": ce, "mask": mask, "total": bce + ce + cfg.w_mask * mask}


# ----------------------------------------------------------------------------------------------
# The loop


def _lr(step: int, total: int, cfg: PretrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


def _save_state(state_dir: Path, module: nn.Module, opt, step: int, total: int, log: list) -> None:
    from model.distill.train_state import flatten_optimizer_state, save_weights

    state_dir.mkdir(parents=True, exist_ok=True)
    save_weights(module, state_dir / "module.tmp")
    tensors, structure = flatten_optimizer_state(opt.state_dict())
    save_file(tensors, str(state_dir / "optim.tmp"))
    (state_dir / "state.tmp").write_text(json.dumps({"step": step, "total": total, "opt": structure, "log": log}))
    for name in ("module", "optim"):
        (state_dir / f"{name}.tmp").replace(state_dir / f"{name}.safetensors")
    (state_dir / "state.tmp").replace(state_dir / "state.json")


def _load_state(state_dir: Path, module: nn.Module, opt) -> tuple[int, int, list]:
    from model.distill.train_state import load_weights, unflatten_optimizer_state

    load_weights(module, state_dir / "module.safetensors")
    doc = json.loads((state_dir / "state.json").read_text())
    opt.load_state_dict(unflatten_optimizer_state(load_file(str(state_dir / "optim.safetensors")), doc["opt"]))
    return doc["step"], doc["total"], doc["log"]


def pretrain(model, cfg: PretrainConfig, out_dir: Path, resume: bool = True, show_progress: bool = True) -> dict:
    """Train ``model``'s trunk and findings / tumour heads on the phantom stream; returns the record.

    ``model`` is a ResNet-50 ReportModel (its decoder is untouched). Writes OUT/pretrain.safetensors
    (the encoder and heads' weights, loadable with ``load_pretrained``) and OUT/pretrain.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    module = PretrainModule(model)
    params = [p for n, p in module.named_parameters() if not n.startswith("model.decoder.")]
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    total = cfg.n_images // cfg.batch_size
    step, log = 0, []
    state_dir = out_dir / "pretrain_state"
    if resume and (state_dir / "state.json").is_file():
        step, total, log = _load_state(state_dir, module, opt)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(PhantomStream(cfg.n_images, cfg), range(step * cfg.batch_size, cfg.n_images)),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        prefetch_factor=4 if cfg.workers else None,
        persistent_workers=False,
    )
    module.train()
    model.decoder.eval()
    t0, t_warm, warm_steps = time.perf_counter(), None, 0
    elapsed_before = log[-1]["elapsed_s"] if log else 0.0
    pbar = tqdm(total=total, initial=step, desc="pretrain", disable=not show_progress, dynamic_ncols=True)
    for batch in loader:
        if step >= total:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr(step, total, cfg)
        losses = pretrain_losses(module(batch["image"]), batch, cfg)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        pbar.update(1)
        elapsed = elapsed_before + time.perf_counter() - t0
        if cfg.time_budget_s and t_warm is None and step - (log[0]["step"] if log else 0) >= 10:
            t_warm, warm_steps = time.perf_counter(), step
        elif cfg.time_budget_s and t_warm is not None and step == warm_steps + 20:
            per_step = (time.perf_counter() - t_warm) / 20
            fits = step + int((cfg.time_budget_s - elapsed) / per_step)
            total = max(step + 1, min(total, fits))  # re-fit the cosine schedule to what the budget allows
            pbar.total = total
        if step % 10 == 0 or step == total:
            line = {"step": step, "total": total, "elapsed_s": round(elapsed, 1)}
            line |= {("loss" if k == "total" else k): round(float(v.detach()), 4) for k, v in losses.items()}
            log.append(line)
            pbar.set_postfix(loss=f"{line['loss']:.3f}", mask=f"{line['mask']:.3f}")
        if step % cfg.save_every == 0:
            _save_state(state_dir, module, opt, step, total, log)
        if cfg.time_budget_s and elapsed > cfg.time_budget_s:
            break
    pbar.close()
    _save_state(state_dir, module, opt, step, total, log)
    module.eval()
    val = evaluate_pretrain(module, cfg)
    keep = {k: v for k, v in model.state_dict().items() if k.startswith(("encoder.", "heads."))}
    save_file({k: v.detach().clone().contiguous() for k, v in keep.items()}, str(out_dir / "pretrain.safetensors"))
    record = {
        "config": cfg.to_dict(),
        "steps": step,
        "images_seen": step * cfg.batch_size,
        "wall_s": round(elapsed_before + time.perf_counter() - t0, 1),
        "validation": val,
        "log_tail": log[-5:],
    }
    (out_dir / "pretrain.json").write_text(json.dumps(record, indent=1))
    return record


@torch.no_grad()
def evaluate_pretrain(module: PretrainModule, cfg: PretrainConfig) -> dict:
    """Findings AUROC, tumour accuracy and the mask head's pointing game on held-out stream cases."""
    from sklearn.metrics import roc_auc_score

    ds = PhantomStream(cfg.n_val, cfg, split="val")
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=cfg.workers)
    probs, labels, tum_pred, tum_true, hits, tries = [], [], [], [], 0, 0
    for batch in loader:
        heads, seg = module(batch["image"])
        cxr = batch["is_cxr"]
        probs.append(torch.sigmoid(heads.findings_logits[cxr]))
        labels.append(batch["findings"][cxr])
        tum_pred.append(heads.tumour_logits[~cxr].argmax(-1))
        tum_true.append(batch["tumour"][~cxr])
        target = mask_targets(batch["masks"], seg.shape[-2:])
        for b in range(seg.shape[0]):
            for k in range(seg.shape[1]):
                if target[b, k].any():
                    tries += 1
                    hits += bool(target[b, k].flatten()[seg[b, k].flatten().argmax()] > 0)
    p, y = torch.cat(probs).numpy(), torch.cat(labels).numpy()
    auroc = {}
    for i, name in enumerate(FINDINGS):
        if 0 < y[:, i].sum() < len(y):
            auroc[name] = round(float(roc_auc_score(y[:, i], p[:, i])), 4)
    tp, tt = torch.cat(tum_pred), torch.cat(tum_true)
    return {
        "n": len(ds),
        "findings_auroc": auroc,
        "findings_macro_auroc": round(float(np.mean(list(auroc.values()))), 4) if auroc else None,
        "tumour_accuracy": round(float((tp == tt).float().mean()), 4) if len(tt) else None,
        "mask_pointing_game": round(hits / tries, 4) if tries else None,
    }


def load_pretrained(model, path: Path) -> dict:
    """Load OUT/pretrain.safetensors into a report model (any input size); returns what was loaded.

    Task-head weights whose input is wider here (another ``head_pool``: stage 0 read average ++ max, a lesion
    head reads average ++ lesion-attended ++ map statistics) are loaded into their leading slice, the rest
    keeps its fresh initialisation; the trunk must fit exactly.
    """
    state = load_file(str(path))
    own = model.state_dict()
    partial = []
    for key, value in list(state.items()):
        mine = own.get(key)
        if mine is None or mine.shape == value.shape or not key.startswith("heads."):
            continue
        if value.ndim != mine.ndim or any(a > b for a, b in zip(value.shape, mine.shape, strict=True)):
            raise ValueError(f"pretrained {key} {tuple(value.shape)} does not fit this model's {tuple(mine.shape)}")
        merged = mine.clone()
        merged[tuple(slice(0, n) for n in value.shape)] = value
        state[key] = merged
        partial.append(key)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"pretrained weights do not fit this model: unexpected keys {unexpected[:5]}")
    return {
        "loaded": len(state),
        "missing_trained_fresh": sorted({k.split(".")[0] for k in missing}),
        "partially_loaded": partial,
    }
