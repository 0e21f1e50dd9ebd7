"""The training loop shared by the teacher, the KD student and the no-KD student.

One loop, three uses: what differs is the ``DistillConfig`` (KD weights on or off) and whether the
training set carries cached teacher columns. The loop is plain PyTorch: AdamW with decoupled weight
decay, warm-up then cosine/linear decay, gradient clipping, validation every epoch with early
stopping on the hard-label validation loss, the best weights kept, a JSON-lines log of every loss
term, and a resumable state (safetensors + JSON) after every epoch. Under DDP each replica sees its
``DistributedSampler`` shard; only rank 0 writes.

``fit`` reads as its steps: ``_start`` (seed, freeze, optimizer, schedule, resume), then per epoch
``_train_epoch`` (``_train_batch`` -> ``_train_step`` -> ``_refit_to_budget`` / ``_log_train``) and
``_end_epoch`` (validation from ``validation.py``, best weights, early stopping, saved state), then
``_finish``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from model.data.dataset import is_real_source, jitter_batch
from model.distill import ddp
from model.distill.config import DistillConfig, TrainConfig
from model.distill.losses import distillation_loss
from model.distill.tensorset import TensorSet
from model.distill.train_state import (
    has_train_state,
    load_train_state,
    load_weights,
    save_train_state,
    save_weights,
)
from model.distill.validation import validate

LOG_NAME = "train_log.jsonl"


class TrainModule(nn.Module):
    """The model being trained plus, for FitNets, its learned 1x1 hint projection.

    One module so that DDP synchronises the projector's gradients with the model's (the loss applies
    ``projector`` to the student's features: ``losses.fitnets_hint``).
    """

    def __init__(
        self,
        model: nn.Module,
        projector: nn.Module | None = None,
        bf16: bool = False,
        label_cond_p: float = 0.0,
    ):
        super().__init__()
        self.model = model
        self.projector = projector
        self.bf16 = bf16
        self.label_cond_p = label_cond_p

    def forward(self, batch: dict[str, torch.Tensor]):
        images = batch["images"]
        if self.bf16:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            memory_probs = (
                label_memory_probs(batch, self.label_cond_p, self.model.cfg.n_tumour)
                if self.training and self.label_cond_p > 0
                else None
            )
            out = self.model(
                images, batch["context"], batch["input_ids"], batch["attention_mask"], memory_probs,
                features=batch.get("features"),
            )  # fmt: skip
        if self.bf16:  # the losses run in float32
            for f in dataclasses.fields(out) if dataclasses.is_dataclass(out) else ():
                v = getattr(out, f.name)
                if torch.is_tensor(v) and v.is_floating_point():
                    setattr(out, f.name, v.float())
        return out


def label_memory_probs(batch: dict[str, torch.Tensor], p: float, n_tumour: int) -> torch.Tensor:
    """(B, n_findings + n_tumour) ground-truth labels for the decoder memory, NaN = use the head.

    A row is conditioned on its labels with probability ``p``; unknown labels (NaN findings, tumour
    -100, the KD transfer set) stay NaN, so the heads' own probabilities fill them.
    """
    findings = batch["findings"].float()  # (B, n_findings), NaN = unknown
    tumour = batch["tumour"]  # (B,), -100 = unknown
    b = findings.shape[0]
    onehot = torch.full((b, n_tumour), float("nan"))
    known = tumour >= 0
    onehot[known] = F.one_hot(tumour[known], n_tumour).float()
    probs = torch.cat([findings, onehot], 1)
    probs[torch.rand(b) >= p] = float("nan")
    return probs


def make_projector(student_channels: int, teacher_channels: int) -> nn.Module:
    """FitNets regressor: 1x1 conv student -> teacher channels (Romero et al. 2015)."""
    return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)


def lr_lambda(total_steps: int, cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak lr at a step: linear warm-up, then cosine / linear / constant decay."""
    warmup = max(1, int(round(cfg.warmup_frac * total_steps)))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if cfg.schedule == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif cfg.schedule == "linear":
            decay = 1.0 - progress
        else:
            decay = 1.0
        return cfg.min_lr_frac + (1.0 - cfg.min_lr_frac) * decay

    return f


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices/convs; no decay on biases, norms and embeddings (common practice)."""
    no_decay_ids: set[int] = set()
    for m in module.modules():
        if isinstance(m, nn.Embedding | nn.LayerNorm | nn.BatchNorm2d | nn.GroupNorm):
            no_decay_ids.update(id(p) for p in m.parameters(recurse=False))
    decay, no_decay = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or id(p) in no_decay_ids else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class FitResult:
    best_epoch: int
    best_metrics: dict[str, float]
    steps: int
    epochs_run: int
    stopped_early: bool
    wall_s: float
    history: list[dict] = field(default_factory=list)  # validation lines


def fit(
    model: nn.Module,
    train: TensorSet,
    val: TensorSet,
    tcfg: TrainConfig,
    dcfg: DistillConfig,
    run_dir: Path,
    env: ddp.DistEnv | None = None,
    projector: nn.Module | None = None,
    resume: bool = False,
    stage: str = "joint",
    trainable: Callable[[str], bool] | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    show_progress: bool = True,
) -> FitResult:
    """Train ``model`` in place; on return it holds the best validation weights.

    ``trainable(name)`` freezes parameters it rejects (the per-task fine-tuning stage trains heads
    only). ``stage`` names the log lines and the resumable state (one per stage).
    """
    env = env or ddp.DistEnv()
    epochs = tcfg.epochs if epochs is None else epochs
    loop = _start(
        model, len(train), tcfg, Path(run_dir), env, projector, resume, stage, trainable, lr, epochs
    )
    loop.pbar = tqdm(
        total=loop.total_steps,
        initial=loop.step,
        desc=f"{loop.run_dir.name}:{stage}",
        disable=not (env.is_main and show_progress),
        dynamic_ncols=True,
    )
    while loop.epoch < epochs and loop.step < loop.total_steps and not loop.stopped_early:
        if not _train_epoch(loop, train, dcfg) and loop.step < loop.total_steps:
            break  # nothing left to do in this epoch (should not happen)
        _end_epoch(loop, val, dcfg, show_progress)
    return _finish(loop, trainable)


@dataclass
class _Loop:
    """What one ``fit`` call carries from step to step (mutable; never outlives the call)."""

    model: nn.Module
    module: TrainModule  # model + FitNets projector
    dmodule: nn.Module  # ``module`` wrapped for DDP (itself on one process)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: list[Callable[[int], float]]  # [lr multiplier]: replaced when a time budget shortens the run
    sampler: DistributedSampler
    tcfg: TrainConfig
    env: ddp.DistEnv
    stage: str
    run_dir: Path
    state_dir: Path  # resumable state and best weights of this stage
    steps_per_epoch: int
    total_steps: int  # may shrink under ``tcfg.time_budget_s``
    planned_steps: int
    progress: dict  # epoch, step, step_in_epoch, best_val, best_epoch, bad_epochs (saved with the state)
    history: list[dict]  # validation lines
    step: int
    start_step: int  # where this call began (resume)
    epoch: int
    stopped_early: bool
    t0: float
    pbar: tqdm | None = None

    @property
    def best_path(self) -> Path:
        return self.state_dir / "best.safetensors"

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME


def _start(
    model: nn.Module,
    n_train: int,
    tcfg: TrainConfig,
    run_dir: Path,
    env: ddp.DistEnv,
    projector: nn.Module | None,
    resume: bool,
    stage: str,
    trainable: Callable[[str], bool] | None,
    lr: float | None,
    epochs: int,
) -> _Loop:
    """Seed, freeze, wrap, build the optimizer / sampler / schedule, and resume a saved state."""
    torch.manual_seed(tcfg.seed + env.rank)  # dropout differs per replica; weights are broadcast
    if trainable is not None:
        for name, p in model.named_parameters():
            p.requires_grad_(trainable(name))
    if tcfg.bf16:  # AMX/AVX-512 bf16 + channels-last convs: 2.5-4x faster ResNet-50 on this CPU
        model.to(memory_format=torch.channels_last)
    module = TrainModule(model, projector, bf16=tcfg.bf16, label_cond_p=tcfg.label_cond_p)
    dmodule = ddp.wrap(module, env)
    optimizer = torch.optim.AdamW(param_groups(module, tcfg.weight_decay), lr=lr or tcfg.lr)
    sampler = DistributedSampler(
        range(n_train), num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=tcfg.seed
    )
    steps_per_epoch = math.ceil(len(sampler) / tcfg.batch_size)
    total_steps = epochs * steps_per_epoch
    if tcfg.max_steps is not None and stage != "finetune":  # the heads-only fine-tuning has its own epochs
        total_steps = min(total_steps, tcfg.max_steps)
    schedule = [lr_lambda(total_steps, tcfg)]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule[0](s))
    progress = {
        "epoch": 0,
        "step": 0,
        "step_in_epoch": 0,
        "best_val": None,
        "best_epoch": -1,
        "bad_epochs": 0,
    }
    history: list[dict] = []
    state_dir = run_dir / f"stage_{stage}"
    if resume and has_train_state(state_dir):
        progress = load_train_state(state_dir, module, optimizer, scheduler)
        history = progress.pop("history", [])
    return _Loop(
        model=model,
        module=module,
        dmodule=dmodule,
        optimizer=optimizer,
        scheduler=scheduler,
        schedule=schedule,
        sampler=sampler,
        tcfg=tcfg,
        env=env,
        stage=stage,
        run_dir=run_dir,
        state_dir=state_dir,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        planned_steps=total_steps,
        progress=progress,
        history=history,
        step=progress["step"],
        start_step=progress["step"],
        epoch=progress["epoch"],
        stopped_early=progress.get("stopped_early", False),
        t0=time.perf_counter(),
    )


def _train_epoch(loop: _Loop, train: TensorSet, dcfg: DistillConfig) -> bool:
    """The epoch's remaining batches (all of them, or until the step budget ends); True when the epoch
    ran to its end."""
    tcfg = loop.tcfg
    loop.sampler.set_epoch(loop.epoch)
    order = torch.tensor(list(iter(loop.sampler)), dtype=torch.long)
    detail = train.detail_for_epoch(loop.epoch, tcfg.seed)
    skip = loop.progress["step_in_epoch"]  # resuming mid-epoch: the order is deterministic, skip done batches
    loop.dmodule.train()
    for bi in range(skip, loop.steps_per_epoch):
        if loop.step >= loop.total_steps:
            break
        idx = order[bi * tcfg.batch_size : (bi + 1) * tcfg.batch_size]
        terms, gnorm = _train_step(loop, _train_batch(loop, train, idx, detail), dcfg)
        loop.progress["step_in_epoch"] = bi + 1
        if tcfg.time_budget_s and (loop.step - loop.start_step) % 25 == 0:
            _refit_to_budget(loop)
        if loop.step % tcfg.log_every == 0 or loop.step == loop.total_steps or bi == loop.steps_per_epoch - 1:
            _log_train(loop, terms, gnorm)
        loop.pbar.update(1)
    return loop.progress["step_in_epoch"] >= loop.steps_per_epoch


def _train_batch(loop: _Loop, train: TensorSet, idx: torch.Tensor, detail: torch.Tensor) -> dict:
    """The batch at ``idx``: one detail level per batch, intensity jitter per step when configured."""
    tcfg = loop.tcfg
    if train.detail_mode == "random":  # one detail level per batch: less padding, ~2x cheaper decoder
        detail[idx] = int(detail[idx[0]])
    b = train.batch(idx, detail)
    if tcfg.augment != "off":  # intensity jitter per step (issue 11); the TensorSet stays clean
        rows = [tcfg.augment == "all" or is_real_source(train.sources[i] if train.sources else "")
                for i in idx.tolist()]  # fmt: skip
        b["images"] = jitter_batch(b["images"], rows, (tcfg.seed, loop.epoch, loop.step))
    return b


def _train_step(loop: _Loop, b: dict, dcfg: DistillConfig) -> tuple[dict[str, torch.Tensor], float | None]:
    """Forward, every loss term, backward, clip, optimizer and schedule step: (terms, grad norm or None)."""
    out = loop.dmodule(b)
    terms = distillation_loss(out, b.get("teacher"), b, dcfg, hint_projector=loop.module.projector)
    loop.optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    gnorm = None
    if loop.tcfg.grad_clip > 0:
        gnorm = float(torch.nn.utils.clip_grad_norm_(loop.module.parameters(), loop.tcfg.grad_clip))
    loop.optimizer.step()
    loop.scheduler.step()
    loop.step += 1
    return terms, gnorm


def _refit_to_budget(loop: _Loop) -> None:
    """Fit the schedule to the steps the time budget allows at the measured speed (the speed of a
    shared CPU changes: re-fitted every 25 steps, never past the planned total)."""
    done = loop.step - loop.start_step
    per_step = (time.perf_counter() - loop.t0) / done
    fits = loop.step + int((loop.tcfg.time_budget_s - (time.perf_counter() - loop.t0)) / per_step)
    new_total = max(loop.step + 1, min(loop.planned_steps, fits))
    if abs(new_total - loop.total_steps) > 2:
        loop.total_steps = new_total
        loop.schedule[0] = lr_lambda(new_total, loop.tcfg)
        loop.pbar.total = new_total


def _log_train(loop: _Loop, terms: dict[str, torch.Tensor], gnorm: float | None) -> None:
    """One train line (every term, averaged over replicas) in the JSON-lines log; the progress bar."""
    vals = ddp.all_reduce_mean({k: float(v.detach()) for k, v in terms.items()}, loop.env)
    if not loop.env.is_main:
        return
    line = {
        "stage": loop.stage,
        "split": "train",
        "epoch": loop.epoch,
        "step": loop.step,
        "lr": loop.scheduler.get_last_lr()[0],
        "elapsed_s": round(time.perf_counter() - loop.t0, 1),
    }
    line.update({k: round(v, 6) for k, v in vals.items()})
    if gnorm is not None:
        line["grad_norm"] = round(gnorm, 4)
    _append_jsonl(loop.log_path, line)
    shown = ("total", "ce_report", "bce_findings", "kd_tokens")
    loop.pbar.set_postfix({k: f"{vals[k]:.3f}" for k in shown if vals.get(k)})


def _end_epoch(loop: _Loop, val: TensorSet, dcfg: DistillConfig, show_progress: bool) -> None:
    """Validate, keep the best weights, count bad epochs for early stopping, save the resumable state."""
    progress = loop.progress
    epoch_done = progress["step_in_epoch"] >= loop.steps_per_epoch
    metrics = validate(loop.model, val, dcfg)
    line = {"stage": loop.stage, "split": "val", "epoch": loop.epoch, "step": loop.step}
    line.update({k: round(v, 6) for k, v in metrics.items()})
    loop.history.append(line)
    score = metrics["val_total"]
    if progress["best_val"] is None or score < progress["best_val"] - 1e-6:
        progress.update(best_val=score, best_epoch=loop.epoch, bad_epochs=0)
        if loop.env.is_main:
            loop.state_dir.mkdir(parents=True, exist_ok=True)
            save_weights(loop.model, loop.best_path)
    else:
        progress["bad_epochs"] += 1
        loop.stopped_early = progress["bad_epochs"] >= loop.tcfg.patience
    if epoch_done:  # else the budget ended mid-epoch: keep the position so --resume continues there
        loop.epoch += 1
        progress["step_in_epoch"] = 0
    progress.update(epoch=loop.epoch, step=loop.step, stopped_early=loop.stopped_early)
    if loop.env.is_main:
        _append_jsonl(loop.log_path, line)
        if show_progress:
            tqdm.write(
                f"[{loop.stage}] epoch {line['epoch']}: "
                + ", ".join(f"{k[4:]}={v:.4f}" for k, v in metrics.items())
            )
        state = {**progress, "history": loop.history}
        save_train_state(loop.state_dir, loop.module, loop.optimizer, loop.scheduler, state)
    ddp.barrier(loop.env)


def _finish(loop: _Loop, trainable: Callable[[str], bool] | None) -> FitResult:
    """Back to the plain memory layout, the best weights loaded, every parameter trainable again."""
    loop.pbar.close()
    ddp.barrier(loop.env)
    model = loop.model
    if loop.tcfg.bf16:
        model.to(memory_format=torch.contiguous_format)  # checkpoints and inference use plain layout
    if loop.best_path.is_file():
        load_weights(model, loop.best_path)
    if trainable is not None:
        for p in model.parameters():
            p.requires_grad_(True)
    history = loop.history
    best_epoch = loop.progress["best_epoch"]
    best = next((h for h in history if h["epoch"] == best_epoch), history[-1] if history else {})
    return FitResult(
        best_epoch=best_epoch,
        best_metrics={k: v for k, v in best.items() if k.startswith("val_")},
        steps=loop.step,
        epochs_run=loop.epoch,
        stopped_early=loop.stopped_early,
        wall_s=time.perf_counter() - loop.t0,
        history=history,
    )


def _append_jsonl(path: Path, line: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")
