"""Report decoding strategies over the decoder's KV-cache loop: greedy, sampling and beam search.

Every strategy returns, per batch row, the generated ids without the prompt and without [EOS],
and the model's own (untempered, unpenalised) probability of each token, so all strategies report
the same quantity. ``end_on_sentence`` then turns a report the token cap cut mid-sentence into one
that ends on a sentence boundary and says it was shortened (``Prediction.truncated``).

Why beams rarely change these models' reports (measured in ``benchmarks/bench_decoding.py``): the
shipped decoders are peaked (the student most of all, distillation sharpens it), so the greedy
report is usually also the most probable one, and more beams find the same winner. The length
penalty is different: it re-weights long against short candidates, and it does change reports
once the search keeps going until no running beam can still win (HF ``generate`` with
``early_stopping=True`` stopped at the first ``num_beams`` finished candidates, all about the same
length, which is why the penalty seemed to do nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model.networks.decoder import ReportDecoder
from model.networks.tokenizer import EOS_ID, PAD_ID, SPECIAL_TOKENS
from model.types import ReportStyle

#: ids never generated: every special token except [EOS]
SUPPRESSED_IDS: tuple[int, ...] = tuple(i for i in range(len(SPECIAL_TOKENS)) if i != EOS_ID)


def token_budget(style: ReportStyle, max_len: int, prompt_len: int) -> int:
    """New tokens a decode may produce: ``style.max_new_tokens`` within the decoder's positions."""
    return max(0, min(style.max_new_tokens, max_len - prompt_len))


def end_on_sentence(
    ids: list[int], probs: list[float], budget: int, style: ReportStyle, sentence_end_id: int | None
) -> tuple[list[int], list[float], bool]:
    """``(ids, probs, truncated)``: when the token cap (``budget``) stopped a report, drop its unfinished
    last sentence (``style.whole_sentences``) and say so.

    A report stopped by the cap has exactly ``budget`` tokens and no [EOS]; one that reached
    ``style.max_sentences`` was cut where the user asked and is not "truncated". When not even the
    first sentence fits, the fragment is kept (an empty report would say less) and still flagged.
    """
    stopped_by_sentences = (
        style.max_sentences is not None
        and sentence_end_id is not None
        and ids.count(sentence_end_id) >= style.max_sentences
    )
    truncated = len(ids) >= budget > 0 and not stopped_by_sentences
    if truncated and style.whole_sentences and sentence_end_id is not None and ids[-1] != sentence_end_id:
        if sentence_end_id in ids:
            n = len(ids) - ids[::-1].index(sentence_end_id)  # just after the last sentence end
            ids, probs = ids[:n], probs[:n]
    return ids, probs, truncated


