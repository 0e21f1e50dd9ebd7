"""Predictor: Study (+ PatientContext, ReportStyle) -> Prediction. The app's only door to a model.

One Predictor wraps one checkpoint. It is safe to call from several threads at once: every call
runs under ``torch.inference_mode`` with its own tensors and caches, and nothing on the Predictor
changes after construction but a small bounded cache of image features: ``predict`` stores the trunk's
features of the study it just encoded, and ``teacher_forced_probs`` (the divergence highlights: four
teacher-forced passes per upload) reuses them instead of running the trunk again. ``predict`` itself
always encodes, so the latency it reports is the model's. ``lock`` is for callers that need the shared
model to themselves.

Out-of-distribution score: the input guard's probe for these weights (``model/guard/ood.py``) when one
fits, else the checkpoint's own Mahalanobis statistics (``model/ood.py``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.ood import OOD_KEYS, ood_scores
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
#: what the report decoder's memory embeds of the heads (issue 10): "labels" = the heads' thresholded
#: calls, as in label-conditioned training (``TrainConfig.label_cond_p``), so the report states what the
#: heads call present; "probs" = their raw probabilities. A card may set ``report_conditioning``.
REPORT_CONDITIONING = "labels"
DEFAULT_FINDING_THRESHOLD = 0.5  # where the card has no validation thresholds (``thresholds.findings``)
FEATURE_CACHE_ENTRIES = (
    16  # studies whose trunk features a Predictor keeps (ResNet-50 at 224 px: 0.4 MB each)
)


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
        #: make every report follow the heads' calls (model/follow_labels.py): contradicting sentences
        #: dropped, the model's own sentence added for a finding it calls present but does not state.
        #: False serves the raw decoder (the evaluation measures both).
        self.follow_heads = True
        #: read the report's side and zone / lobe words from the model's lesion map (issue 11,
        #: model/ground_location.py); only a model with the lesion head. False serves the decoder's words.
        self.ground_locations = True
        self._ood = (
            {k: extras[k].to(self.device) for k in OOD_KEYS} if all(k in extras for k in OOD_KEYS) else None
        )
        self.ood_probe = None  # the input guard's probe for these weights (model/guard/ood.py), if any
        self.report_conditioning = str(card.get("report_conditioning") or REPORT_CONDITIONING)
        self.finding_thresholds = _finding_thresholds(card)  # FINDINGS -> the head's "present" threshold
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()  # input digest -> (1, C, h, w)
        self._features_lock = threading.Lock()

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

    @staticmethod
    def _digest(image: torch.Tensor) -> str:
        """Key of one (1, 1, S, S) model input: its size and pixels (the study's sha256 would miss a resize)."""
        x = image.detach().cpu().contiguous()
        return f"{tuple(x.shape)}:" + hashlib.blake2b(x.numpy().tobytes(), digest_size=16).hexdigest()

    def _remember_features(self, image: torch.Tensor, features: torch.Tensor) -> None:
        with self._features_lock:
            self._features[self._digest(image)] = features
            while len(self._features) > FEATURE_CACHE_ENTRIES:
                self._features.popitem(last=False)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """The trunk's features (1, C, h, w) of one model input: from the cache when ``predict`` just
        computed them, else computed (and kept). Call under ``torch.inference_mode``."""
        key = self._digest(image)
        with self._features_lock:
            hit = self._features.get(key)
            if hit is not None:
                self._features.move_to_end(key)
                return hit
        features = self.model.forward_features(image)
        self._remember_features(image, features)
        return features

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

    def head_labels(self, modality: str, findings: Sequence[float], tumour: Sequence[float]):
        """The ``interactive.ReportLabels`` the heads call: findings at ``finding_thresholds``, the argmax
        tumour class (what the served report is conditioned on and made to follow)."""
        from model.interactive import ReportLabels

        if modality == "CT":
            return ReportLabels("CT", tumour=TUMOUR_CLASSES[max(range(len(tumour)), key=tumour.__getitem__)])
        present = tuple(n for n, p in zip(FINDINGS, findings, strict=True) if p >= self.finding_thresholds[n])
        return ReportLabels("CXR", present=present)

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
        return self._predict([study], [context], style, full=True)[0]

    def predict_batch(
        self,
        studies: Sequence[Study],
        contexts: Sequence[PatientContext | None] | None = None,
        style: ReportStyle | None = None,
    ) -> list[Prediction]:
        """``[self.predict(s, c, style) for s, c in ...]`` in one forward pass (evaluation): the same steps
        and numbers, without the rulebook's reasons, the report-vs-heads conflicts and the latency (the
        caller times the batch)."""
        if not studies:
            return []
        return self._predict(studies, contexts or [None] * len(studies), style, full=False)

    def _predict(
        self,
        studies: Sequence[Study],
        contexts: Sequence[PatientContext | None],
        style: ReportStyle | None,
        full: bool,
    ) -> list[Prediction]:
        """The one prediction path: inputs, encoder, heads, report, OOD score per row; ``full`` adds the
        treatments' reasons, the report conflicts and the latency of each stage (one study)."""
        from model.networks.generation import end_on_sentence, token_budget
        from model.networks.tokenizer import detokenize

        style = style or ReportStyle()
        contexts = [c or PatientContext() for c in contexts]
        modalities = [s.modality for s in studies]
        clock = [time.perf_counter()]
        with torch.inference_mode():
            images = torch.cat([self.image_tensor(s) for s in studies])  # (B, 1, S, S)
            ctx = torch.cat([self.context_tensor(c) for c in contexts])  # (B, context_dim)
            prompts = self.model.prompts(style.detail, modalities, len(studies))  # (B, 2)
            clock.append(time.perf_counter())
            features = self.model.forward_features(images)  # (B, C, h, w): always computed (latency)
            if len(studies) == 1:
                self._remember_features(images, features)  # for the divergence passes that follow
            clock.append(time.perf_counter())
            heads = self.model.forward_heads(features, ctx)
            f_prob = torch.sigmoid(heads.findings_logits).tolist()
            t_prob = torch.softmax(heads.tumour_logits, -1).tolist()
            s_prob = torch.softmax(heads.subtype_logits, -1).tolist()
            tr_prob = torch.sigmoid(heads.treatment_logits).tolist()
            clock.append(time.perf_counter())
            ids, probs = self.decode(features, heads, prompts, style, modalities)
            budget = token_budget(style, self.cfg.max_len, prompts.shape[1])
            rows = [
                end_on_sentence(ids[i], probs[i], budget, style, self._period) for i in range(len(studies))
            ]
            tokens = [[self._words[j] for j in row_ids] for row_ids, _, _ in rows]
            token_probs = [[float(p) for p in row[1]] for row in rows]
            follows = [None] * len(studies)
            if self.follow_heads:
                from model.follow_labels import follow_labels, head_rows

                for i, m in enumerate(modalities):
                    follows[i] = r = follow_labels(
                        self, m, features[i : i + 1], head_rows(heads, i), tokens[i], token_probs[i],
                        self.head_labels(m, f_prob[i], t_prob[i]), style,
                    )  # fmt: skip
                    tokens[i], token_probs[i] = list(r.tokens), list(r.token_probs)
            grounds = self.ground_report_locations(heads, modalities, tokens, token_probs)
            reports = [detokenize(t) for t in tokens]
            clock.append(time.perf_counter())
            oods = [self.ood_score(heads.pooled[i : i + 1], m) for i, m in enumerate(modalities)]
        out = []
        for i, study in enumerate(studies):
            findings = dict(zip(FINDINGS, f_prob[i], strict=True))
            tumour = dict(zip(TUMOUR_CLASSES, t_prob[i], strict=True))
            out.append(
                Prediction(
                    model_id=self.model_id,
                    modality=study.modality,
                    findings=findings,
                    tumour=tumour,
                    treatments=self._treatments(study, findings, tumour, tr_prob[i], contexts[i], full),
                    report=reports[i],
                    tokens=tokens[i],
                    token_probs=token_probs[i],
                    latency_ms=_stage_ms(clock) if full else {},
                    ood_score=oods[i][0],
                    ood_flag=oods[i][1],
                    tumour_subtype=dict(zip(TUMOUR_SUBTYPES, s_prob[i], strict=True)),
                    ood_threshold=self.ood_threshold(study.modality),
                    ood_method="guard_probe" if self.ood_probe is not None else "mahalanobis",
                    truncated=rows[i][2],
                    token_limit=budget,
                    report_conflicts=(
                        self.report_conflicts(study.modality, findings, tumour, reports[i]) if full else []
                    ),
                    decoder_conflicts=list(follows[i].decoder_conflicts) if follows[i] is not None else [],
                    report_edits=follows[i].describe() if follows[i] is not None else "",
                    location_grounded=grounds[i] is not None,
                    location_edits=list(grounds[i].changed) if grounds[i] is not None else [],
                )
            )
        return out

    def grounds_locations(self) -> bool:
        """Whether this Predictor reads its reports' locations from a lesion map (flag on, lesion head)."""
        return bool(self.ground_locations) and getattr(self.model, "lesion", None) is not None

    def ground_report_locations(
        self, heads, modalities: Sequence[str], tokens: list, token_probs: list
    ) -> list:
        """Rewrite each row's location words to its lesion map, in place (``model/ground_location.py``);
        per row the ``GroundResult``, or None where nothing was grounded (flag off, no lesion head)."""
        if not self.grounds_locations() or getattr(heads, "lesion_logits", None) is None:
            return [None] * len(modalities)
        from model.ground_location import ground_tokens, lesion_maps

        out = []
        for i, m in enumerate(modalities):
            r = ground_tokens(tokens[i], token_probs[i], m, lesion_maps(heads, i))
            tokens[i], token_probs[i] = list(r.tokens), list(r.token_probs)
            out.append(r)
        return out

    def _treatments(
        self,
        study: Study,
        findings: dict[str, float],
        tumour: dict[str, float],
        probs: list[float],
        context: PatientContext,
        reasons: bool = True,
    ) -> list[TreatmentSuggestion]:
        """All formulary items, most probable first, each with the rulebook's reason on the model's findings
        and whether the rulebook supports it there (``split_treatments`` decides what is shown).
        ``reasons=False`` (batched evaluation): probabilities only."""
        if not reasons:
            items = (
                TreatmentSuggestion(name=n, probability=float(p), reason="")
                for n, p in zip(TREATMENTS, probs, strict=True)
            )
            return sorted(items, key=lambda t: -t.probability)
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
        features = self.image_features(self.image_tensor(study))  # predict's, when it just ran
        heads = self.model.forward_heads(features, self.context_tensor(context))
        memory = self.model.build_memory(features, heads, self.memory_probs(heads, [study.modality]))
        lm_logits = self.model.decoder(ids, torch.ones_like(ids), memory)  # as ``predict`` conditions it
        logits = lm_logits[0, positions - 1]  # (T, V): logits at p - 1 predict the token at p
        return torch.softmax(logits.float(), -1).cpu().numpy()


def _stage_ms(clock: list[float]) -> dict[str, float]:
    """Milliseconds per stage from the five clock readings of ``Predictor._predict``."""
    ms = [round((b - a) * 1e3, 3) for a, b in zip(clock[:-1], clock[1:], strict=True)]
    return dict(zip(("preprocess", "encode", "heads", "decode"), ms, strict=True)) | {
        "total": round((clock[-1] - clock[0]) * 1e3, 3)
    }


def _finding_thresholds(card: dict) -> dict[str, float]:
    """The card's validation thresholds per finding (``thresholds.findings``), else 0.5 each."""
    given = (card.get("thresholds") or {}).get("findings") or {}
    return {n: float(given.get(n, DEFAULT_FINDING_THRESHOLD)) for n in FINDINGS}


def _served_image_size(card: dict, default: int) -> int:
    """The input size the weights were trained at: the trainer's data config when it says so."""
    size = ((card.get("training") or {}).get("data_config") or {}).get("image_size")
    return int(size) if size else int(default)
