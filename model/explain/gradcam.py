"""Grad-CAM heat maps for findings, tumour classes and report sentences (pytorch-grad-cam underneath).

What to explain is a small target callable (pytorch-grad-cam style) applied to the output of a thin
wrapper module that takes one image tensor and returns one tensor:

* ``finding:NAME`` / ``tumour:CLASS``: the wrapper returns the head's logits (B, K); the target picks
  one logit (``ClassifierOutputTarget``).
* ``sentence:I``: the wrapper runs the report decoder teacher-forced on the fixed generated tokens and
  returns per-position log-probabilities of those tokens (B, T); ``SentenceTarget`` sums the log-probs
  of sentence I (Selvaraju et al. 2017 applied to captioning).

Concurrency: pytorch-grad-cam keeps forward hooks on its target layer for its whole life, and a
forward pass from another thread through that layer would pollute the captured activations (the
Predictor's own ``predict`` does not take the lock). So the hooks never go on the shared model: the
wrapper routes the trunk's feature map (``model.cam_layer``'s output) through a per-call
``nn.Identity`` tap, and pytorch-grad-cam hooks that. The CAM is also built, run and released while
holding ``predictor.lock``, because its backward pass writes ``.grad`` on the shared parameters.
Autograd is needed: no ``inference_mode`` here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model.types import FINDINGS, TUMOUR_CLASSES, Explanation, PatientContext, ReportStyle, Study


def _cam_methods() -> dict[str, Callable]:
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM

    return {
        "gradcam": GradCAM,
        "gradcam++": GradCAMPlusPlus,
        "hirescam": HiResCAM,
        "layercam": LayerCAM,
        "eigencam": EigenCAM,
    }


CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam")
SENTENCE_END = {".", "!", "?"}


# ----------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class LogitTarget:
    """Score = one logit of a head's output (B, K) -> per-sample (K,)."""

    index: int

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.index]


@dataclass(frozen=True)
class SentenceTarget:
    """Score = sum of the log-probabilities of the tokens in [start, end) of the teacher-forced report."""

    start: int
    end: int

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.start : self.end].sum(-1)


def sentence_spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """[start, end) token spans of the sentences of a word-level report (a sentence ends at . ! ?)."""
    spans, start = [], 0
    for i, tok in enumerate(tokens):
        if tok in SENTENCE_END:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


def sentence_texts(tokens: Sequence[str]) -> list[str]:
    out = []
    for a, b in sentence_spans(tokens):
        text = " ".join(tokens[a:b])
        out.append(re.sub(r" ([.,;:!?)])", r"\1", text))
    return out


def list_targets(modality: str, tokens: Sequence[str] = ()) -> list[str]:
    """Targets that make sense for a study: findings on CXR, tumour classes on CT, then sentences."""
    base = (
        [f"finding:{n}" for n in FINDINGS] if modality == "CXR" else [f"tumour:{c}" for c in TUMOUR_CLASSES]
    )
    return base + [f"sentence:{i}" for i in range(len(sentence_spans(tokens)))]


# ----------------------------------------------------------------------------------------------
# The module pytorch-grad-cam sees: one tensor in, one tensor out