def _banned_ngrams(history: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``history`` (no_repeat_ngram_size)."""
    if n <= 0 or len(history) < n - 1:
        return []
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    return [
        history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i : i + n - 1]) == prefix
    ]


def _mask_step(scores: torch.Tensor, suppressed: torch.Tensor, histories: list[list[int]], n: int) -> torch.Tensor:
    """One decoding step's scores (R, V) with control tokens and n-gram repeats of each row's history set
    to -inf (a new tensor; ``scores`` is kept for the per-token probabilities)."""
    masked = scores.index_fill(1, suppressed, float("-inf"))  # never generate control tokens
    if n > 0:
        for r, history in enumerate(histories):
            banned = _banned_ngrams(history, n)
            if banned:
                masked[r, banned] = float("-inf")
    return masked


@torch.inference_mode()
def decode_incremental(
    decoder: ReportDecoder,
    memory: torch.Tensor,
    prompts: torch.Tensor,
    style: ReportStyle,
    sentence_end_id: int | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Greedy or sampled decoding with the tight KV-cache loop (see ``decoder.IncrementalDecoder``)."""
    b, p = prompts.shape
    max_new = token_budget(style, decoder.cfg.max_len, p)
    inc = decoder.incremental(memory, p + max_new)
    for j in range(p - 1):
        inc.step(prompts[:, j])
    sample = style.decoding == "sample"
    gen = torch.Generator(device=memory.device).manual_seed(style.seed) if sample else None
    suppressed = torch.tensor(SUPPRESSED_IDS, device=memory.device)
    stop_at = style.max_sentences if sentence_end_id is not None else None
    ids: list[list[int]] = [[] for _ in range(b)]
    probs: list[list[float]] = [[] for _ in range(b)]
    done = [False] * b
    sentences = [0] * b
    last = prompts[:, -1]
    for _ in range(max_new):
        raw = inc.step(last)  # (B, V)
        prob = torch.softmax(raw, -1)  # (B, V): the model's own distribution, reported per token
        logits = _mask_step(raw, suppressed, ids, style.no_repeat_ngram_size)
        if sample:
            scaled = logits / max(style.temperature, 1e-5)
            if style.top_k > 0:
                kth = scaled.topk(min(style.top_k, scaled.shape[-1]), -1).values[:, -1:]  # (B, 1)
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(scaled, -1), 1, generator=gen)[:, 0]  # (B,)
        else:
            nxt = logits.argmax(-1)  # (B,)
        p_nxt = prob.gather(1, nxt[:, None])[:, 0]
        nxt_list, p_list = nxt.tolist(), p_nxt.tolist()
        for r in range(b):
            if done[r]:
                continue
            t = nxt_list[r]
            if t == EOS_ID:
                done[r] = True
                continue
            ids[r].append(t)
            probs[r].append(p_list[r])
            if t == sentence_end_id:
                sentences[r] += 1
                if stop_at is not None and sentences[r] >= stop_at:
                    done[r] = True
        if all(done):
            break
        last = torch.where(torch.tensor(done, device=nxt.device), torch.full_like(nxt, PAD_ID), nxt)
    return ids, probs


@dataclass(frozen=True)
class BeamHypothesis:
    """One finished candidate of beam search, as the search ranked it."""

    ids: list[int]  # generated words, without the prompt and [EOS]
    probs: list[float]  # the model's probability of each word
    log_prob: float  # sum of the log-probabilities of the words (and of the closing [EOS], if any)
    length: int  # tokens scored: the words, plus one when [EOS] closed the report
    score: float  # log_prob / length ** length_penalty: what the search ranks by (higher is better)
    ended: str  # "eos" (the model closed it) | "sentences" (max_sentences reached) | "cap" (token cap)


def beam_score(log_prob: float, length: int, length_penalty: float) -> float:
    """Length-normalised beam score ``log_prob / length ** length_penalty`` (Wu et al. 2016, simplified;
    the same form as HF ``BeamSearchScorer``): log-probabilities are negative, so a larger penalty
    divides longer candidates by more and favours them; 0 ranks by raw probability (short reports)."""
    return log_prob / max(1, length) ** length_penalty


