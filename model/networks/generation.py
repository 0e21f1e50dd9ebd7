"""Report decoding strategies: greedy and sampling (own KV-cache loop), beam search (HF ``generate``).

Every strategy returns, per batch row, the generated ids without the prompt and without [EOS],
and the model's probability of each token (for beams and samples: the untempered probability
from one teacher-forced pass over the chosen sequence, so all strategies report the same quantity).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from model.networks.decoder import ReportDecoder
from model.networks.tokenizer import EOS_ID, PAD_ID, SPECIAL_TOKENS
from model.types import ReportStyle

#: ids never generated: every special token except [EOS]
SUPPRESSED_IDS: tuple[int, ...] = tuple(i for i in range(len(SPECIAL_TOKENS)) if i != EOS_ID)


def _cut(ids: list[int], probs: list[float], style: ReportStyle, sentence_end_id: int | None):
    """Drop [EOS] and what follows; keep at most ``style.max_sentences`` sentences."""
    if EOS_ID in ids:
        n = ids.index(EOS_ID)
        ids, probs = ids[:n], probs[:n]
    if style.max_sentences is not None and sentence_end_id is not None:
        seen = 0
        for i, t in enumerate(ids):
            seen += t == sentence_end_id
            if seen >= style.max_sentences:
                ids, probs = ids[: i + 1], probs[: i + 1]
                break
    return ids, probs


def _banned_ngrams(history: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``history`` (no_repeat_ngram_size)."""
    if n <= 0 or len(history) < n - 1:
        return []
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    return [
        history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i : i + n - 1]) == prefix
    ]


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
    max_len = decoder.cfg.max_len
    max_new = max(0, min(style.max_new_tokens, max_len - p))
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
        logits = raw.index_fill(1, suppressed, float("-inf"))  # never generate control tokens
        if style.no_repeat_ngram_size > 0:
            for r in range(b):
                banned = _banned_ngrams(ids[r], style.no_repeat_ngram_size)
                if banned:
                    logits[r, banned] = float("-inf")
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


@torch.inference_mode()
def decode_beam(
    decoder: ReportDecoder,
    memory: torch.Tensor,
    prompts: torch.Tensor,
    style: ReportStyle,
    sentence_end_id: int | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Beam search through HF ``generate`` (beams, length penalty, no-repeat n-grams)."""
    b, p = prompts.shape
    max_new = max(1, min(style.max_new_tokens, decoder.cfg.max_len - p))
    out = decoder.gpt.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        encoder_hidden_states=memory,
        max_new_tokens=max_new,
        num_beams=max(1, style.num_beams),
        length_penalty=style.length_penalty,
        no_repeat_ngram_size=style.no_repeat_ngram_size,
        early_stopping=True,
        do_sample=False,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        suppress_tokens=list(SUPPRESSED_IDS),
    )  # (B, P + T)
    return _with_probs(decoder, memory, out, p, style, sentence_end_id)


def _with_probs(decoder, memory, seqs: torch.Tensor, p: int, style: ReportStyle, sentence_end_id):
    """Per-token model probabilities of fixed sequences (one teacher-forced pass)."""
    mask = torch.ones_like(seqs)
    gen = seqs[:, p:]
    ends = (gen == EOS_ID) | (gen == PAD_ID)
    mask[:, p:] = (ends.long().cumsum(1) - ends.long() == 0).long()  # up to and incl. the first end
    logits = decoder(seqs, mask, memory)  # (B, P + T, V)
    prob = torch.softmax(logits[:, p - 1 : -1].float(), -1).gather(-1, gen[..., None])[..., 0]  # (B, T)
    ids, probs = [], []
    for r in range(seqs.shape[0]):
        row = [t if t != PAD_ID else EOS_ID for t in gen[r].tolist()]
        i, q = _cut(row, prob[r].tolist(), style, sentence_end_id)
        ids.append(i)
        probs.append(q)
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
