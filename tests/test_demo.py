"""model.demo: untrained demo checkpoints, each model id built from its named tiny preset."""

from __future__ import annotations

import pytest

from model.checkpoints import load_checkpoint
from model.demo import DEMO_PRESETS, build_demo_checkpoints
from model.networks import TINY_PRESETS


def test_each_model_id_gets_its_named_preset(tmp_path):
    dirs = build_demo_checkpoints(tmp_path)
    assert set(dirs) == set(DEMO_PRESETS) == {"teacher", "student"}
    sizes = {}
    for model_id, preset in DEMO_PRESETS.items():
        model, tokenizer, card, _ = load_checkpoint(dirs[model_id])
        assert card["model_id"] == model_id and card["arch_name"] == preset and card["untrained"]
        assert model.cfg.encoder == TINY_PRESETS[preset].encoder and model.cfg.vocab_size == len(tokenizer)
        sizes[model_id] = sum(p.numel() for p in model.parameters())
    assert sizes["teacher"] > sizes["student"]  # the teacher preset is the larger one, by name not position


def test_other_presets_by_name_and_unknown_names_refused(tmp_path):
    dirs = build_demo_checkpoints(tmp_path, {"student_nokd": "tiny-student"})
    assert (
        list(dirs) == ["student_nokd"]
        and load_checkpoint(dirs["student_nokd"]).card["arch_name"] == "tiny-student"
    )
    with pytest.raises(KeyError):
        build_demo_checkpoints(tmp_path / "x", {"teacher": "no-such-preset"})


def test_demo_weights_do_not_depend_on_what_ran_before(tmp_path):
    """Seeded per model, the caller's RNG untouched: the demo reports (which the review tests save) used to
    depend on the global torch RNG, and now and then the demo teacher wrote a report of punctuation only."""
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(1)
    a = build_demo_checkpoints(tmp_path / "a")
    state = torch.random.get_rng_state()
    torch.rand(1000)  # another test's draws
    b = build_demo_checkpoints(tmp_path / "b")
    for m in DEMO_PRESETS:
        wa, wb = load_file(a[m] / "model.safetensors"), load_file(b[m] / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    torch.random.set_rng_state(state)
    torch.rand(1000)
    build_demo_checkpoints(tmp_path / "c")
    after = torch.rand(1)
    torch.random.set_rng_state(state)
    torch.rand(1000)
    assert torch.equal(after, torch.rand(1))  # building left the global stream where it was