@torch.inference_mode()
def beam_search(
    decoder: ReportDecoder,
    memory: torch.Tensor,
    prompt: torch.Tensor,
    style: ReportStyle,
    sentence_end_id: int | None = None,
) -> list[BeamHypothesis]:
    """Beam search for one report: memory (1, M, d), prompt (P,) -> up to ``num_beams`` finished
    hypotheses, best first.

    The ``num_beams`` running candidates are decoded as one batch through the KV-cache loop; each step
    keeps the best continuations by summed log-probability. A candidate finishes at [EOS], at
    ``max_sentences`` sentence ends, or at the token cap. The search stops once no running candidate
    can still beat the worst of the ``num_beams`` best finished ones: its log-probability can only
    fall, so its best possible score is at its next length (penalty <= 0) or at the cap (> 0).
    ``length_penalty`` therefore takes part in the search, not only in the final ranking.
    """
    k = max(1, style.num_beams)
    p = prompt.shape[0]
    max_new = token_budget(style, decoder.cfg.max_len, p)
    lp = style.length_penalty
    inc = decoder.incremental(memory.expand(k, -1, -1), p + max_new)
    for j in range(p - 1):
        inc.step(prompt[j].expand(k))
    last = prompt[-1].expand(k)
    suppressed = torch.tensor(SUPPRESSED_IDS, device=memory.device)
    stop_at = style.max_sentences if sentence_end_id is not None else None
    sums = [0.0] + [float("-inf")] * (k - 1)  # one live beam at the start, so beams never duplicate
    words: list[list[int]] = [[] for _ in range(k)]
    word_probs: list[list[float]] = [[] for _ in range(k)]
    finished: list[BeamHypothesis] = []

    def finish(ids, probs, log_prob, length, ended):
        finished.append(BeamHypothesis(ids, probs, log_prob, length, beam_score(log_prob, length, lp), ended))

    for step in range(max_new):
        logp = torch.log_softmax(inc.step(last).float(), -1)  # (K, V): the model's own distribution
        masked = _mask_step(logp, suppressed, words, style.no_repeat_ngram_size)
        v = masked.shape[1]
        cand = (torch.tensor(sums, device=masked.device)[:, None] + masked).flatten()  # (K * V,)
        top = cand.topk(min(2 * k, cand.numel()))  # enough to refill K beams after some end at [EOS]
        top_logp = logp.flatten()[top.indices].tolist()
        nxt_rows, nxt_tokens, nxt_sums, nxt_words, nxt_probs = [], [], [], [], []
        for total, index, lt in zip(top.values.tolist(), top.indices.tolist(), top_logp, strict=True):
            if total == float("-inf") or len(nxt_rows) == k:
                break
            r, t = divmod(index, v)
            if t == EOS_ID:
                finish(words[r], word_probs[r], total, len(words[r]) + 1, "eos")
                continue
            ids, probs = [*words[r], t], [*word_probs[r], math.exp(lt)]
            if stop_at is not None and t == sentence_end_id and ids.count(t) >= stop_at:
                finish(ids, probs, total, len(ids), "sentences")
                continue
            nxt_rows.append(r)
            nxt_tokens.append(t)
            nxt_sums.append(total)
            nxt_words.append(ids)
            nxt_probs.append(probs)
        finished = sorted(finished, key=lambda h: -h.score)[:k]
        if not nxt_rows:
            break
        longest = max_new + 1 if lp > 0 else step + 2  # the length at which a running beam scores best
        best_running = max(beam_score(s, longest, lp) for s in nxt_sums)
        if len(finished) >= k and best_running <= finished[-1].score:
            nxt_rows = []  # no running beam can enter the top k any more
            break
        pad = k - len(nxt_rows)  # fewer live beams than K: fill with dead copies of the first
        sums = nxt_sums + [float("-inf")] * pad
        words = nxt_words + [list(nxt_words[0]) for _ in range(pad)]
        word_probs = nxt_probs + [list(nxt_probs[0]) for _ in range(pad)]
        index = torch.tensor(nxt_rows + [nxt_rows[0]] * pad, device=memory.device)
        inc.reorder(index)  # each new beam continues its parent's cache
        last = torch.tensor(nxt_tokens + [nxt_tokens[0]] * pad, device=memory.device)
    else:  # the cap stopped the search: the live beams compete as they are
        for s, ids, probs in zip(sums, words, word_probs, strict=True):
            if s != float("-inf"):
                finish(ids, probs, s, len(ids), "cap")
    return sorted(finished, key=lambda h: -h.score)[:k]


@torch.inference_mode()
def decode_beam(
    decoder: ReportDecoder,
    memory: torch.Tensor,
    prompts: torch.Tensor,
    style: ReportStyle,
    sentence_end_id: int | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Beam search (``beam_search``) per batch row: the best hypothesis of each."""
    ids, probs = [], []
    for r in range(prompts.shape[0]):
        best = beam_search(decoder, memory[r : r + 1], prompts[r], style, sentence_end_id)[0]
        ids.append(list(best.ids))
        probs.append(list(best.probs))
    return ids, probs


STRATEGIES: dict[str, Callable] = {
    "greedy": decode_incremental,
    "sample": decode_incremental,
    "beam": decode_beam,
}


def decode(
    decoder: ReportDecoder,
    memory: torch.Tensor,
    prompts: torch.Tensor,
    style: ReportStyle,
    sentence_end_id: int | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Dispatch on ``style.decoding``."""
    if style.decoding not in STRATEGIES:
        raise ValueError(f"unknown decoding {style.decoding!r}; choose one of {tuple(STRATEGIES)}")
    return STRATEGIES[style.decoding](decoder, memory, prompts, style, sentence_end_id)
