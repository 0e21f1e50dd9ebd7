"""The training loop: logs, resume, determinism, the optimizer state round trip, AUROC, KD path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_model
from tiny_training import tiny_kd_setup, tiny_model, tiny_tensorset

from model.distill.config import DistillConfig, TrainConfig
from model.distill.teacher_cache import cache_teacher_outputs
from model.distill.train_state import flatten_optimizer_state, unflatten_optimizer_state
from model.distill.trainer import LOG_NAME, fit, lr_lambda, make_projector
from model.evaluate.classification import auroc

torch.set_num_threads(1)


def _train(tmp, seed=0, **kw):
    torch.manual_seed(seed)
    model, _ = tiny_model()
    tcfg = TrainConfig(**({"epochs": 2, "batch_size": 4, "seed": seed, "log_every": 1} | kw))
    r = fit(
        model,
        tiny_tensorset(12),
        tiny_tensorset(6, seed=1),
        tcfg,
        DistillConfig().without_kd(),
        tmp,
        show_progress=False,
    )
    return model, r


def _weights(model, path):
    save_model(model, str(path))
    return load_file(str(path))


def test_fit_logs_every_term_and_validates(tmp_path):
    _, r = _train(tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    val = [x for x in lines if x["split"] == "val"]
    assert len(train) == r.steps == 6 and len(val) == 2
    for key in ("ce_report", "kd_tokens", "hint", "attention", "total", "lr", "epoch", "step"):
        assert key in train[0]
    assert "val_findings_macro_auroc" in val[-1] and np.isfinite(val[-1]["val_total"])


def test_same_seed_same_weights(tmp_path):
    a, _ = _train(tmp_path / "a", seed=3)
    b, _ = _train(tmp_path / "b", seed=3)
    wa, wb = _weights(a, tmp_path / "a.st"), _weights(b, tmp_path / "b.st")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


@pytest.mark.parametrize("stop_at", [2, 3])  # mid-epoch (3 steps per epoch) and at an epoch end
def test_resume_continues_from_saved_step_and_matches_one_run(tmp_path, stop_at):
    kw = {"epochs": 2, "patience": 99, "schedule": "constant"}  # same lr at every step for any budget
    full, _ = _train(tmp_path / "full", max_steps=5, **kw)
    _train(tmp_path / "part", max_steps=stop_at, **kw)
    state = json.loads((tmp_path / "part" / "stage_joint" / "train_state" / "state.json").read_text())
    assert state["progress"]["step"] == stop_at
    torch.manual_seed(123)  # resume must not depend on the fresh model's init
    model, _ = tiny_model()
    tcfg = TrainConfig(epochs=2, batch_size=4, max_steps=5, log_every=1, patience=99, schedule="constant")
    r = fit(
        model,
        tiny_tensorset(12),
        tiny_tensorset(6, seed=1),
        tcfg,
        DistillConfig().without_kd(),
        tmp_path / "part",
        resume=True,
        show_progress=False,
    )
    assert r.steps == 5
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / LOG_NAME).read_text().splitlines()]
    assert steps.count(1) == 1 and 5 in steps  # continued, did not restart
    wf, wp = _weights(full, tmp_path / "f.st"), _weights(model, tmp_path / "p.st")
    for k in wf:
        torch.testing.assert_close(wp[k], wf[k], rtol=1e-6, atol=1e-7)


def test_optimizer_state_round_trip():
    model, _ = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    b = tiny_tensorset(4).batch(torch.arange(4))
    out = model(b["images"], b["context"], b["input_ids"], b["attention_mask"])
    out.lm_logits.sum().backward()
    opt.step()
    tensors, structure = flatten_optimizer_state(opt.state_dict())
    json.dumps(structure)  # the structure is plain JSON
    back = unflatten_optimizer_state(tensors, structure)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    opt2.load_state_dict(back)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["betas"] == (0.8, 0.9) and s2["param_groups"][0]["lr"] == 1e-2
    for i in s1["state"]:
        for k, v in s1["state"][i].items():
            torch.testing.assert_close(s2["state"][i][k], v)


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(100, TrainConfig(warmup_frac=0.1, min_lr_frac=0.0, schedule="cosine"))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 40).astype(float)  # many ties
    y = rng.integers(0, 2, 40)
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert auroc(y, s) == pytest.approx(pairs)
    assert np.isnan(auroc(np.zeros(40), s))


def test_kd_with_cached_teacher_and_a_transfer_set(tmp_path):
    teacher, student, train, dcfg = tiny_kd_setup()
    assert train.teacher.token_topk_index.shape == (8, 12, 4) and train.teacher.features.shape[-1] == 2
    # a transfer set: no ground truth at all, only the teacher
    transfer = tiny_tensorset(8, seed=5).strip_labels()
    cache_teacher_outputs(teacher, transfer, dcfg, show_progress=False)
    both = type(train).concat([train, transfer])
    r = fit(
        student,
        both,
        tiny_tensorset(4, seed=1),
        TrainConfig(epochs=1, batch_size=4, log_every=1),
        dcfg,
        tmp_path / "kd",
        projector=make_projector(student.hint_channels, teacher.hint_channels),
        show_progress=False,
    )
    lines = [json.loads(x) for x in (tmp_path / "kd" / LOG_NAME).read_text().splitlines() if '"train"' in x]
    assert r.steps == 4
    assert all(x["kd_tokens"] > 0 and x["kd_findings"] >= 0 and x["hint"] > 0 for x in lines)


def test_all_unknown_batch_trains_finite(tmp_path):
    torch.manual_seed(0)
    model, _ = tiny_model()
    train = tiny_tensorset(8).strip_labels()  # nothing known: every hard term masked
    r = fit(
        model,
        train,
        tiny_tensorset(4, seed=1),
        TrainConfig(epochs=1, batch_size=4, log_every=1),
        DistillConfig().without_kd(),
        tmp_path / "u",
        show_progress=False,
    )
    lines = [json.loads(x) for x in (tmp_path / "u" / LOG_NAME).read_text().splitlines() if '"train"' in x]
    assert r.steps == 2 and all(np.isfinite(x["total"]) and x["total"] == 0 for x in lines)


# ----------------------------------------------------------------------------------------------
# The CLI end to end on a tiny generated phantom set


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    from model.cli import main as cli

    d = tmp_path_factory.mktemp("phantoms")
    assert (
        cli(["generate-data", "--out", str(d), "--n-cxr", "16", "--n-ct", "8", "--size", "64", "--quiet"])
        == 0
    )
    return d


def _cli_train(args):
    from model.cli import main as cli

    common = ["--no-real", "--image-size", "32", "--max-len", "104", "--batch-size", "4", "--quiet"]
    assert cli(args + common) == 0


def test_cli_train_then_distill_write_loadable_checkpoints(phantom_dir, tmp_path):
    from model.checkpoints import load_checkpoint

    teacher, student = tmp_path / "teacher", tmp_path / "student"
    _cli_train(
        [
            "train",
            "--data",
            str(phantom_dir),
            "--arch",
            "tiny-teacher",
            "--out",
            str(teacher),
            "--max-steps",
            "2",
        ]
    )
    model, tok, card, extras = load_checkpoint(teacher)
    assert card["role"] == "teacher" and card["training"]["stages"]["joint"]["steps"] == 2
    assert card["training"]["data"]["labelled"]["per_source"].keys() == {"phantom_cxr", "phantom_ct"}
    assert "val_findings_macro_auroc" in card["metrics"]["validation"]
    assert "ood_threshold" in extras and (teacher / LOG_NAME).is_file()
    # the card records the input size and sequence length the run used (once: in data_config and the model)
    assert card["training"]["data_config"]["image_size"] == card["model_config"]["image_size"] == 32
    assert card["training"]["data_config"]["max_len"] == card["model_config"]["max_len"] == 104
    assert not {"image_size", "max_len"} & card["training"]["train_config"].keys()
    _cli_train(
        [
            "distill",
            "--teacher",
            str(teacher),
            "--data",
            str(phantom_dir),
            "--arch",
            "tiny-student",
            "--out",
            str(student),
            "--max-steps",
            "2",
            "--labelled-frac",
            "0.5",
            "--top-k",
            "8",
        ]
    )
    s_model, s_tok, s_card, _ = load_checkpoint(student)
    assert s_tok.get_vocab() == tok.get_vocab()  # one vocabulary with the teacher
    data = s_card["training"]["data"]
    assert data["transfer"]["n"] > 0 and data["labelled"]["n"] > 0
    assert s_card["parameters"] < card["parameters"]
    log = [json.loads(x) for x in (student / LOG_NAME).read_text().splitlines() if '"train"' in x]
    assert log and log[-1]["kd_tokens"] > 0


def test_bf16_channels_last_training_is_finite_and_saves_plain_weights(tmp_path):
    model, r = _train(tmp_path / "bf", bf16=True, epochs=1)
    lines = [json.loads(x) for x in (tmp_path / "bf" / LOG_NAME).read_text().splitlines()]
    assert r.steps == 3 and all(np.isfinite(x.get("total", x.get("val_total"))) for x in lines)
    assert all(p.is_contiguous() for p in model.parameters())  # back to the plain layout


def test_time_budget_refits_the_schedule_and_stops(tmp_path):
    _, r = _train(tmp_path / "tb", epochs=10, patience=99, time_budget_s=1e-3)  # 30 steps planned
    assert r.steps == 26  # re-fitted at step 25 to "one more step"


def test_label_memory_probs_uses_known_labels_only():
    nan = float("nan")
    batch = {
        "findings": torch.tensor([[1.0, 0.0], [nan, nan], [0.0, 1.0]]),
        "tumour": torch.tensor([-100, 2, -100]),
    }
    from model.distill.trainer import label_memory_probs

    all_rows = label_memory_probs(batch, 1.0, n_tumour=3)
    assert all_rows[0, :2].tolist() == [1.0, 0.0] and torch.isnan(all_rows[0, 2:]).all()
    assert torch.isnan(all_rows[1, :2]).all() and all_rows[1, 2:].tolist() == [0.0, 0.0, 1.0]
    assert torch.isnan(label_memory_probs(batch, 0.0, n_tumour=3)).all()  # p = 0: the heads everywhere
    torch.manual_seed(0)
    share = (
        ~torch.isnan(
            label_memory_probs({k: v.repeat(400, *[1] * (v.dim() - 1)) for k, v in batch.items()}, 0.5, 3)[
                :, 2
            ]
        )
    ).float()
    assert 0.1 < share.mean() < 0.25  # a third of the rows know the tumour, half of those are kept


def test_memory_probs_replace_the_heads_in_the_decoder_memory():
    torch.manual_seed(0)
    model, _ = tiny_model()
    model.eval()
    b = tiny_tensorset(4).batch(torch.arange(4))
    n = model.cfg.n_findings + model.cfg.n_tumour
    plain = model(b["images"], b["context"], b["input_ids"], b["attention_mask"]).lm_logits
    same = model(
        b["images"], b["context"], b["input_ids"], b["attention_mask"], torch.full((4, n), float("nan"))
    )
    assert torch.equal(plain, same.lm_logits)  # NaN = the heads' own probabilities
    forced = model(b["images"], b["context"], b["input_ids"], b["attention_mask"], torch.ones(4, n))
    assert not torch.allclose(plain, forced.lm_logits)


def _kd_gap(student, data, dcfg) -> dict[str, float]:
    """KL(teacher || student) terms over a whole set (dense teacher columns from the cache)."""
    from model.distill.losses import distillation_loss

    student.eval()
    b = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        out = student(b["images"], b["context"], b["input_ids"], b["attention_mask"])
        terms = distillation_loss(out, b["teacher"], b, dcfg)
    return {k: float(terms[k]) for k in ("kd_tokens", "kd_findings", "kd_tumour", "kd_treatment")}


def test_kd_moves_the_student_toward_the_teacher(tmp_path):
    """The same steps with the KD terms shrink the student's token divergence from the teacher, and leave
    every KD term below the no-KD baseline's (same data, same seed, same steps)."""
    teacher, _ = tiny_model("tiny-teacher", seed=1, spread=True)
    train = tiny_tensorset(16, seed=3)
    dcfg = DistillConfig(top_k=8, hint_size=2, w_hint=0.0, w_attention=0.0)
    cache_teacher_outputs(teacher, train, dcfg, show_progress=False)
    tcfg = TrainConfig(epochs=10, batch_size=8, lr=3e-3, warmup_frac=0.0, patience=100, augment="off")
    gaps = {}
    for name, cfg in (("kd", dcfg), ("nokd", dcfg.without_kd())):
        student, _ = tiny_model("tiny-student", seed=2)
        gaps["before"] = _kd_gap(student, train, dcfg)
        fit(student, train, tiny_tensorset(4, seed=4), tcfg, cfg, tmp_path / name, show_progress=False)
        gaps[name] = _kd_gap(student, train, dcfg)
    before, kd, nokd = gaps["before"], gaps["kd"], gaps["nokd"]
    assert kd["kd_tokens"] < 0.9 * before["kd_tokens"], gaps  # measured 7.36 -> 6.12 nats (T = 2)
    for term in ("kd_tokens", "kd_findings", "kd_tumour", "kd_treatment"):
        assert kd[term] < nokd[term], (term, gaps)  # measured: every term 1.3x to 7x lower with KD
