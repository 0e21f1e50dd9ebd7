"""GPT-2 with cross-attention, in house (issue 13: importing ``transformers`` was ~5.5 of a cold start's
~13 CPU-s; benchmarks/results/cold_start_profile.md).

A drop-in for ``transformers.GPT2LMHeadModel(GPT2Config(add_cross_attention=True, ...))`` as this project
configures it (``gelu_new``, attention scaled by 1/sqrt(head dim), no per-layer scaling, no upcast /
reorder, tied input and output embeddings):

* the same module tree and parameter names and shapes (``transformer.h.0.crossattention.q_attn.weight``,
  ``lm_head.weight`` tied to ``transformer.wte.weight``, ``Conv1D`` weights stored (in, out)), so every
  checkpoint saved with the Hugging Face model loads strictly;
* the same math, op for op (``addmm`` projections, SDPA with the same causal / padding mask, dropout in
  training), so logits match to float rounding (tests/test_gpt2.py);
* the same random initialisation, draw for draw: a seeded build gives the weights the HF model gave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPT2Settings:
    """The decoder's shape; the names follow ``transformers.GPT2Config``."""

    vocab_size: int  # word-level vocabulary incl. special tokens
    n_positions: int  # learned positions (the longest sequence)
    n_embd: int  # width
    n_layer: int  # blocks
    n_head: int  # attention heads (n_embd must divide by it)
    n_inner: int | None = None  # MLP width; None = 4 * n_embd
    dropout: float = 0.1  # embedding, attention-probability and residual dropout (GPT-2's three pdrops)
    layer_norm_epsilon: float = 1e-5  # GPT2Config's default
    initializer_range: float = 0.02  # std of the normal initial weights (GPT2Config's default)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU, written as ``transformers.activations.NewGELUActivation`` writes it (same ops, same
    rounding): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GELUNew(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_new(x)


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), ``y = b + x W`` (``transformers.pytorch_utils.Conv1D``)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)  # (N, nf)
        return out.view(*x.shape[:-1], self.nf)


class GPT2Attention(nn.Module):
    """Causal self-attention, or (``cross``) attention from the sequence to a memory."""

    def __init__(self, s: GPT2Settings, cross: bool = False):
        super().__init__()
        d = s.n_embd
        if d % s.n_head:
            raise ValueError(f"n_embd={d} is not divisible by n_head={s.n_head}")
        self.n_head, self.head_dim, self.cross = s.n_head, d // s.n_head, cross
        if cross:
            self.c_attn = Conv1D(2 * d, d)  # memory -> keys, values
            self.q_attn = Conv1D(d, d)
        else:
            self.c_attn = Conv1D(3 * d, d)  # sequence -> queries, keys, values
        self.c_proj = Conv1D(d, d)
        self.attn_dropout = nn.Dropout(s.dropout)  # on the attention probabilities (inside SDPA)
        self.resid_dropout = nn.Dropout(s.dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], -1, self.head_dim).transpose(1, 2)  # (B, T, d) -> (B, nh, T, hd)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, memory: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d). Self-attention: ``mask`` (B, 1, T, T) bool (True = may attend) or None
        for plain causal. Cross-attention: every position sees all of ``memory`` (B, M, d)."""
        d = x.shape[-1]
        if self.cross:
            q = self.q_attn(x)
            k, v = self.c_attn(memory).split(d, dim=2)
            causal = False
        else:
            q, k, v = self.c_attn(x).split(d, dim=2)
            causal = mask is None and x.shape[1] > 1
        a = F.scaled_dot_product_attention(
            self._heads(q),
            self._heads(k),
            self._heads(v),
            attn_mask=mask,
            dropout_p=self.attn_dropout.p if self.training else 0.0,
            is_causal=causal,
            scale=self.head_dim**-0.5,
        )  # (B, nh, T, hd)
        a = a.transpose(1, 2).reshape(*x.shape[:-1], d).contiguous()  # (B, T, d)
        return self.resid_dropout(self.c_proj(a))


class GPT2MLP(nn.Module):
    def __init__(self, s: GPT2Settings):
        super().__init__()
        inner = s.n_inner if s.n_inner is not None else 4 * s.n_embd
        self.c_fc = Conv1D(inner, s.n_embd)
        self.c_proj = Conv1D(s.n_embd, inner)
        self.act = GELUNew()
        self.dropout = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-LN: x += self-attn(ln_1 x); x += cross-attn(ln_cross_attn x, memory); x += mlp(ln_2 x)."""

    def __init__(self, s: GPT2Settings):
        super().__init__()
        d, eps = s.n_embd, s.layer_norm_epsilon
        # registration order as in transformers' GPT2Block (the initialisation draws follow it)
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(s)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.crossattention = GPT2Attention(s, cross=True)
        self.ln_cross_attn = nn.LayerNorm(d, eps=eps)
        self.mlp = GPT2MLP(s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.crossattention(self.ln_cross_attn(x), memory=memory)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """Embeddings + blocks + final LayerNorm (``GPT2LMHeadModel.transformer``)."""

    def __init__(self, s: GPT2Settings):
        super().__init__()
        self.wte = nn.Embedding(s.vocab_size, s.n_embd)
        self.wpe = nn.Embedding(s.n_positions, s.n_embd)
        self.drop = nn.Dropout(s.dropout)
        self.h = nn.ModuleList([GPT2Block(s) for _ in range(s.n_layer)])
        self.ln_f = nn.LayerNorm(s.n_embd, eps=s.layer_norm_epsilon)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, memory: torch.Tensor
    ) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) 1 = token / 0 = padding or None, memory (B, M, d) ->
        hidden states (B, T, d)."""
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(pos))  # (B, T, d)
        mask = None  # causal only: SDPA's is_causal (as transformers does when nothing is padded)
        if attention_mask is not None and not bool(attention_mask.all()):
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()  # (T, T)
            mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, T, T)
        for block in self.h:
            x = block(x, mask, memory)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 language model with cross-attention; ``lm_head`` shares its weight with ``transformer.wte``."""

    def __init__(self, s: GPT2Settings):
        super().__init__()
        self.config = s
        self.transformer = GPT2Model(s)
        _init_like_transformers(self.transformer, s)
        self.lm_head = nn.Linear(s.n_embd, s.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, std=s.initializer_range)  # drawn, then tied (as transformers)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, memory: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits (B, T, V): position t predicts token t + 1."""
        return self.lm_head(self.transformer(input_ids, attention_mask, memory))


def _init_like_transformers(root: nn.Module, s: GPT2Settings) -> None:
    """``GPT2PreTrainedModel._init_weights`` over ``root``, children before parents (transformers'
    ``smart_apply`` order), so a seeded build draws what the HF model drew: normal(0, 0.02) weights,
    zero biases, unit LayerNorms, and the residual projections of attention and MLP re-drawn with std
    0.02 / sqrt(2 n_layer) (GPT-2 paper: scaled residual initialisation)."""
    std = s.initializer_range
    for module in _post_order(root):
        if isinstance(module, (nn.Linear, nn.Embedding, Conv1D)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if isinstance(module, (GPT2Attention, GPT2MLP)):
            nn.init.normal_(module.c_proj.weight, mean=0.0, std=std / math.sqrt(2 * s.n_layer))


def _post_order(module: nn.Module):
    for child in module.children():
        yield from _post_order(child)
    yield module
