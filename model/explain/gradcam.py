"""Grad-CAM heat maps for findings, tumour classes and report sentences (the maps: ``model/explain/cam.py``).

What to explain is a small target callable (pytorch-grad-cam style) applied to the output of a thin
wrapper module that takes one image tensor and returns one tensor:

* ``finding:NAME`` / ``tumour:CLASS``: the wrapper returns the head's logits (B, K); the target picks
  one logit (``LogitTarget``: pytorch-grad-cam's ``ClassifierOutputTarget`` for a (B, K) output).
* ``sentence:I``: the wrapper runs the report decoder teacher-forced on the fixed generated tokens and
  returns per-position log-probabilities of those tokens (B, T); ``SentenceTarget`` sums the log-probs
  of sentence I (Selvaraju et al. 2017 applied to captioning).

Concurrency: a forward hook on a module of the shared model would catch a concurrent forward pass from
another session, and ``.backward()`` would write ``.grad`` on the shared parameters. So the hook never
goes on the shared model: the wrapper routes the trunk's feature map (``model.cam_layer``'s output)
through a per-call ``nn.Identity`` tap, hooked for one forward pass; and the gradient is taken with
``torch.autograd.grad`` w.r.t. the tapped activations alone (``cam.activations_and_gradients``), so no
parameter gradient is computed or stored and no lock is needed. Autograd is needed: no
``inference_mode`` here.

Which feature map: ``CAM_LAYERS`` names, per image trunk, the stages a CAM can sit on (torchvision
module names); ``DEFAULT_CAM_LAYER`` is the choice measured by ``benchmarks/bench_cam.py`` (pointing
game on the validation phantoms). At 128 px a stride-32 trunk leaves a 4 x 4 grid; the stride-16
stage (ResNet-50 ``layer3``, MobileNetV3 ``features.8``) gives 8 x 8. The trunk runs without a graph up
to the chosen stage, the tap sits on that stage's output, and the rest of the trunk runs with autograd.

A flat map (``Explanation.flat``): the CAM (as pytorch-grad-cam) min-max normalises the ReLU'd map, so any map with
positive, non-uniform evidence peaks at 1; a map that is all zero (no positive evidence, or uniform
evidence that the min subtraction removes) or whose raw range is at the 1e-7 epsilon of that
normalisation peaks far below it. ``FLAT_MAX`` (0.5) separates the two; flat maps carry no location.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model.explain.cam import CAM_FUNCTIONS, USES_GRADIENTS, activations_and_gradients, class_activation_map
from model.networks.tokenizer import SENTENCE_END, detokenize
from model.types import FINDINGS, TUMOUR_CLASSES, Explanation, PatientContext, ReportStyle, Study

#: "lesion" is not a CAM: the model's own lesion map (``ModelConfig.head_pool`` "lesion"), see ``lesion_map``
LESION_METHOD = "lesion"
CAM_METHODS: tuple[str, ...] = (
    *CAM_FUNCTIONS,
    LESION_METHOD,
)  # gradcam, gradcam++, hirescam, layercam, eigencam
FLAT_MAX = 0.5  # a normalised CAM whose maximum is below this has no localised positive evidence
LESION_FLAT_P = 0.1  # a lesion map whose most likely cell is below this probability shows no lesion


def _resnet_stages(trunk) -> list[tuple[str, Callable]]:
    stem = lambda x: trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))  # noqa: E731  (B, 64, S/4, S/4)
    return [("stem", stem), ("layer1", trunk.layer1), ("layer2", trunk.layer2), ("layer3", trunk.layer3),
            ("layer4", trunk.layer4)]  # fmt: skip


def _sequential_stages(prefix: str) -> Callable:
    return lambda trunk: [(f"{prefix}.{i}", m) for i, m in enumerate(getattr(trunk, prefix))]


#: encoder -> the trunk as named stages in order (torchvision names), for splitting at a CAM layer
TRUNK_STAGES: dict[str, Callable] = {
    "resnet50": _resnet_stages,
    "mobilenet_v3_small": _sequential_stages("features"),
    "tiny_cnn": _sequential_stages("blocks"),
}
#: encoder -> CAM layers offered (name -> output stride); the first is the trunk's last stage
CAM_LAYERS: dict[str, dict[str, int]] = {
    "resnet50": {"layer4": 32, "layer3": 16},
    "mobilenet_v3_small": {"features.12": 32, "features.8": 16},
    "tiny_cnn": {"blocks.3": 16, "blocks.2": 8},
}
#: the method the page and the evaluation start from (benchmarks/results/cam.md, validation phantoms): the
#: lesion map pointed 0.50 (teacher) / 0.25 (student) where the best Grad-CAM variant pointed 0.33 / 0.24
DEFAULT_CAM_METHOD = LESION_METHOD
#: the default for a model without a lesion map (an older checkpoint): the previous choice, HiResCAM
FALLBACK_CAM_METHOD = "hirescam"
#: encoder -> the CAM layer used when none is asked for (see benchmarks/results/cam.json)
DEFAULT_CAM_LAYER: dict[str, str] = {  # stride 16 won on both shipped models (cam.json)
    "resnet50": "layer3",
    "mobilenet_v3_small": "features.8",
    "tiny_cnn": "blocks.3",  # test trunk: its last stage
}


def cam_layers(model) -> dict[str, int]:
    """CAM layers a model offers: name -> output stride."""
    return dict(CAM_LAYERS[model.cfg.encoder])


def default_cam_layer(model) -> str:
    return DEFAULT_CAM_LAYER[model.cfg.encoder]


def has_lesion_map(model) -> bool:
    """True when the model's heads read a lesion map (``ModelConfig.head_pool == "lesion"``)."""
    return getattr(model, "lesion", None) is not None


