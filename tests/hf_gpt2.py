"""The Hugging Face GPT-2 the decoder was built on before issue 13, for the tests that compare the in-house
one (model/networks/gpt2.py) against it. transformers is a test dependency only; callers skip without it."""

from __future__ import annotations

from model.networks.gpt2 import GPT2LMHeadModel, GPT2Settings
from model.networks.tokenizer import EOS_ID, PAD_ID


def hf_model(s: GPT2Settings):
    """``transformers.GPT2LMHeadModel`` exactly as model/networks/decoder.py configured it before issue 13."""
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=s.vocab_size,
        n_positions=s.n_positions,
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        n_inner=s.n_inner,
        activation_function="gelu_new",
        resid_pdrop=s.dropout,
        embd_pdrop=s.dropout,
        attn_pdrop=s.dropout,
        add_cross_attention=True,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=True,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return transformers.GPT2LMHeadModel(cfg)


def hf_twin(ours: GPT2LMHeadModel):
    """The HF model holding our weights (loaded strictly), in our module's train / eval mode."""
    hf = hf_model(ours.config)
    hf.load_state_dict(ours.state_dict(), strict=True)
    return hf.train(ours.training)
