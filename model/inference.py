"""Predictor: Study (+ PatientContext, ReportStyle) -> Prediction. The app's only door to a model.

One Predictor wraps one checkpoint. It is safe to call from several threads at once: every call
runs under ``torch.inference_mode`` with its own tensors and caches, and nothing on the Predictor
changes after construction. ``lock`` is for callers that attach hooks to the shared model
(Grad-CAM holds it for the CAM's whole life).

Out-of-distribution score: Mahalanobis-type distance of the pooled image features to statistics of
the validation images stored with the checkpoint (``fit_ood_stats``), in a probabilistic-PCA form
(top-k principal directions with shrunk variances + one isotropic variance for the rest), divided by
the feature dimension so that in-distribution images score about 1. The flag threshold is the 99th
percentile of held-out validation scores, so about 1% of in-distribution images are flagged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from model.types import (
    FINDINGS,
    TREATMENT_LABELS,
    TREATMENTS,
    TUMOUR_CLASSES,
    TUMOUR_SUBTYPES,
    Finding,
    PatientContext,
    Prediction,
    ReportStyle,
    Study,
    TreatmentSuggestion,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIR = ROOT / "assets" / "checkpoints"
SHIPPED_MODELS: tuple[str, ...] = ("teacher", "student", "student_nokd")
OOD_KEYS: tuple[str, ...] = ("ood_mean", "ood_components", "ood_eigvals", "ood_residual_var", "ood_threshold")
#: what the report decoder's memory embeds of the heads (issue 10): "labels" = the heads' thresholded
#: calls, as in label-conditioned training (``TrainConfig.label_cond_p``), so the report states what the
#: heads call present; "probs" = their raw probabilities. A card may set ``report_conditioning``.
REPORT_CONDITIONING = "labels"
DEFAULT_FINDING_THRESHOLD = 0.5  # where the card has no validation thresholds (``thresholds.findings``)


def shipped_checkpoint(name: str) -> Path:
    """``assets/checkpoints/NAME`` for "teacher" | "student" | "student_nokd"."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"unknown shipped model {name!r}; choose one of {SHIPPED_MODELS}")
    return SHIPPED_DIR / name


def resolve_checkpoint(spec: str | Path) -> Path:
    """A shipped model name or a checkpoint directory."""
    return shipped_checkpoint(str(spec)) if str(spec) in SHIPPED_MODELS else Path(spec)


def _to_model_input(pixels: np.ndarray, size: int) -> np.ndarray:
    from model.data.imaging import to_model_input

    return to_model_input(pixels, size)


def _reason(name: str, findings: list[Finding], tumour: str | None, context: PatientContext) -> str:
    try:
        from model.data.formulary import reason_for
    except ImportError:  # formulary not available: a generic, honest sentence
        return f"{TREATMENT_LABELS[name]}: model output (no rulebook available). Educational only."
    return reason_for(name, findings, tumour, context)


def _supported(findings: list[Finding], tumour: str | None, context: PatientContext) -> set[str] | None:
    """Treatments the rulebook suggests for these findings and this patient (None: no rulebook)."""
    try:
        from model.data.formulary import suggest_treatments
    except ImportError:
        return None
    return {t.name for t in suggest_treatments(findings, tumour, context)}


# ----------------------------------------------------------------------------------------------
# OOD statistics


