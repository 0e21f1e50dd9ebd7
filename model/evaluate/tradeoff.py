"""Length / detail trade-off: clinical-efficacy F1 and BLEU-4 per detail level and maximum length.

For each model, detail level and case, the report is decoded greedily once at the largest cap; the
report at a smaller cap ``k`` is its first ``k`` tokens, which is exactly what greedy decoding with
``max_new_tokens=k`` produces (greedy decoding is deterministic and left to right; a test checks
it). Each detail level is scored against the reference written at that level.

Why clinical F1 hardly moves with the cap: it scores positive findings only (a label the report does
not mention counts negative), and reports state their positive findings first, in the opening
sentence; what a longer report adds is negations ("No pleural effusion or pneumothorax.") and
descriptors. Two curves show that directly: ``positives_complete`` (share of reports whose positive
labels at the cap are already those of the whole report) and ``statement_recall`` (share of the
labels the reference states, positive *or negative*, that the truncated report states the same way),
which rises with the cap where clinical F1 stays flat.

JSON block (``result["tradeoff"]``)::

    {"max_new_tokens": [16, 32, ...], "details": ["brief", ...], "n_cases": N,
     "protocol": {...},
     "curves": {model: {detail: {"max_new_tokens": [...], "clinical_f1": [...],
                                 "clinical_example_f1": [...], "bleu_4": [...], "mean_tokens": [...],
                                 "statement_recall": [...], "positives_complete": [...]}}}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from model.evaluate import clinical, nlg
from model.types import DETAIL_LEVELS, ReportStyle

MAX_NEW_TOKENS: tuple[int, ...] = (16, 32, 48, 64, 96, 128)


def tradeoff_protocol(caps: Sequence[int], details: Sequence[str], n_cases: int) -> dict:
    return {
        "decoding": "greedy; one decode at the largest cap, truncated to each smaller cap (identical to "
        "greedy decoding with that cap)",
        "clinical_f1": "micro F1 of labeler(generated) vs labeler(reference at the same detail level)",
        "bleu_4": "corpus BLEU-4 (pycocoevalcap), same tokenisation as the report metrics",
        "statement_recall": "of the (case, label) pairs the reference states (positive, negative or "
        "uncertain), the share the truncated report states with the same value; unlike clinical F1 it "
        "counts negations, which is what longer reports add",
        "positives_complete": "share of cases whose positive labels at the cap equal those of the whole "
        "(largest-cap) report: 1.0 means truncation lost no positive finding",
        "max_new_tokens": list(caps),
        "details": list(details),
        "n_cases": n_cases,
        "cap_note": "a cap above a model's maximum length is clipped to it",
    }


def statement_recall(generated: Sequence[Mapping], reference: Sequence[Mapping]) -> float | None:
    """Share of the reference's stated (case, label) pairs that the generated report states identically.

    A label is stated when the labeler gives it a value (positive / negative / uncertain, not None).
    None when the references state nothing.
    """
    stated = hit = 0
    for gen, ref in zip(generated, reference, strict=True):
        for name, value in ref.items():
            if value is None:
                continue
            stated += 1
            hit += gen.get(name) == value
    return hit / stated if stated else None


def model_cap(predictor) -> int:
    """The largest number of new tokens a predictor's decoder can produce."""
    cfg = getattr(getattr(predictor, "model", None), "cfg", None)
    if cfg is None:
        return max(MAX_NEW_TOKENS)
    from model.networks import PROMPT_LEN

    return max(1, int(cfg.max_len) - PROMPT_LEN)


def curves_for_model(
    predictor,
    studies: Sequence,
    contexts: Sequence,
    references: Mapping[str, Sequence[str]],
    *,
    caps: Sequence[int] = MAX_NEW_TOKENS,
    details: Sequence[str] = DETAIL_LEVELS,
    uncertain: str = "positive",
    labeler: Callable | None = None,
    reference_labels: Mapping[str, Sequence[Mapping]] | None = None,
    progress: Callable[[int], object] | None = None,
    batch_size: int = 16,
) -> dict:
    """``{detail: {"max_new_tokens", "clinical_f1", "clinical_example_f1", "bleu_4", "mean_tokens",
    "statement_recall", "positives_complete"}}``.

    ``references[detail]`` holds the reference report of each study at that level.
    """
    from model.networks.tokenizer import detokenize

    label = labeler or clinical.default_labeler()
    top = min(max(caps), model_cap(predictor))
    out: dict[str, dict] = {}
    for detail in details:
        refs = list(references[detail])
        ref_labels = list(reference_labels[detail]) if reference_labels else [label(r) for r in refs]
        tokens = []
        style = ReportStyle(detail=detail, max_new_tokens=top, whole_sentences=False)  # raw prefixes
        for start in range(0, len(studies), batch_size):
            preds = predictor.predict_batch(
                studies[start : start + batch_size], contexts[start : start + batch_size], style
            )
            tokens.extend(list(p.tokens) for p in preds)
            if progress:
                progress(len(preds))
        curve: dict[str, list] = {"max_new_tokens": [], "clinical_f1": [], "clinical_example_f1": [],
                                  "bleu_4": [], "mean_tokens": [], "statement_recall": [],
                                  "positives_complete": []}  # fmt: skip
        full = [clinical.positive_labels(label(detokenize(t)), uncertain) for t in tokens]
        for cap in caps:
            k = min(cap, top)
            hyps = [detokenize(t[:k]) for t in tokens]
            hyp_labels = [label(h) for h in hyps]
            ce = clinical.ce_scores(hyp_labels, ref_labels, uncertain=uncertain)
            curve["statement_recall"].append(statement_recall(hyp_labels, ref_labels))
            same = [clinical.positive_labels(h, uncertain) == f for h, f in zip(hyp_labels, full, strict=True)]
            curve["positives_complete"].append(float(np.mean(same)) if same else None)
            b, _ = nlg.bleu(hyps, refs)
            curve["max_new_tokens"].append(int(cap))
            curve["clinical_f1"].append(ce["micro"]["f1"])
            curve["clinical_example_f1"].append(ce["example"]["f1"])
            curve["bleu_4"].append(b[3])
            curve["mean_tokens"].append(float(np.mean([min(len(t), k) for t in tokens])) if tokens else 0.0)
        out[detail] = curve
    return out
