"""Resumable training state without pickle: tensors in safetensors, structure in JSON.

``optimizer.state_dict()`` mixes tensors (Adam moments, step counters) with plain values (param
groups). We flatten every tensor to ``opt/<param index>/<key>`` in a safetensors file and keep the
rest as JSON, then rebuild the exact dict on load. The model (and hint projector) weights go through
:func:`save_weights` (contiguous copies: tied and channels-last weights are safe), RNG state as a
uint8 tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE_DIR = "train_state"  # folder inside the run directory


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Every state-dict entry as its own contiguous copy (tied / channels-last tensors included)."""
    state = {
        k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in module.state_dict().items()
    }
    save_file(state, str(path))


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Inverse of :func:`save_weights` (strict: every key must match)."""
    module.load_state_dict(load_file(str(path)))


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> (tensors, json-able structure)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"opt/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, per_param in structure.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(per_param)
    groups = []
    for g in structure["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_train_state(
    run_dir: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: dict,
) -> Path:
    """Write everything ``--resume`` needs to ``run_dir/train_state/``; ``progress`` is JSON-able."""
    d = Path(run_dir) / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    save_weights(module, d / "module.safetensors")
    tensors, structure = flatten_optimizer_state(optimizer.state_dict())
    tensors["rng/torch"] = torch.get_rng_state()
    save_file(tensors, str(d / "optimizer.safetensors"))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    doc = {"optimizer": structure, "scheduler": sched, "progress": progress}
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(d / "state.json")  # the JSON goes last: its presence means the state is complete
    return d


def has_train_state(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_DIR / "state.json").is_file()


def load_train_state(
    run_dir: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict:
    """Restore module, optimizer, scheduler and RNG in place; returns the saved ``progress``."""
    d = Path(run_dir) / STATE_DIR
    doc = json.loads((d / "state.json").read_text())
    load_weights(module, d / "module.safetensors")
    tensors = load_file(str(d / "optimizer.safetensors"))
    rng = tensors.pop("rng/torch")
    optimizer.load_state_dict(unflatten_optimizer_state(tensors, doc["optimizer"]))
    sched = scheduler.state_dict()
    sched.update(doc["scheduler"])
    scheduler.load_state_dict(sched)
    torch.set_rng_state(rng)
    return doc["progress"]
