"""Word-level report tokenizer (``tokenizers`` WordLevel behind :class:`ReportTokenizer`, a small wrapper
with the ``PreTrainedTokenizerFast`` methods this project uses: the ``transformers`` import it replaced
cost seconds of every cold start, issue 13).

Reports have a small closed vocabulary, so whole words are the natural unit: one token per word,
punctuation split off ("effusion." -> "effusion", "."), numbers kept whole ("0.58", "14", "mm").

A decoder sequence is ``[DETAIL] [MODALITY] word ... word [EOS]``: the two leading control tokens
are the prompt (inputs, never targets); the detail token selects brief / standard / detailed.
Special tokens have fixed ids (their order below) so the model can name them without a tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

SPECIAL_TOKENS: tuple[str, ...] = (
    "[PAD]",
    "[UNK]",
    "[EOS]",
    "[BRIEF]",
    "[STANDARD]",
    "[DETAILED]",
    "[CXR]",
    "[CT]",
)
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2
DETAIL_TOKENS: dict[str, str] = {"brief": "[BRIEF]", "standard": "[STANDARD]", "detailed": "[DETAILED]"}
MODALITY_TOKENS: dict[str, str] = {"CXR": "[CXR]", "CT": "[CT]"}
PROMPT_LEN = 2  # [DETAIL] [MODALITY]
SENTENCE_END = "."

#: numbers (with decimals) and single punctuation marks become their own tokens
_SPLIT_PATTERN = r"\d+(?:\.\d+)?|[^\w\s]"
_NO_SPACE_BEFORE = {".", ",", ";", ":", ")", "%", "?", "!"}
_NO_SPACE_AFTER = {"("}
_JOINERS = {"-", "/"}  # "benign-appearing", "and/or": no spaces either side


def special_id(token: str) -> int:
    """Fixed id of a special token (same in every tokenizer built here)."""
    return SPECIAL_TOKENS.index(token)


def prompt_ids(detail: str, modality: str) -> list[int]:
    """The two control-token ids that start every sequence."""
    if detail not in DETAIL_TOKENS:
        raise ValueError(f"unknown detail level {detail!r}; choose one of {tuple(DETAIL_TOKENS)}")
    if modality not in MODALITY_TOKENS:
        raise ValueError(f"unknown modality {modality!r}; choose one of {tuple(MODALITY_TOKENS)}")
    return [special_id(DETAIL_TOKENS[detail]), special_id(MODALITY_TOKENS[modality])]


def _backend(vocab: dict[str, int] | None = None):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(
        models.WordLevel(vocab=vocab, unk_token="[UNK]") if vocab else models.WordLevel(unk_token="[UNK]")
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated")]
    )
    # a no-op (no special tokens added), set as transformers' tokenizer wrapper set it, so tokenizer.json
    # files stay byte for byte what they were before the wrapper left (issue 13)
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    return tok


class ReportTokenizer:
    """A ``tokenizers.Tokenizer`` with our special tokens named: the subset of transformers'
    ``PreTrainedTokenizerFast`` API the code uses, with the same ids and results (tests/test_networks.py
    checks it against the transformers wrapper on the shipped tokenizer files)."""

    pad_token, unk_token, eos_token = "[PAD]", "[UNK]", "[EOS]"
    pad_token_id, unk_token_id, eos_token_id = PAD_ID, UNK_ID, EOS_ID

    def __init__(self, backend):
        self.backend_tokenizer = backend  # the ``tokenizers.Tokenizer`` (saved as tokenizer.json)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True) -> dict[str, list]:
        """``{"input_ids": ..., "attention_mask": ...}`` of one text (lists of ints) or of a list of texts
        (lists of lists). No post-processor is set, so ``add_special_tokens`` changes nothing here."""
        if isinstance(text, str):
            enc = self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": list(enc.ids), "attention_mask": list(enc.attention_mask)}
        encs = self.backend_tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {
            "input_ids": [list(e.ids) for e in encs],
            "attention_mask": [list(e.attention_mask) for e in encs],
        }

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (or of each), [UNK]'s for a word outside the vocabulary."""
        if isinstance(tokens, str):
            i = self.backend_tokenizer.token_to_id(tokens)
            return UNK_ID if i is None else i
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | None | list[str | None]:
        """Token of an id (or of each); None for an id outside the vocabulary."""
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def __repr__(self) -> str:
        return f"ReportTokenizer(vocab_size={len(self)})"


def wrap_tokenizer(backend) -> ReportTokenizer:
    """A ``tokenizers.Tokenizer`` (with SPECIAL_TOKENS at their fixed ids) as our tokenizer."""
    return ReportTokenizer(backend)


def build_tokenizer(texts: Iterable[str], min_frequency: int = 1) -> ReportTokenizer:
    """Train a word-level tokenizer on report texts (offline, deterministic for the same texts)."""
    from tokenizers import trainers

    tok = _backend()
    trainer = trainers.WordLevelTrainer(
        vocab_size=1_000_000,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    corpus = [t for t in texts if t] + [SENTENCE_END]  # "." always exists: it ends sentences
    tok.train_from_iterator(corpus, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(s) != i:
            raise RuntimeError(f"special token {s} got id {tok.token_to_id(s)}, expected {i}")
    return wrap_tokenizer(tok)


def words(text: str) -> list[str]:
    """Text -> the tokenizer's words, split as its pre-tokenizer does (white space, then numbers and
    punctuation on their own); benchmarks/bench_tradeoff.py counts report lengths in these."""
    return re.findall(_SPLIT_PATTERN + r"|[^\W\d]+|\w+", text)


def encode_report(
    tokenizer: ReportTokenizer,
    text: str | Sequence[str] | None,
    detail: str = "standard",
    modality: str = "CXR",
    max_len: int | None = None,
) -> tuple[list[int], int]:
    """``(ids, prompt_len)`` of ``[DETAIL] [MODALITY] words... [EOS]``; ``text`` None gives the prompt.

    ``text`` may be a string or a list of words (as produced by generation). Truncation to
    ``max_len`` drops the tail (and then the [EOS]).
    """
    prompt = prompt_ids(detail, modality)
    if text is None:
        return prompt, len(prompt)
    body = encode_words(tokenizer, text)
    ids = prompt + body + [EOS_ID]
    if max_len is not None:
        ids = ids[:max_len]
    return ids, len(prompt)


def encode_words(tokenizer: ReportTokenizer, text: str | Sequence[str]) -> list[int]:
    """Word ids of a report (no control tokens, no [EOS])."""
    if isinstance(text, str):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    unk = UNK_ID
    vocab = tokenizer.get_vocab()
    return [vocab.get(w, unk) for w in text]


def detokenize(tokens: Sequence[str]) -> str:
    """Words -> a clean sentence string: "Small left pleural effusion. No pneumothorax."."""
    out: list[str] = []
    glue_next = False
    for w in tokens:
        if w in SPECIAL_TOKENS:
            continue
        if out and not glue_next and w not in _NO_SPACE_BEFORE and w not in _JOINERS:
            out.append(" ")
        out.append(w)
        glue_next = w in _NO_SPACE_AFTER or w in _JOINERS
    return "".join(out).strip()


def decode_ids(tokenizer: ReportTokenizer, ids: Sequence[int]) -> tuple[list[str], str]:
    """(words, text) of generated ids; special tokens are dropped from both."""
    toks = [t for t in tokenizer.convert_ids_to_tokens(list(ids)) if t not in SPECIAL_TOKENS]
    return toks, detokenize(toks)
