"""Checkpoints: safetensors weights + JSON config + tokenizer + model card. Nothing is ever unpickled.

A checkpoint directory holds::

    model.safetensors    weights (``safetensors.torch.save_model``: handles the tied embeddings); float32,
                         or float16 for the shipped checkpoints (half the bytes in git; loading casts
                         back to the float32 model, and the shipped figures are measured on them)
    config.json          ModelConfig.to_dict()
    tokenizer.json       the word-level tokenizer (``tokenizers`` JSON)
    extras.safetensors   extra tensors, e.g. the OOD statistics (may be empty)
    model_card.json      architecture, parameters, training data provenance, config, metrics,
                         sha256 of every file above

Loading verifies the sha256 of the weights against the card before reading them, then builds the
model from config.json and loads the weights strictly. Every failure (missing file, bad JSON,
truncated or modified weights, config that does not match the weights) raises ``CheckpointError``
with a sentence naming the file and the problem.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
EXTRAS = "extras.safetensors"
CARD = "model_card.json"
FORMAT_VERSION = 1


class _SkipRandomInit(torch.overrides.TorchFunctionMode):
    """Within it, in-place random fills (``normal_``, ``uniform_``, ...) leave the tensor as allocated.

    Building a model draws random initial weights that ``load_checkpoint`` overwrites at once: 0.6 CPU-s
    for the ResNet-50 teacher (two thirds of its load). Every parameter and persistent buffer is then
    loaded strictly, so no skipped value survives; non-persistent buffers are computed, not drawn. A
    torch-function mode is per thread: another thread initialising a model meanwhile is not affected.
    """

    # by name: Tensor methods, nn.init's fills and wrappers of them (transformers.initialization) each hand
    # themselves to the mode and then run with the mode off, so each must be skipped whole
    SKIP = frozenset({"normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                      "xavier_uniform_", "xavier_normal_", "orthogonal_", "random_", "bernoulli_"})  # fmt: skip

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.SKIP:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; ``str(err)`` is a user-facing sentence."""