@torch.inference_mode()
def pooled_features(
    model, images: torch.Tensor | Iterable, context: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """(N, C) pooled features of images given as one (N, 1, S, S) tensor or an iterable of batches
    (tensors, or dicts with an "images" key)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if isinstance(images, torch.Tensor):
        images = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    out = []
    for b in images:
        x = b["images"] if isinstance(b, dict) else b
        out.append(model.forward_features(x.float().to(device)).mean((2, 3)).double().cpu())
    model.train(was_training)
    return torch.cat(out)


def fit_ood_stats(
    model,
    images: torch.Tensor | Iterable,
    context: torch.Tensor | None = None,
    max_components: int = 64,
    shrinkage: float = 0.1,
    quantile: float = 0.99,
) -> dict[str, torch.Tensor]:
    """Mahalanobis statistics of pooled features on validation images, for ``extras.safetensors``.

    The statistics are fitted on half of the images (even indices) and the threshold is the
    ``quantile`` of the scores of the other half, so it is calibrated on images the statistics have
    not seen (fewer than 4 images: both on all). ``context`` is accepted for the trainer's call
    signature; the score depends on the image only.
    """
    x = pooled_features(model, images)  # (N, C) float64
    n = x.shape[0]
    if n < 2:
        raise ValueError("fit_ood_stats needs at least two images")
    fit, calib = (x[0::2], x[1::2]) if n >= 4 else (x, x)
    mean = fit.mean(0)
    xc = fit - mean  # (n_fit, C)
    c = x.shape[1]
    # keep at most half of the fitted sample's directions, so the residual variance is estimated
    # from real spread and not from the numerical floor (small validation sets)
    k = max(1, min(max_components, (fit.shape[0] - 1) // 2, c - 1))
    _, s, vt = torch.linalg.svd(xc / max(1, fit.shape[0] - 1) ** 0.5, full_matrices=False)
    eig = s[:k] ** 2  # (k,) variances along the principal directions
    total = float((s**2).sum())
    avg = max(total / c, 1e-12)  # mean variance per dimension
    residual = max((total - float(eig.sum())) / max(1, c - k), 1e-3 * avg)
    eig = (1 - shrinkage) * eig + shrinkage * avg  # shrink towards the average (Ledoit-Wolf style)
    stats = {
        "ood_mean": mean.float(),
        "ood_components": vt[:k].float().contiguous(),  # (k, C)
        "ood_eigvals": eig.float(),
        "ood_residual_var": torch.tensor([residual], dtype=torch.float32),
    }
    scores = ood_scores(calib.float(), stats)
    stats["ood_threshold"] = torch.tensor([float(np.quantile(scores.numpy(), quantile))], dtype=torch.float32)
    stats["ood_n"] = torch.tensor([n], dtype=torch.float32)
    return stats


def ood_scores(pooled: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) sqrt(d^2 / C): d^2 = sum_k z_k^2 / lambda_k + ||residual||^2 / sigma^2 (probabilistic PCA)."""
    xc = pooled.float() - stats["ood_mean"]  # (N, C)
    z = xc @ stats["ood_components"].t()  # (N, k)
    resid = xc - z @ stats["ood_components"]  # (N, C)
    d2 = (z**2 / stats["ood_eigvals"]).sum(1) + (resid**2).sum(1) / stats["ood_residual_var"]
    return (d2 / xc.shape[1]).sqrt()


# ----------------------------------------------------------------------------------------------
# The predictor


class Predictor:
    """One loaded checkpoint; ``predict`` is safe to call from several threads."""

    def __init__(self, model, tokenizer, card: dict, extras: dict[str, torch.Tensor], model_id: str):
        from model.networks.tokenizer import SENTENCE_END

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.card = card
        self.extras = extras
        self.model_id = model_id
        self.cfg = model.cfg
        self.lock = threading.Lock()
        self.image_size = _served_image_size(card, self.cfg.image_size)
        self.device = next(model.parameters()).device
        vocab = tokenizer.get_vocab()
        self._vocab = dict(vocab)  # word -> id (read only)
        self._words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])]  # id -> word
        self._period = vocab.get(SENTENCE_END)
        self._ood = (
            {k: extras[k].to(self.device) for k in OOD_KEYS} if all(k in extras for k in OOD_KEYS) else None
        )
        self.ood_probe = None  # the input guard's probe for these weights (model/guard/ood.py), if any
        self.report_conditioning = str(card.get("report_conditioning") or REPORT_CONDITIONING)
        self.finding_thresholds = _finding_thresholds(card)  # FINDINGS -> the head's "present" threshold

    @classmethod
    def from_dir(cls, path: str | Path, model_id: str | None = None, device: str = "cpu") -> Predictor:
        """Load a checkpoint directory (or a shipped name); ``model_id`` defaults to the card's."""
        from model.checkpoints import load_checkpoint

        d = resolve_checkpoint(path)
        model, tokenizer, card, extras = load_checkpoint(d, device=device)
        predictor = cls(model, tokenizer, card, extras, model_id or card.get("model_id") or d.name)
        from model.guard.ood import attach_probe

        attach_probe(predictor)  # only when the guard's probe was fitted on these very weights
        return predictor

    # -- inputs -------------------------------------------------------------------------------------
    def image_tensor(self, study: Study) -> torch.Tensor:
        """(1, 1, S, S) model input of a study (the one resize rule shared with training)."""
        x = _to_model_input(study.pixels, self.image_size)
        return torch.from_numpy(x)[None, None].to(self.device)

    def context_tensor(self, context: PatientContext | None) -> torch.Tensor:
        return torch.from_numpy((context or PatientContext()).to_vector())[None].to(self.device)

    def encode_text(self, report: str) -> list[int]:
        """Word ids of a report text (no control tokens, no [EOS])."""
        return list(self.tokenizer.backend_tokenizer.encode(report, add_special_tokens=False).ids)

    def _word_ids(self, tokens: Sequence[str] | Sequence[int] | str) -> list[int]:
        if isinstance(tokens, str):
            return self.encode_text(tokens)
        from model.networks.tokenizer import UNK_ID

        return [int(t) if not isinstance(t, str) else self._vocab.get(t, UNK_ID) for t in tokens]

    def encode_report(
        self, tokens: Sequence[str] | Sequence[int] | str, modality: str, detail: str = "standard"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids (1, P + T), positions (T,))``: prompt + report words as the decoder sees them."""
        from model.networks.tokenizer import prompt_ids

        prompt = prompt_ids(detail, modality)
        body = self._word_ids(tokens)[: self.cfg.max_len - len(prompt)]
        ids = torch.tensor([prompt + body], dtype=torch.long, device=self.device)
        return ids, torch.arange(len(prompt), len(prompt) + len(body), device=self.device)

    # -- report conditioning (issue 10) -----------------------------------------------------------
    def memory_probs(self, heads, modalities: Sequence[str]) -> torch.Tensor | None:
        """(B, n_findings + n_tumour) values the decoder memory embeds instead of the heads' probabilities
        (NaN = keep the head's), or None under "probs" conditioning. Same layout as training's
        ``label_memory_probs``: CXR rows carry the findings thresholded at ``finding_thresholds``, CT rows
        the one-hot argmax tumour class; the other part stays the head's."""
        if self.report_conditioning != "labels":
            return None
        f = torch.sigmoid(heads.findings_logits.float())  # (B, n_findings)
        thr = torch.tensor([self.finding_thresholds[n] for n in FINDINGS], device=f.device)
        calls = (f >= thr).float()
        onehot = torch.nn.functional.one_hot(heads.tumour_logits.argmax(-1), len(TUMOUR_CLASSES)).float()
        cxr = torch.tensor([m == "CXR" for m in modalities], device=f.device)[:, None]  # (B, 1)
        nan = float("nan")
        return torch.cat(
            [
                torch.where(cxr, calls, torch.full_like(calls, nan)),
                torch.where(cxr, torch.full_like(onehot, nan), onehot),
            ],
            1,
        )

    def report_conflicts(
        self, modality: str, findings: dict[str, float], tumour: dict[str, float], report: str
    ) -> list[str]:
        """Where ``report`` contradicts the heads at ``finding_thresholds``: "denied:NAME" / "asserted:NAME"."""
        from model.evaluate.clinical import default_labeler
        from model.evaluate.consistency import case_consistency, head_calls, report_calls

        head = head_calls(modality, findings, tumour, self.finding_thresholds)
        c = case_consistency(head, report_calls(modality, default_labeler()(report)))
        return [f"denied:{n}" for n in c["denied"]] + [f"asserted:{n}" for n in c["asserted"]]

    def decode(self, features, heads, prompts, style: ReportStyle, modalities: Sequence[str]):
        """Report ids and token probabilities from computed features and heads (``decode_report`` with the
        Predictor's conditioning)."""
        from model.networks.generation import decode

        memory = self.model.build_memory(features, heads, self.memory_probs(heads, modalities))
        return decode(self.model.decoder, memory, prompts, style, self._period)

    # -- outputs ------------------------------------------------------------------------------------
    def ood_score(self, pooled: torch.Tensor, modality: str | None = None) -> tuple[float, bool]:
        """(score, flagged): the guard's probe for ``modality`` when one fits these weights, else the
        checkpoint's Mahalanobis score."""
        if self.ood_probe is not None:
            score = self.ood_probe.score(pooled, modality)
            return score, bool(score > self.ood_probe.threshold(modality))
        if self._ood is None:
            return float("nan"), False
        score = float(ood_scores(pooled, self._ood)[0])
        return score, bool(score > float(self._ood["ood_threshold"][0]))

    def ood_threshold(self, modality: str | None = None) -> float:
        if self.ood_probe is not None:
            return self.ood_probe.threshold(modality)
        return float(self._ood["ood_threshold"][0]) if self._ood is not None else float("nan")

    def predict(
        self, study: Study, context: PatientContext | None = None, style: ReportStyle | None = None
    ) -> Prediction:
        """Findings, tumour, treatments with reasons, the report and per-stage latency for one study."""
        from model.networks.generation import end_on_sentence, token_budget
        from model.networks.tokenizer import detokenize

        style = style or ReportStyle()
        context = context or PatientContext()
        t0 = time.perf_counter()
        with torch.inference_mode():
            images = self.image_tensor(study)
            ctx = self.context_tensor(context)
            prompts = self.model.prompts(style.detail, study.modality, 1)
            t1 = time.perf_counter()
            features = self.model.forward_features(images)  # (1, C, h, w)
            t2 = time.perf_counter()
            heads = self.model.forward_heads(features, ctx)
            f_prob = torch.sigmoid(heads.findings_logits)[0].tolist()
            t_prob = torch.softmax(heads.tumour_logits, -1)[0].tolist()
            s_prob = torch.softmax(heads.subtype_logits, -1)[0].tolist()
            tr_prob = torch.sigmoid(heads.treatment_logits)[0].tolist()
            t3 = time.perf_counter()
            ids, probs = self.decode(features, heads, prompts, style, [study.modality])
            budget = token_budget(style, self.cfg.max_len, prompts.shape[1])
            ids, probs, truncated = end_on_sentence(ids[0], probs[0], budget, style, self._period)
            tokens = [self._words[i] for i in ids]
            report = detokenize(tokens)
            t4 = time.perf_counter()
            ood, flag = self.ood_score(heads.pooled, study.modality)
        findings = dict(zip(FINDINGS, f_prob, strict=True))
        tumour = dict(zip(TUMOUR_CLASSES, t_prob, strict=True))
        treatments = self._treatments(study, findings, tumour, tr_prob, context)
        ms = lambda a, b: round((b - a) * 1e3, 3)  # noqa: E731
        return Prediction(
            model_id=self.model_id,
            modality=study.modality,
            findings=findings,
            tumour=tumour,
            treatments=treatments,
            report=report,
            tokens=tokens,
            token_probs=[float(p) for p in probs],
            latency_ms={
                "preprocess": ms(t0, t1),
                "encode": ms(t1, t2),
                "heads": ms(t2, t3),
                "decode": ms(t3, t4),
                "total": ms(t0, t4),
            },
            ood_score=ood,
            ood_flag=flag,
            tumour_subtype=dict(zip(TUMOUR_SUBTYPES, s_prob, strict=True)),
            ood_threshold=self.ood_threshold(study.modality),
            ood_method="guard_probe" if self.ood_probe is not None else "mahalanobis",
            truncated=truncated,
            token_limit=budget,
            report_conflicts=self.report_conflicts(study.modality, findings, tumour, report),
        )

    def _treatments(
        self, study: Study, findings: dict[str, float], tumour: dict[str, float], probs: list[float], context
    ) -> list[TreatmentSuggestion]:
        """All formulary items, most probable first, each with the rulebook's reason on the model's findings
        and whether the rulebook supports it there (``split_treatments`` decides what is shown)."""
        thresholds = self.finding_thresholds  # the heads' "present" calls, as the report states them
        present = (
            [Finding(name=n) for n, p in findings.items() if p >= thresholds.get(n, 0.5)]
            if study.modality == "CXR"
            else []
        )
        tumour_class = max(tumour, key=tumour.get) if study.modality == "CT" else None
        supported = _supported(present, tumour_class, context)
        out = [
            TreatmentSuggestion(
                name=n,
                probability=float(p),
                reason=_reason(n, present, tumour_class, context),
                supported=None if supported is None else n in supported,
            )
            for n, p in zip(TREATMENTS, probs, strict=True)
        ]
        return sorted(out, key=lambda t: -t.probability)

    @torch.inference_mode()
    def teacher_forced_probs(
        self,
        study: Study,
        tokens: Sequence[str] | Sequence[int] | str,
        context: PatientContext | None = None,
        detail: str = "standard",
    ) -> np.ndarray:
        """(T, V) next-token distributions with the decoder forced on ``tokens``: row t is the model's
        distribution over the word at position t given the image and the words before it."""
        ids, positions = self.encode_report(tokens, study.modality, detail)
        features = self.model.forward_features(self.image_tensor(study))
        heads = self.model.forward_heads(features, self.context_tensor(context))
        memory = self.model.build_memory(features, heads, self.memory_probs(heads, [study.modality]))
        lm_logits = self.model.decoder(ids, torch.ones_like(ids), memory)  # as ``predict`` conditions it
        logits = lm_logits[0, positions - 1]  # (T, V): logits at p - 1 predict the token at p
        return torch.softmax(logits.float(), -1).cpu().numpy()


def _finding_thresholds(card: dict) -> dict[str, float]:
    """The card's validation thresholds per finding (``thresholds.findings``), else 0.5 each."""
    given = (card.get("thresholds") or {}).get("findings") or {}
    return {n: float(given.get(n, DEFAULT_FINDING_THRESHOLD)) for n in FINDINGS}


def _served_image_size(card: dict, default: int) -> int:
    """The input size the weights were trained at: the trainer's data config when it says so."""
    size = ((card.get("training") or {}).get("data_config") or {}).get("image_size")
    return int(size) if size else int(default)