def methods_for(model) -> tuple[str, ...]:
    """The explanation methods a model offers: every CAM, and its lesion map where it has one."""
    return CAM_METHODS if has_lesion_map(model) else tuple(m for m in CAM_METHODS if m != LESION_METHOD)


def default_method_for(model, wanted: str = DEFAULT_CAM_METHOD) -> str:
    """``wanted`` when the model offers it, else ``FALLBACK_CAM_METHOD`` (a model without a lesion map)."""
    return wanted if wanted in methods_for(model) else FALLBACK_CAM_METHOD


def is_flat(heatmap: np.ndarray) -> bool:
    """True when a (normalised) CAM holds no localised positive evidence (see the module docstring)."""
    h = np.asarray(heatmap, dtype=np.float32)
    return bool(not np.isfinite(h).all() or h.size == 0 or float(h.max()) < FLAT_MAX)


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
    """[start, end) token spans of the sentences of a word-level report (a sentence ends at ".")."""
    spans, start = [], 0
    for i, tok in enumerate(tokens):
        if tok == SENTENCE_END:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


def sentence_texts(tokens: Sequence[str]) -> list[str]:
    return [detokenize(tokens[a:b]) for a, b in sentence_spans(tokens)]


def list_targets(modality: str, tokens: Sequence[str] = ()) -> list[str]:
    """Targets that make sense for a study: findings on CXR, tumour classes on CT, then sentences."""
    base = (
        [f"finding:{n}" for n in FINDINGS] if modality == "CXR" else [f"tumour:{c}" for c in TUMOUR_CLASSES]
    )
    return base + [f"sentence:{i}" for i in range(len(sentence_spans(tokens)))]


# ----------------------------------------------------------------------------------------------
# The module the CAM sees: one tensor in, one tensor out