class _ScoreModule(nn.Module):
    """Wraps a ReportModel: images (1, 1, S, S) -> head logits (1, K) or report-token log-probs (1, T).

    The trunk's feature map (the output of ``model.cam_layer``) flows through ``tap``, an Identity
    owned by this wrapper alone: pytorch-grad-cam hooks ``tap``, so its hooks never sit on the shared
    model and a concurrent forward pass from another session cannot reach them.
    """

    def __init__(
        self,
        model: nn.Module,
        head: str,
        context: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.tap = nn.Identity()  # per-call hook point = model.cam_layer's output
        self.head = head  # "findings" | "tumour" | "tokens"
        self.context = context  # (1, CONTEXT_DIM)
        self.input_ids = input_ids  # (1, L) prompt + report tokens
        self.token_positions = token_positions  # (T,) index in input_ids of each report token

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        ctx = self.context.expand(b, -1)
        # Grad-CAM needs d(score)/d(features) only: run the trunk without a graph and start autograd at
        # the feature map, so backward never walks the (large) encoder. Same map, a fraction of the cost.
        with torch.no_grad():
            trunk = self.model.forward_features(images)  # (B, C, h, w)
        features = self.tap(trunk.detach().requires_grad_(True))
        heads = self.model.forward_heads(features, ctx)
        if self.head == "findings":
            return heads.findings_logits  # (B, n_findings)
        if self.head == "tumour":
            return heads.tumour_logits  # (B, n_tumour)
        ids = self.input_ids.expand(b, -1)  # (B, L)
        lm_logits = self.model.decoder(ids, torch.ones_like(ids), self.model.build_memory(features, heads))
        logp = torch.log_softmax(lm_logits.float(), dim=-1)  # (B, L, V)
        pos = self.token_positions  # the token at p is predicted by the logits at p - 1
        return logp[:, pos - 1, :].gather(-1, ids[:, pos].unsqueeze(-1)).squeeze(-1)  # (B, T)


# ----------------------------------------------------------------------------------------------
# Inputs from the predictor (the one place that knows how Predictor lays out its tensors)


def _image_tensor(predictor, study: Study) -> torch.Tensor:
    """(1, 1, S, S) float tensor: the one resize rule shared by training and serving."""
    if hasattr(predictor, "image_tensor"):  # model.inference.Predictor: knows the served input size
        return predictor.image_tensor(study)
    from model.data.imaging import to_model_input

    size = predictor.model.cfg.image_size
    x = torch.from_numpy(np.ascontiguousarray(to_model_input(study.pixels, size), dtype=np.float32))
    return x[None, None].to(_device(predictor))


def _context_tensor(predictor, context: PatientContext | None) -> torch.Tensor:
    vec = (context or PatientContext()).to_vector()
    return torch.from_numpy(vec)[None].to(_device(predictor))  # (1, CONTEXT_DIM)


def _device(predictor) -> torch.device:
    return next(predictor.model.parameters()).device


def _sequence(
    predictor, study: Study, tokens: Sequence[str], detail: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (1, L), positions (T,)): ``[DETAIL] [MODALITY] words...`` and where the words sit."""
    if hasattr(predictor, "encode_report"):  # model.inference.Predictor
        return predictor.encode_report(list(tokens), study.modality, detail)
    from model.networks import encode_report

    ids, prompt_len = encode_report(predictor.tokenizer, list(tokens), detail=detail, modality=study.modality)
    ids_t = torch.tensor([ids], dtype=torch.long, device=_device(predictor))
    return ids_t, torch.arange(prompt_len, prompt_len + len(tokens), device=ids_t.device)


# ----------------------------------------------------------------------------------------------
# Public API


def parse_target(target: str) -> tuple[str, str]:
    kind, _, name = target.partition(":")
    if kind not in ("finding", "tumour", "sentence") or not name:
        raise ValueError(f"Unknown Grad-CAM target {target!r}: use finding:NAME, tumour:CLASS or sentence:I")
    return kind, name


def _resize(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if heat.shape == shape:
        return heat
    t = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def explain(
    predictor,
    study: Study,
    target: str,
    method: str = "gradcam",
    context: PatientContext | None = None,
    style: ReportStyle | None = None,
    tokens: Sequence[str] | None = None,
) -> Explanation:
    """Heat map (H, W in [0, 1], the size of ``study.pixels``) of ``target`` for one study.

    ``tokens`` are the generated report words for sentence targets; when omitted the report is
    generated first with ``style``.
    """
    kind, name = parse_target(target)
    methods = _cam_methods()
    if method not in methods:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {sorted(methods)}")
    style = style or ReportStyle()
    if kind == "sentence" and tokens is None:
        tokens = predictor.predict(study, context=context, style=style).tokens  # outside the lock

    with torch.inference_mode(False), torch.enable_grad():
        images = _image_tensor(predictor, study).detach().clone().float()
        ctx = _context_tensor(predictor, context)
        if kind == "finding":
            if name not in FINDINGS:
                raise ValueError(f"Unknown finding {name!r}")
            wrapper, cam_target = (
                _ScoreModule(predictor.model, "findings", ctx),
                LogitTarget(FINDINGS.index(name)),
            )
        elif kind == "tumour":
            if name not in TUMOUR_CLASSES:
                raise ValueError(f"Unknown tumour class {name!r}")
            wrapper, cam_target = (
                _ScoreModule(predictor.model, "tumour", ctx),
                LogitTarget(TUMOUR_CLASSES.index(name)),
            )
        else:
            spans = sentence_spans(list(tokens))
            i = int(name)
            if not 0 <= i < len(spans):
                raise ValueError(f"The report has {len(spans)} sentences; sentence:{i} does not exist")
            ids, positions = _sequence(predictor, study, tokens, style.detail)
            a, b = spans[i]
            b = min(b, len(positions))  # the decoder's max_len may have cut the report
            if a >= b:
                raise ValueError(f"sentence:{i} lies beyond the decoder's maximum length")
            wrapper = _ScoreModule(predictor.model, "tokens", ctx, ids, positions)
            cam_target = SentenceTarget(a, b)

        # The brief's rule: hold the model's lock for the CAM's whole life (its backward pass writes
        # .grad on the shared parameters; hooks themselves sit on the per-call ``tap``).
        with predictor.lock:
            was_training = predictor.model.training
            try:
                with methods[method](model=wrapper, target_layers=[wrapper.tap]) as cam:
                    heat = cam(input_tensor=images, targets=[cam_target])[0]  # (S, S) in [0, 1]
                    score = float(cam_target(cam.outputs[0].detach()).item())
            finally:
                predictor.model.train(was_training)
                predictor.model.zero_grad(set_to_none=True)  # free the parameter gradients

    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    heat = np.clip(_resize(heat, study.pixels.shape), 0.0, 1.0)
    return Explanation(heatmap=heat, target=target, method=method, score=score)


# ----------------------------------------------------------------------------------------------
# Drawing (pure numpy)


def _jet(x: np.ndarray) -> np.ndarray:
    """Jet-like colour map: (H, W) in [0, 1] -> (H, W, 3) in [0, 1]."""
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a heat map over a grey image: RGB uint8 (H, W, 3). ``alpha`` = heat-map opacity."""
    grey = np.clip(np.asarray(pixels, dtype=np.float32), 0, 1)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if heat.shape != grey.shape:
        heat = _resize(heat, grey.shape)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    rgb = (1 - alpha) * grey[..., None] + alpha * _jet(heat)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
