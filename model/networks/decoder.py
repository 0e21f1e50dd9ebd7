"""Report decoder: a GPT-2 with cross-attention (``model.networks.gpt2``, in house since issue 13; the same
parameter names, math and initialisation as ``transformers.GPT2LMHeadModel``) over a memory of projected
image patch tokens plus tokens embedding the head outputs.

Training and teacher forcing go through the full forward. Greedy / sampled / beam generation uses
:class:`IncrementalDecoder`, a tight loop over the *same* GPT-2 modules with a preallocated key/value
cache and cross-attention keys/values computed once (HF ``generate()`` spent most of a 1-layer model's
time in per-step Python). The tests check it against the full forward and against HF ``generate()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.networks.config import ModelConfig
from model.networks.gpt2 import GPT2LMHeadModel, GPT2Settings


def gpt2_settings(cfg: ModelConfig) -> GPT2Settings:
    """The decoder's GPT-2 shape from the model config."""
    return GPT2Settings(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.max_len,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_inner,
        dropout=cfg.dropout,
    )


class MemoryBuilder(nn.Module):
    """Cross-attention memory: h*w projected patch tokens (+ learned 2-D positions) and one token per
    finding / tumour class, mixing a "present" and an "absent" embedding by the head's probability
    (so the report can agree with the heads)."""

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        d = cfg.d_model
        self.proj = nn.Linear(in_channels, d)
        self.pos = nn.Parameter(torch.zeros(1, d, cfg.memory_grid, cfg.memory_grid))
        n_head_tokens = cfg.n_findings + cfg.n_tumour
        self.present = nn.Parameter(torch.randn(n_head_tokens, d) * 0.02)
        self.absent = nn.Parameter(torch.randn(n_head_tokens, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, features: torch.Tensor, head_probs: torch.Tensor) -> torch.Tensor:
        """features (B, C, h, w), head_probs (B, nf + nt) -> memory (B, h*w + nf + nt, d)."""
        b, _, h, w = features.shape
        pos = self.pos
        if pos.shape[-2:] != (h, w):
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)
        patches = self.proj(features.flatten(2).transpose(1, 2))  # (B, h*w, d)
        patches = patches + pos.flatten(2).transpose(1, 2)  # (B, h*w, d)
        p = head_probs[..., None]  # (B, nf + nt, 1)
        head_tokens = p * self.present + (1 - p) * self.absent  # (B, nf + nt, d)
        return self.norm(torch.cat([patches, head_tokens], 1))


class ReportDecoder(nn.Module):
    """GPT-2 LM with cross-attention to the memory."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT2LMHeadModel(gpt2_settings(cfg))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, memory: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced next-token logits (B, L, V): position t predicts token t+1."""
        return self.gpt(input_ids, attention_mask, memory)

    def incremental(self, memory: torch.Tensor, max_len: int) -> IncrementalDecoder:
        return IncrementalDecoder(self.gpt, memory, max_len)


class IncrementalDecoder:
    """One-token-at-a-time GPT-2 forward with a preallocated KV cache (inference only).

    Same math as ``GPT2Block.forward`` (pre-LN self-attention, cross-attention, MLP) in eval mode;
    the cross-attention keys / values of the fixed memory are computed once here.
    """

    def __init__(self, gpt: GPT2LMHeadModel, memory: torch.Tensor, max_len: int):
        tr = gpt.transformer
        self.wte, self.wpe, self.ln_f, self.blocks = tr.wte, tr.wpe, tr.ln_f, list(tr.h)
        self.lm_weight = gpt.lm_head.weight  # (V, d), tied to wte
        cfg = gpt.config
        self.nh, self.d = cfg.n_head, cfg.n_embd
        self.hd = self.d // self.nh
        b = memory.shape[0]
        self.max_len = min(max_len, cfg.n_positions)
        shape = (b, self.nh, self.max_len, self.hd)
        self.k = [memory.new_zeros(shape) for _ in self.blocks]  # self-attention cache per layer
        self.v = [memory.new_zeros(shape) for _ in self.blocks]
        self.ck, self.cv = [], []  # cross-attention keys / values per layer: (B, nh, M, hd)
        for blk in self.blocks:
            ca = blk.crossattention
            k, v = F.linear(memory, ca.c_attn.weight.t(), ca.c_attn.bias).split(self.d, dim=2)
            self.ck.append(k.view(b, -1, self.nh, self.hd).transpose(1, 2))
            self.cv.append(v.view(b, -1, self.nh, self.hd).transpose(1, 2))
        self.pos = 0

    def reorder(self, index: torch.Tensor) -> None:
        """Row i of the self-attention cache becomes row ``index[i]`` (beam search: each beam continues
        its parent). The cross-attention cache is left alone: every row must share one memory."""
        self.k = [c.index_select(0, index) for c in self.k]
        self.v = [c.index_select(0, index) for c in self.v]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.nh, 1, self.hd)  # (B, d) -> (B, nh, 1, hd)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) at the next position -> logits (B, V)."""
        t = self.pos
        if t >= self.max_len:
            raise IndexError("decoder positions exhausted")
        x = self.wte(ids) + self.wpe.weight[t]  # (B, d)
        b = x.shape[0]
        for i, blk in enumerate(self.blocks):
            at = blk.attn
            h = F.layer_norm(x, (self.d,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
            q, k, v = torch.addmm(at.c_attn.bias, h, at.c_attn.weight).split(self.d, dim=1)  # (B, d) x3
            self.k[i][:, :, t] = k.view(b, self.nh, self.hd)
            self.v[i][:, :, t] = v.view(b, self.nh, self.hd)
            a = F.scaled_dot_product_attention(
                self._heads(q), self.k[i][:, :, : t + 1], self.v[i][:, :, : t + 1]
            )  # (B, nh, 1, hd)
            x = x + torch.addmm(at.c_proj.bias, a.reshape(b, self.d), at.c_proj.weight)
            ca = blk.crossattention
            h = F.layer_norm(
                x, (self.d,), blk.ln_cross_attn.weight, blk.ln_cross_attn.bias, blk.ln_cross_attn.eps
            )
            q = torch.addmm(ca.q_attn.bias, h, ca.q_attn.weight)  # (B, d)
            a = F.scaled_dot_product_attention(self._heads(q), self.ck[i], self.cv[i])  # (B, nh, 1, hd)
            x = x + torch.addmm(ca.c_proj.bias, a.reshape(b, self.d), ca.c_proj.weight)
            m = blk.mlp
            h = F.layer_norm(x, (self.d,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
            h = m.act(torch.addmm(m.c_fc.bias, h, m.c_fc.weight))  # (B, d_inner)
            x = x + torch.addmm(m.c_proj.bias, h, m.c_proj.weight)
        x = F.layer_norm(x, (self.d,), self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)
        self.pos = t + 1
        return x @ self.lm_weight.t()  # (B, V)