class _ScoreModule(nn.Module):
    """Wraps a ReportModel: images (1, 1, S, S) -> head logits (1, K) or report-token log-probs (1, T).

    The trunk's feature map (the output of ``model.cam_layer``) flows through ``tap``, an Identity
    owned by this wrapper alone: the CAM hooks ``tap``, so its hook never sits on the shared
    model and a concurrent forward pass from another session cannot reach them.
    """

    def __init__(
        self,
        model: nn.Module,
        head: str,
        context: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
        layer: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.layer = layer  # CAM layer (a stage name of CAM_LAYERS); None = the trunk's last stage
        self.tap = nn.Identity()  # per-call hook point = the CAM layer's output
        self.head = head  # "findings" | "tumour" | "tokens"
        self.context = context  # (1, CONTEXT_DIM)
        self.input_ids = input_ids  # (1, L) prompt + report tokens
        self.token_positions = token_positions  # (T,) index in input_ids of each report token

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        ctx = self.context.expand(b, -1)
        # Grad-CAM needs d(score)/d(CAM layer) only: run the trunk without a graph up to that layer and
        # start autograd there, so backward never walks the stages before it. Same map, less cost.
        if self.layer is None or self.layer == _last_stage(self.model):
            with torch.no_grad():
                trunk = self.model.forward_features(images)  # (B, C, h, w)
            features = self.tap(trunk.detach().requires_grad_(True))
        else:
            before, after = _split_trunk(self.model, self.layer)
            with torch.no_grad():
                mid = before(images)  # (B, C', 2h, 2w) at stride 16
            features = after(self.tap(mid.detach().requires_grad_(True)))  # (B, C, h, w)
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


def _last_stage(model) -> str:
    return TRUNK_STAGES[model.cfg.encoder](model.encoder.trunk)[-1][0]


def _split_trunk(model, layer: str) -> tuple[Callable, Callable]:
    """(before, after): images -> the output of ``layer``; that output -> the trunk's features.

    ``before`` repeats ``ReportModel.forward_features``'s input steps (per-image standardisation when
    ``cfg.input_norm`` asks for it, grey -> trunk channels, normalisation); a test checks that
    ``after(before(x)) == forward_features(x)``.
    """
    from model.networks.multitask import standardize_images

    encoder = model.encoder
    stages = TRUNK_STAGES[model.cfg.encoder](encoder.trunk)
    names = [n for n, _ in stages]
    if layer not in CAM_LAYERS[model.cfg.encoder] or layer not in names:
        raise ValueError(
            f"Unknown CAM layer {layer!r} for a {model.cfg.encoder} trunk; choose one of "
            f"{sorted(CAM_LAYERS[model.cfg.encoder])}"
        )
    k = names.index(layer) + 1

    def before(images: torch.Tensor) -> torch.Tensor:
        if getattr(model.cfg, "input_norm", "none") == "per_image":
            images = standardize_images(images)
        c = encoder.trunk.in_channels
        x = images.mean(1, keepdim=True).expand(-1, c, -1, -1) if images.shape[1] != c else images
        x = (x - encoder.mean) / encoder.std
        for _, stage in stages[:k]:
            x = stage(x)
        return x

    def after(x: torch.Tensor) -> torch.Tensor:
        for _, stage in stages[k:]:
            x = stage(x)
        return x

    return before, after


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
    method: str | None = None,
    context: PatientContext | None = None,
    style: ReportStyle | None = None,
    tokens: Sequence[str] | None = None,
    layer: str | None = None,
) -> Explanation:
    """Heat map (H, W in [0, 1], the size of ``study.pixels``) of ``target`` for one study.

    ``tokens`` are the generated report words for sentence targets; when omitted the report is
    generated first with ``style``. ``layer``: one of ``cam_layers(predictor.model)``; None = the
    model's default (``DEFAULT_CAM_LAYER``).
    """
    kind, name = parse_target(target)
    method = method or default_method_for(predictor.model)  # the lesion map where the model has one
    if method == LESION_METHOD:
        return lesion_map(predictor, study, target, context=context, style=style, tokens=tokens)
    if method not in CAM_FUNCTIONS:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)}")
    layer = layer or default_cam_layer(predictor.model)
    if layer not in cam_layers(predictor.model):
        raise ValueError(
            f"Unknown CAM layer {layer!r} for this model; choose one of {sorted(cam_layers(predictor.model))}"
        )
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
                _ScoreModule(predictor.model, "findings", ctx, layer=layer),
                LogitTarget(FINDINGS.index(name)),
            )
        elif kind == "tumour":
            if name not in TUMOUR_CLASSES:
                raise ValueError(f"Unknown tumour class {name!r}")
            wrapper, cam_target = (
                _ScoreModule(predictor.model, "tumour", ctx, layer=layer),
                LogitTarget(TUMOUR_CLASSES.index(name)),
            )
        else:
            a, b = _sentence_span(tokens, name)
            ids, positions = _sequence(predictor, study, tokens, style.detail)
            b = min(b, len(positions))  # the decoder's max_len may have cut the report
            if a >= b:
                raise ValueError(f"sentence:{name} lies beyond the decoder's maximum length")
            wrapper = _ScoreModule(predictor.model, "tokens", ctx, ids, positions, layer=layer)
            cam_target = SentenceTarget(a, b)

        # No lock and no mode switch: the hook sits on the wrapper's own ``tap``, and the gradient is taken
        # w.r.t. the tapped activations only (``torch.autograd.grad``), so nothing on the shared model is
        # written (no ``.grad``, no ``.train()``); a concurrent ``predict`` cannot see or disturb it.
        activations, grads, output = activations_and_gradients(
            wrapper, wrapper.tap, images, cam_target, need_gradients=USES_GRADIENTS[method]
        )
        heat = class_activation_map(method, activations, grads, tuple(images.shape[-2:]))[0]  # (S, S)
        score = float(cam_target(output.detach())[0].item())
        del activations, grads, output  # the graph holds the trunk's activations: free it now

    heat = np.asarray(heat, dtype=np.float32)
    flat = is_flat(heat)  # before resizing: the normalised map
    heat = (
        np.zeros(study.pixels.shape, np.float32) if flat else np.clip(_resize(heat, study.pixels.shape), 0, 1)
    )
    return Explanation(heatmap=heat, target=target, method=method, score=score, flat=flat, layer=layer)