class LoadedCheckpoint(NamedTuple):
    """``model, tokenizer, card, extras = load_checkpoint(d)``; ``.config`` is the ModelConfig."""

    model: nn.Module
    tokenizer: object  # PreTrainedTokenizerFast
    card: dict
    extras: dict[str, torch.Tensor]

    @property
    def config(self):
        return self.model.cfg


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    out_dir: str | Path,
    model: nn.Module,
    tokenizer,
    card: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a checkpoint directory (created if needed); returns it. ``card`` is extended, not replaced.

    ``weights_dtype`` (float32 or float16) is the storage type of floating-point weights; the model
    itself is not changed.
    """
    from safetensors.torch import save_file, save_model

    from model.networks import count_parameters

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    if weights_dtype not in (torch.float32, torch.float16):
        raise ValueError(f"weights_dtype must be torch.float32 or torch.float16, not {weights_dtype}")
    stored = model if weights_dtype == torch.float32 else copy.deepcopy(model).to(weights_dtype)
    save_model(stored, str(out / WEIGHTS), metadata={"format": "pt", "arch": cfg.arch_name})
    (out / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2))
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER))
    extras = {k: v.detach().cpu().contiguous() for k, v in (extra_tensors or {}).items()}
    save_file(extras, str(out / EXTRAS), metadata={"format": "pt"})
    full = dict(card or {})
    full.setdefault("model_id", out.name)
    full.setdefault("arch_name", cfg.arch_name)
    full["architecture"] = describe_architecture(cfg)
    full["parameters"] = count_parameters(model)
    full["config"] = cfg.to_dict()
    full["vocab_size"] = len(tokenizer)
    full["weights_sha256"] = sha256_file(out / WEIGHTS)
    full["files"] = {name: sha256_file(out / name) for name in (WEIGHTS, CONFIG, TOKENIZER, EXTRAS)}
    full["weights_bytes"] = (out / WEIGHTS).stat().st_size
    full["weights_dtype"] = str(weights_dtype).removeprefix("torch.")
    full["format_version"] = FORMAT_VERSION
    full.setdefault("saved_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (out / CARD).write_text(json.dumps(full, indent=2, default=str))
    return out


def describe_architecture(cfg) -> str:
    trunk = {"resnet50": "ResNet-50", "mobilenet_v3_small": "MobileNetV3-small", "tiny_cnn": "tiny CNN"}
    return (
        f"{trunk.get(cfg.encoder, cfg.encoder)} image trunk + findings/tumour/subtype/treatment heads + "
        f"GPT-2 decoder ({cfg.n_layers} layer(s), width {cfg.d_model}, {cfg.n_heads} heads) "
        f"cross-attending to patch features and head outputs; input {cfg.image_size}px"
    )


# ----------------------------------------------------------------------------------------------
# Loading


def _require(d: Path, name: str) -> Path:
    p = d / name
    if not p.is_file():
        raise CheckpointError(f"Checkpoint {d} is incomplete: {name} is missing.")
    return p


def _read_json(d: Path, name: str) -> dict:
    p = _require(d, name)
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"Checkpoint {d}: {name} is not valid JSON ({e}).") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"Checkpoint {d}: {name} should hold a JSON object.")
    return doc


def load_card(path: str | Path) -> dict:
    """The model card alone (cheap: no weights read)."""
    return _read_json(Path(path), CARD)


def load_config(path: str | Path):
    from model.networks import ModelConfig

    d = Path(path)
    try:
        return ModelConfig.from_dict(_read_json(d, CONFIG))
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"Checkpoint {d}: {CONFIG} does not describe a model this code can build ({e})."
        ) from None


def load_tokenizer(path: str | Path):
    """The checkpoint's tokenizer as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer

    from model.networks.tokenizer import SPECIAL_TOKENS, wrap_tokenizer

    d = Path(path)
    p = _require(d, TOKENIZER)
    try:
        backend = Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises its own Exception subclass
        raise CheckpointError(f"Checkpoint {d}: {TOKENIZER} cannot be read ({e}).") from None
    for i, s in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(s) != i:
            raise CheckpointError(f"Checkpoint {d}: {TOKENIZER} lacks special token {s} at id {i}.")
    return wrap_tokenizer(backend)


def _load_tensors(d: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(_require(d, name)))
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"Checkpoint {d}: {name} is corrupt or truncated ({e}).") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load and verify a checkpoint written by :func:`save_checkpoint`; the model is in eval mode."""
    from safetensors.torch import load_model

    from model.networks import build_model

    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"No checkpoint at {d}: not a directory.")
    card = load_card(d)
    cfg = load_config(d)
    weights = _require(d, WEIGHTS)
    expected = card.get("weights_sha256")
    if expected:
        actual = sha256_file(weights)
        if actual != expected:
            raise CheckpointError(
                f"Checkpoint {d}: {WEIGHTS} does not match the sha256 in {CARD} "
                f"(expected {expected[:12]}..., found {actual[:12]}...): the file is corrupt, truncated or "
                "was replaced."
            )
    tokenizer = load_tokenizer(d)
    if len(tokenizer) != cfg.vocab_size:
        raise CheckpointError(
            f"Checkpoint {d}: the tokenizer has {len(tokenizer)} tokens but {CONFIG} says vocab_size="
            f"{cfg.vocab_size}."
        )
    with _SkipRandomInit():  # the weights come from the file (strict): no random draws to throw away
        model = build_model(cfg)
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except Exception as e:  # safetensors header errors, shape mismatches, missing keys
        msg = str(e).strip().splitlines()
        raise CheckpointError(
            f"Checkpoint {d}: {WEIGHTS} does not fit {CONFIG} (arch {cfg.arch_name}): {' '.join(msg)[:400]}"
        ) from None
    extras = _load_tensors(d, EXTRAS) if (d / EXTRAS).exists() else {}
    model.to(device).eval()
    return LoadedCheckpoint(model, tokenizer, card, extras)
