"""Where does the student depart from the teacher? Per-token divergence of next-token distributions.

Beam scores of two models do not align token by token, so both models are *teacher-forced* on one
fixed sequence (the student's report, or the teacher's) and their next-token distributions are
compared position by position with the Jensen-Shannon divergence (base 2, so it lies in [0, 1]):

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m),   m = (p + q) / 2

The same teacher-forced distributions feed the teaching view of soft targets: softening a
distribution with a temperature T is softmax(log p / T), i.e. Hinton et al. (2015)'s
softmax(z / T) up to a constant, so it can be done from probabilities alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model.types import PatientContext, Study


class TeacherForcing(Protocol):
    """What this module needs from a predictor (model.inference.Predictor satisfies it)."""

    tokenizer: object

    def teacher_forced_probs(
        self, study: Study, tokens: Sequence[str], context: PatientContext | None, detail: str
    ) -> np.ndarray: ...


def js_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Jensen-Shannon divergence (bits) over the last axis; (..., V) x (..., V) -> (...)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    q = np.clip(np.asarray(q, dtype=np.float64), 0.0, None)
    p = p / np.maximum(p.sum(-1, keepdims=True), eps)
    q = q / np.maximum(q.sum(-1, keepdims=True), eps)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a > 0, a * (np.log2(np.maximum(a, eps)) - np.log2(np.maximum(b, eps))), 0.0).sum(-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled distribution softmax(log p / T) over the last axis (T > 1 = softer)."""
    t = max(float(temperature), 1e-3)
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, None)) / t
    logp -= logp.max(-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(-1, keepdims=True)


def _vocab(predictor: TeacherForcing) -> dict[str, int]:
    tok = predictor.tokenizer
    return dict(tok.get_vocab()) if hasattr(tok, "get_vocab") else dict(tok)


def align_distributions(
    p: np.ndarray, vocab_p: dict[str, int], q: np.ndarray, vocab_q: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Put two (T, V) distributions over different vocabularies on the union of their words.

    Returns (p', q', words) with p'[:, i] and q'[:, i] the probability of ``words[i]``. When both
    vocabularies are the same (the usual case: one tokenizer trained on one corpus) this is a
    re-ordering only.
    """
    words = sorted(
        set(vocab_p) | set(vocab_q), key=lambda w: (vocab_p.get(w, 1 << 30), vocab_q.get(w, 1 << 30))
    )
    index = {w: i for i, w in enumerate(words)}

    def place(x: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
        out = np.zeros((*x.shape[:-1], len(words)), dtype=np.float64)
        src = np.array([i for w, i in vocab.items() if i < x.shape[-1]], dtype=np.int64)
        dst = np.array([index[w] for w, i in vocab.items() if i < x.shape[-1]], dtype=np.int64)
        out[..., dst] = x[..., src]
        return out

    if vocab_p == vocab_q:
        inv = sorted(vocab_p, key=vocab_p.get)
        n = min(p.shape[-1], q.shape[-1], len(inv))
        return np.asarray(p[..., :n], np.float64), np.asarray(q[..., :n], np.float64), inv[:n]
    return place(np.asarray(p), vocab_p), place(np.asarray(q), vocab_q), words


@dataclass
class TokenDivergence:
    """Per-token teacher-vs-student divergence along one fixed sequence."""

    tokens: list[str]  # the sequence both models were teacher-forced on
    divergence: np.ndarray  # (T,) JS divergence in bits, [0, 1]
    teacher_prob: np.ndarray  # (T,) probability the teacher gives the actual token
    student_prob: np.ndarray  # (T,) probability the student gives the actual token
    teacher_top: list[str]  # (T,) teacher's most likely word at each position
    student_top: list[str]  # (T,) student's most likely word at each position


@dataclass
class NextTokenDistributions:
    """Teacher and student next-token distributions at one position, on a shared vocabulary."""

    words: list[str]  # shared vocabulary
    teacher: np.ndarray  # (V,) temperature-softened
    student: np.ndarray  # (V,) temperature-softened
    temperature: float
    divergence: float  # JS of the softened pair
    kl_teacher_student: float  # KL(p_t^T || p_s^T) in nats: Hinton's token-level KD term (x T^2)


def teacher_forced_pair(
    teacher: TeacherForcing,
    student: TeacherForcing,
    study: Study,
    tokens: Sequence[str],
    context: PatientContext | None = None,
    detail: str = "standard",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both models' (T, V) next-token distributions on ``tokens``, aligned on one vocabulary."""
    tokens = list(tokens)
    p_t = np.asarray(teacher.teacher_forced_probs(study, tokens, context, detail))
    p_s = np.asarray(student.teacher_forced_probs(study, tokens, context, detail))
    n = min(len(p_t), len(p_s))
    return align_distributions(p_t[:n], _vocab(teacher), p_s[:n], _vocab(student))


def token_divergence(
    teacher: TeacherForcing,
    student: TeacherForcing,
    study: Study,
    tokens: Sequence[str],
    context: PatientContext | None = None,
    detail: str = "standard",
) -> TokenDivergence:
    """JS divergence of teacher vs student next-token distributions at every position of ``tokens``."""
    tokens = list(tokens)
    if not tokens:
        empty = np.zeros(0)
        return TokenDivergence([], empty, empty, empty, [], [])
    p_t, p_s, words = teacher_forced_pair(teacher, student, study, tokens, context, detail)
    n = min(len(tokens), len(p_t))  # row t predicts tokens[t]; a trailing end-of-report row is dropped
    p_t, p_s = p_t[:n], p_s[:n]
    index = {w: i for i, w in enumerate(words)}
    ids = np.array([index.get(w, -1) for w in tokens[:n]])
    rows = np.arange(n)

    def prob_of(p: np.ndarray) -> np.ndarray:
        return np.where(ids >= 0, p[rows, np.maximum(ids, 0)], 0.0)

    return TokenDivergence(
        tokens=tokens[:n],
        divergence=js_divergence(p_t, p_s),
        teacher_prob=prob_of(p_t),
        student_prob=prob_of(p_s),
        teacher_top=[words[i] for i in p_t.argmax(-1)],
        student_top=[words[i] for i in p_s.argmax(-1)],
    )


def next_token_distributions(
    teacher: TeacherForcing,
    student: TeacherForcing,
    study: Study,
    tokens: Sequence[str],
    position: int,
    temperature: float = 1.0,
    context: PatientContext | None = None,
    detail: str = "standard",
) -> NextTokenDistributions:
    """Softened next-token distributions of both models before ``tokens[position]`` (teaching view)."""
    p_t, p_s, words = teacher_forced_pair(teacher, student, study, tokens, context, detail)
    position = int(np.clip(position, 0, len(p_t) - 1))
    st_, ss_ = soften(p_t[position], temperature), soften(p_s[position], temperature)
    kl = float(np.sum(st_ * (np.log(np.clip(st_, 1e-30, None)) - np.log(np.clip(ss_, 1e-30, None)))))
    return NextTokenDistributions(
        words=words,
        teacher=st_,
        student=ss_,
        temperature=float(temperature),
        divergence=float(js_divergence(st_, ss_)),
        kl_teacher_student=kl,
    )
