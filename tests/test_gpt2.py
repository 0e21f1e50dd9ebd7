"""The in-house GPT-2 (model/networks/gpt2.py) against ``transformers.GPT2LMHeadModel`` (issue 13).

transformers is a test dependency only: these tests build the HF model with the configuration the
decoder used to build it with, and check parameter names, shapes, initial draws and logits.
"""

from __future__ import annotations

import pytest
import torch
from hf_gpt2 import hf_model, hf_twin

from model.networks.config import TINY_PRESETS
from model.networks.decoder import gpt2_settings
from model.networks.gpt2 import GPT2LMHeadModel, GPT2Settings, gelu_new

transformers = pytest.importorskip("transformers")

SETTINGS = {
    "tiny-1l": GPT2Settings(vocab_size=37, n_positions=20, n_embd=24, n_layer=1, n_head=2, dropout=0.0),
    "3l-inner": GPT2Settings(
        vocab_size=53, n_positions=32, n_embd=48, n_layer=3, n_head=4, n_inner=80, dropout=0.0
    ),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_same_parameter_names_shapes_and_initial_draws(name):
    s = SETTINGS[name]
    torch.manual_seed(0)
    hf = hf_model(s)
    hf_next = torch.rand(4)  # the generator's state after the build
    torch.manual_seed(0)
    ours = GPT2LMHeadModel(s)
    our_next = torch.rand(4)
    a, b = hf.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k
    assert torch.equal(hf_next, our_next)  # what is built after the decoder draws the same too
    assert ours.lm_head.weight is ours.transformer.wte.weight


def _inputs(s: GPT2Settings, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, s.vocab_size, (3, 11), generator=g)
    memory = torch.randn(3, 7, s.n_embd, generator=g)
    padded = torch.ones_like(ids)
    padded[1, 6:] = 0  # right padding, as the collate pads
    padded[2, 9:] = 0
    return ids, memory, padded


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("mask", ["none", "ones", "padded"])
def test_logits_equal_transformers(name, training, mask):
    """Random weights (not the initial ones: LayerNorms and biases moved too), eval and training mode
    (dropout 0 so both are deterministic), no mask / all ones / right padding."""
    s = SETTINGS[name]
    torch.manual_seed(1)
    ours = GPT2LMHeadModel(s)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ours.train(training)
    hf = hf_twin(ours)
    ids, memory, padded = _inputs(s, 2)
    attention_mask = {"none": None, "ones": torch.ones_like(ids), "padded": padded}[mask]
    with torch.no_grad():
        expected = hf(
            input_ids=ids, attention_mask=attention_mask, encoder_hidden_states=memory, use_cache=False
        ).logits
        got = ours(ids, attention_mask, memory)
    keep = (attention_mask if attention_mask is not None else torch.ones_like(ids)).bool()
    torch.testing.assert_close(got[keep], expected[keep], rtol=0, atol=1e-5)


def test_gradients_equal_transformers():
    s = SETTINGS["3l-inner"]
    torch.manual_seed(3)
    ours = GPT2LMHeadModel(s).train()
    hf = hf_twin(ours)
    ids, memory, padded = _inputs(s, 4)
    ours(ids, padded, memory).logsumexp(-1).sum().backward()
    expected = hf(input_ids=ids, attention_mask=padded, encoder_hidden_states=memory).logits
    expected.logsumexp(-1).sum().backward()
    hf_grads = dict(hf.named_parameters())
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, hf_grads[n].grad, rtol=1e-4, atol=1e-5, msg=n)


def test_dropout_is_on_in_training_only():
    s = GPT2Settings(vocab_size=37, n_positions=20, n_embd=24, n_layer=1, n_head=2, dropout=0.5)
    torch.manual_seed(0)
    m = GPT2LMHeadModel(s)
    ids, memory, _ = _inputs(s, 0)
    with torch.no_grad():
        m.train()
        a, b = m(ids, None, memory), m(ids, None, memory)
        m.eval()
        c, d = m(ids, None, memory), m(ids, None, memory)
    assert not torch.equal(a, b) and torch.equal(c, d)


def test_gelu_new_equals_transformers():
    x = torch.linspace(-8, 8, 2001)
    assert torch.equal(gelu_new(x), transformers.activations.NewGELUActivation()(x))


@pytest.mark.parametrize("preset", list(TINY_PRESETS))
def test_decoder_settings_follow_the_model_config(preset):
    cfg = TINY_PRESETS[preset]
    s = gpt2_settings(cfg)
    assert (s.n_embd, s.n_layer, s.n_head, s.n_positions, s.dropout) == (
        cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.max_len, cfg.dropout
    )  # fmt: skip