def _sentence_span(tokens: Sequence[str] | None, name: str) -> tuple[int, int]:
    """(start, end) token indices of report sentence ``name`` (``sentence:I``'s I); a clear error when absent."""
    spans = sentence_spans(list(tokens or ()))
    i = int(name)
    if not 0 <= i < len(spans):
        raise ValueError(f"The report has {len(spans)} sentences; sentence:{i} does not exist")
    return spans[i]


def _lesion_channel(kind: str, name: str, tokens: Sequence[str] | None) -> str | None:
    """Which ``LESION_CHANNELS`` map explains a target; None when no lesion is named (tumour:none, or a
    sentence that states no finding). A sentence is read by the report labeler: its first positive
    finding (or tumour) names the channel."""
    from model.types import LESION_CHANNELS

    if kind == "finding":
        if name not in FINDINGS:
            raise ValueError(f"Unknown finding {name!r}")
        return name
    if kind == "tumour":
        if name not in TUMOUR_CLASSES:
            raise ValueError(f"Unknown tumour class {name!r}")
        return None if name == TUMOUR_CLASSES[0] else "tumour"
    from model.data.labeler import label_report

    a, b = _sentence_span(tokens, name)
    labels = label_report(detokenize(list(tokens)[a:b]))
    for channel in LESION_CHANNELS:
        keys = ("tumour_benign", "tumour_malignant") if channel == "tumour" else (channel,)
        if any(labels.get(k) == "positive" for k in keys):
            return channel
    return None


def lesion_map(
    predictor,
    study: Study,
    target: str,
    context: PatientContext | None = None,
    style: ReportStyle | None = None,
    tokens: Sequence[str] | None = None,
) -> Explanation:
    """The model's own lesion map for ``target`` (method "lesion"): no gradient, one forward pass.

    A model with ``head_pool`` "lesion" predicts, from its last trunk stage, a map per finding and for
    the CT tumour (trained on the phantoms' masks); its heads pool the features where that map is high.
    So this map is where the model itself looked, not a post-hoc attribution. After a ``predict`` of the
    same study the trunk is not run again (``Predictor.image_features``). ``finding:NAME`` -> that
    finding's channel; ``tumour:benign|malignant`` -> the tumour channel (``tumour:none`` names no
    lesion: flat); ``sentence:I`` -> the channel of the first finding the sentence states (the report
    labeler), flat when it states none. The map is the per-cell probability, normalised to a peak of 1;
    ``score`` is the peak probability, and a map whose peak is below ``LESION_FLAT_P`` is flat.
    """
    from model.types import LESION_CHANNELS

    kind, name = parse_target(target)
    model = predictor.model
    if not has_lesion_map(model):
        raise ValueError(
            "This model has no lesion map (its heads do not use head_pool 'lesion'); choose a Grad-CAM method"
        )
    style = style or ReportStyle()
    if kind == "sentence" and tokens is None:
        tokens = predictor.predict(study, context=context, style=style).tokens
    channel = _lesion_channel(kind, name, tokens)
    layer = _last_stage(model)
    if channel is None:
        return Explanation(
            heatmap=np.zeros(study.pixels.shape, np.float32), target=target, method=LESION_METHOD,
            score=0.0, flat=True, layer=layer,
        )  # fmt: skip
    with torch.inference_mode():
        images = _image_tensor(predictor, study).float()
        # the Predictor keeps the trunk output of the study it just predicted: the map then costs the heads only
        cached = getattr(predictor, "image_features", None)
        features = cached(images) if cached is not None else model.forward_features(images)
        heads = model.forward_heads(features, _context_tensor(predictor, context))
        prob = torch.sigmoid(heads.lesion_logits[0, LESION_CHANNELS.index(channel)].float())  # (h, w)
        size = tuple(images.shape[-2:])
        heat = torch.nn.functional.interpolate(
            prob[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()  # (S, S): the input frame
    peak = float(prob.max())
    flat = peak < LESION_FLAT_P or not np.isfinite(heat).all()
    top = float(heat.max()) if heat.size else 0.0
    heat = (
        np.zeros(study.pixels.shape, np.float32)
        if flat or top <= 0
        else np.clip(_resize(heat / top, study.pixels.shape), 0, 1)
    )
    return Explanation(heatmap=heat, target=target, method=LESION_METHOD, score=peak, flat=flat, layer=layer)


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
