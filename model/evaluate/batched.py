"""Batched predictions for evaluation: the Predictor's path, many studies per forward pass.

``Predictor.predict`` serves one study at a time (the app's path, and the one the latency figures
time). Scoring hundreds of cases that way is slow on a CPU, so evaluation runs the same steps on a
batch: ``Predictor.image_tensor`` / ``context_tensor`` (the one resize rule), ``forward_features``,
``forward_heads``, ``decode_report`` (greedy, per-row stop at [EOS]), the same sentence-end token,
``end_on_sentence`` and detokenizer. A test checks it gives the same tokens and probabilities as
``predict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.types import (
    FINDINGS,
    TREATMENTS,
    TUMOUR_CLASSES,
    TUMOUR_SUBTYPES,
    PatientContext,
    Prediction,
    ReportStyle,
    Study,
    TreatmentSuggestion,
)


@torch.inference_mode()
def predict_batch(
    predictor,
    studies: Sequence[Study],
    contexts: Sequence[PatientContext | None],
    style: ReportStyle | None = None,
) -> list[Prediction]:
    """``[predictor.predict(s, c, style) for s, c in ...]`` computed as one batch (no reasons, no latency)."""
    from model.networks import decode_ids
    from model.networks.generation import end_on_sentence, token_budget
    from model.networks.tokenizer import SENTENCE_END

    style = style or ReportStyle()
    if not studies:
        return []
    model = predictor.model
    images = torch.cat([predictor.image_tensor(s) for s in studies])  # (B, 1, S, S)
    ctx = torch.cat([predictor.context_tensor(c) for c in contexts])  # (B, context_dim)
    modalities = [s.modality for s in studies]
    prompts = model.prompts(style.detail, modalities, len(studies))  # (B, 2)
    features = model.forward_features(images)  # (B, C, h, w)
    heads = model.forward_heads(features, ctx)
    period = predictor.tokenizer.convert_tokens_to_ids(SENTENCE_END)
    if hasattr(predictor, "decode"):  # the Predictor's report conditioning (issue 10)
        ids, probs = predictor.decode(features, heads, prompts, style, modalities)
    else:
        ids, probs = model.decode_report(features, heads, prompts, style, period)
    f = torch.sigmoid(heads.findings_logits).tolist()
    t = torch.softmax(heads.tumour_logits, -1).tolist()
    s = torch.softmax(heads.subtype_logits, -1).tolist()
    tr = torch.sigmoid(heads.treatment_logits).tolist()
    out = []
    budget = token_budget(style, model.cfg.max_len, prompts.shape[1])
    for i, study in enumerate(studies):
        row, row_probs, truncated = end_on_sentence(ids[i], probs[i], budget, style, period)
        words, text = decode_ids(predictor.tokenizer, row)
        ood, flag = predictor.ood_score(heads.pooled[i : i + 1])
        treatments = sorted(
            (
                TreatmentSuggestion(name=n, probability=float(p), reason="")
                for n, p in zip(TREATMENTS, tr[i], strict=True)
            ),
            key=lambda x: -x.probability,
        )
        out.append(
            Prediction(
                model_id=predictor.model_id,
                modality=study.modality,
                findings=dict(zip(FINDINGS, f[i], strict=True)),
                tumour=dict(zip(TUMOUR_CLASSES, t[i], strict=True)),
                treatments=treatments,
                report=text,
                tokens=words,
                token_probs=[float(p) for p in row_probs],
                latency_ms={},
                ood_score=ood,
                ood_flag=flag,
                tumour_subtype=dict(zip(TUMOUR_SUBTYPES, s[i], strict=True)),
                truncated=truncated,
                token_limit=budget,
            )
        )
    return out
