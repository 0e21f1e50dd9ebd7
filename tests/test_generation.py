"""Decoding (model/networks/generation.py): beam search against exhaustive search, its score and length
penalty, greedy as one beam, and the sentence-boundary cut of a capped report."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tiny_training import tiny_model

from model.networks import EOS_ID, TINY_PRESETS
from model.networks.generation import (
    SUPPRESSED_IDS,
    beam_score,
    beam_search,
    decode,
    decode_incremental,
    end_on_sentence,
)
from model.networks.tokenizer import SPECIAL_TOKENS
from model.types import ReportStyle

torch.set_num_threads(1)

VOCAB = len(SPECIAL_TOKENS) + 4  # four words + [EOS]: small enough to enumerate every report
WORDS = [i for i in range(VOCAB) if i not in SUPPRESSED_IDS and i != EOS_ID]


def _tiny(seed: int, vocab: int = VOCAB, name: str = "tiny-teacher"):
    """A tiny random model whose next-token distributions are far from uniform."""
    return tiny_model(name, vocab, seed=seed, spread=True)[0].eval()


def _memory(m, seed: int):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, 1, 32, 32, generator=g)
    with torch.inference_mode():
        f = m.forward_features(images)
        return m.build_memory(f, m.forward_heads(f, None)), m.prompts("standard", "CXR", 1)


@torch.inference_mode()
def _exhaustive(m, memory, prompt, max_new: int, lp: float) -> tuple[float, list[int]]:
    """Best length-normalised score over every report of at most ``max_new`` words (scored in batches of
    equal length: reports closed by [EOS], and reports the cap stopped)."""
    groups = [[[*w, EOS_ID] for w in itertools.product(WORDS, repeat=n)] for n in range(max_new)]
    groups.append([list(w) for w in itertools.product(WORDS, repeat=max_new)])
    best = (-math.inf, [])
    p = prompt.shape[0]
    for seqs in groups:
        ids = torch.tensor([prompt.tolist() + s for s in seqs])  # (N, P + T)
        mem = memory.expand(len(seqs), -1, -1).contiguous()
        logp = torch.log_softmax(m.decoder(ids, None, mem)[:, p - 1 : -1].float(), -1)  # (N, T, V)
        totals = logp.gather(-1, ids[:, p:, None])[..., 0].sum(1)  # (N,)
        for seq, total in zip(seqs, totals.tolist(), strict=True):
            score = beam_score(total, len(seq), lp)
            if score > best[0]:
                best = (score, [t for t in seq if t != EOS_ID])
    return best


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_with_enough_beams_is_exhaustive_search(seed, lp):
    m = _tiny(seed)
    memory, prompts = _memory(m, seed)
    style = ReportStyle(decoding="beam", num_beams=len(WORDS) ** 3 + 1, max_new_tokens=3, length_penalty=lp)
    hyps = beam_search(m.decoder, memory, prompts[0], style)
    score, ids = _exhaustive(m, memory, prompts[0], 3, lp)
    assert hyps[0].ids == ids
    assert hyps[0].score == pytest.approx(score, abs=1e-4)


def test_decode_returns_the_highest_scoring_beam():
    m = _tiny(3)
    memory, prompts = _memory(m, 3)
    style = ReportStyle(decoding="beam", num_beams=4, max_new_tokens=12, length_penalty=1.0)
    hyps = beam_search(m.decoder, memory, prompts[0], style)
    assert 1 < len(hyps) <= 4
    scores = [h.score for h in hyps]
    assert scores == sorted(scores, reverse=True)
    for h in hyps:
        assert h.score == pytest.approx(beam_score(h.log_prob, h.length, 1.0))
        assert h.length == len(h.ids) + (h.ended == "eos")
        assert len(h.probs) == len(h.ids) and all(0 < p <= 1 for p in h.probs)
        words_logp = sum(math.log(p) for p in h.probs)
        assert h.log_prob <= words_logp + 1e-4  # [EOS], when it closed the report, costs its own log-prob
        if h.ended == "cap":
            assert h.log_prob == pytest.approx(words_logp, abs=1e-4)
    ids, probs = decode(m.decoder, memory, prompts, style)
    assert ids[0] == hyps[0].ids and probs[0] == pytest.approx(hyps[0].probs)


@pytest.mark.parametrize("name", list(TINY_PRESETS))
def test_one_beam_is_greedy(name):
    for seed in range(3):
        m = _tiny(seed, 40, name)
        memory, prompts = _memory(m, seed)
        greedy = decode_incremental(m.decoder, memory, prompts, ReportStyle(max_new_tokens=16))
        beam = decode(
            m.decoder, memory, prompts, ReportStyle(decoding="beam", num_beams=1, max_new_tokens=16)
        )
        assert beam[0] == greedy[0]
        assert beam[1][0] == pytest.approx(greedy[1][0], abs=1e-5)


def test_more_beams_can_find_better_reports():
    """Beam width changes the search: over a few random models, 4 beams beat greedy at least once and
    never lose to exhaustive search."""
    better = 0
    for seed in range(6):
        m = _tiny(seed)
        memory, prompts = _memory(m, seed)
        best = {
            k: beam_search(m.decoder, memory, prompts[0], ReportStyle(num_beams=k, max_new_tokens=3))[0].score
            for k in (1, 4)
        }
        exact, _ = _exhaustive(m, memory, prompts[0], 3, 1.0)
        assert best[1] <= exact + 1e-5 and best[4] <= exact + 1e-5
        better += best[4] > best[1] + 1e-6
    assert better >= 1


def test_length_penalty_takes_part_in_the_search():
    """With exact search, a larger length penalty never picks a shorter report, and it does change some."""
    changed = 0
    for seed in range(6):
        m = _tiny(seed)
        memory, prompts = _memory(m, seed)
        lengths = []
        for lp in (0.0, 1.0, 3.0):
            style = ReportStyle(num_beams=len(WORDS) ** 3 + 1, max_new_tokens=3, length_penalty=lp)
            lengths.append(beam_search(m.decoder, memory, prompts[0], style)[0].length)
        assert lengths == sorted(lengths)
        changed += lengths[0] != lengths[-1]
    assert changed >= 1


def test_beam_search_stops_at_max_sentences():
    m = _tiny(4, 40)
    memory, prompts = _memory(m, 4)
    full = beam_search(m.decoder, memory, prompts[0], ReportStyle(num_beams=3, max_new_tokens=12))[0]
    period = full.ids[0]  # pretend the first generated word ends sentences
    style = ReportStyle(num_beams=3, max_new_tokens=12, max_sentences=1)
    for h in beam_search(m.decoder, memory, prompts[0], style, period):
        assert h.ids.count(period) <= 1
        assert h.ended != "sentences" or h.ids[-1] == period


# ----------------------------------------------------------------------------------------------
# Sentence boundary at the token cap

P = 9  # the sentence-end id in these unit tests


@pytest.mark.parametrize(
    ("ids", "style", "expected", "truncated"),
    [
        ([5, 6, P, 7, 8], ReportStyle(), [5, 6, P], True),  # cap cut the second sentence: dropped
        ([5, 6, P, 7, P], ReportStyle(), [5, 6, P, 7, P], True),  # cap hit at a sentence end: kept
        ([5, 6, P, 7], ReportStyle(), [5, 6, P, 7], False),  # [EOS] before the cap: untouched
        ([5, 6, 7, 8, 5], ReportStyle(), [5, 6, 7, 8, 5], True),  # not one sentence fits: fragment kept
        ([5, 6, P, 7, 8], ReportStyle(whole_sentences=False), [5, 6, P, 7, 8], True),  # raw prefix
        ([5, P, 6, 7, P], ReportStyle(max_sentences=2), [5, P, 6, 7, P], False),  # the user's cut
    ],
)
def test_end_on_sentence(ids, style, expected, truncated):
    budget = 5 if len(ids) >= 5 else 8  # five tokens: the cap stopped it; fewer: [EOS] did
    probs = [0.5 + i / 100 for i in range(len(ids))]
    out, out_probs, flag = end_on_sentence(ids, probs, budget, style, P)
    assert out == expected and out_probs == probs[: len(expected)] and flag is truncated
