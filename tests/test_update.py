"""`meddistill update` on tiny presets: promotes when the gate passes, refuses with the failing check,
resumes after an interruption; the features recipe (default) leaves the trunk bit-identical and moves the
decoder, the full recipe moves the trunk too. Version 1 is a pair of tiny random-weight checkpoints,
never ResNet-50."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.review import ReviewStore
from model.review.gate import GateConfig
from model.review.update import STATE_NAME, UpdateConfig, run_update

N_REVIEWS = 6
#: a gate every candidate passes, and one none can (the F1 would have to rise 100 points)
LENIENT = GateConfig(min_review_gain=-1.0, max_f1_drop=1.0, max_head_drop=1.0, max_real_drop=1.0,
                     phantom_test_n=6, real_n=4)  # fmt: skip
IMPOSSIBLE = GateConfig(min_review_gain=-1.0, max_f1_drop=-1.0, max_head_drop=1.0, phantom_test_n=6)


def tiny_config(gate: GateConfig, **kw) -> UpdateConfig:
    base = dict(replay_ratio=1.0, teacher_epochs=1, student_epochs=1, batch_size=4, folds=2, cv_below=40,
                val_n=4, gate=gate)  # fmt: skip
    return UpdateConfig(**(base | kw))


def make_store(root: Path) -> ReviewStore:
    """A store whose version 1 is tiny demo checkpoints, holding N_REVIEWS reviewed CXR phantoms."""
    from model.data.generate import case_seed
    from model.data.phantom import make_case
    from model.data.reports import write_reports
    from model.demo import build_demo_checkpoints
    from model.review.samples import review_from_phantom

    shipped = root / "shipped"
    build_demo_checkpoints(shipped)
    store = ReviewStore.open(data_dir=root / "data", shipped_dir=shipped)
    for i in range(N_REVIEWS):
        seed = case_seed(99, "CXR", i)
        case = make_case(seed, "CXR", size=128, case_id=f"r{i}")
        report = write_reports(case.truth, np.random.default_rng([seed, 1]))["standard"]
        store.save_review(*review_from_phantom(case, report, model_version=1))
    return store


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _moved(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    """One update that passes the gate: (store, result)."""
    store = make_store(tmp_path_factory.mktemp("promote"))
    result = run_update(store, tiny_config(LENIENT), show_progress=False, log=lambda *a: None)
    return store, result


def test_update_promotes_when_the_gate_passes(promoted):
    from model.checkpoints import load_card

    store, result = promoted
    assert result.promoted and result.version == 2 and result.parent == 1
    assert result.checks and all(c.passed for c in result.checks)
    current = store.current_version()
    assert current.version == 2 and current.parent == 1 and current.status == "current"
    assert sorted(current.feedback_ids) == sorted(r.id for r in store.list_reviews())  # CV: trains on all
    folder = store.data_dir / "models" / "v2"
    for role in ("teacher", "student"):
        card = load_card(folder / role)
        assert (folder / role / "model.safetensors").is_file()
        assert current.sha256[role] == card["weights_sha256"]
        assert card["update"]["parent_version"] == 1
        assert not (folder / role / "stage_joint").exists()  # the resumable state is gone once saved
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    # the gate compared both versions on the cross-validated reviews and the phantom test split
    m = current.metrics
    assert "2-fold cross-validation" in m["reviews_mode"]
    for side in ("current", "candidate"):
        assert m[side]["teacher"]["reviews"]["n_labels"] == N_REVIEWS * 7
        assert m[side]["student"]["phantom_test"]["n_cases"] == 6
    assert set(m["reports"]) == {r.id for r in store.list_reviews()}
    assert {"before", "after"} <= set(m["reports"][next(iter(m["reports"]))]["teacher"])
    # the old version is retired, and nothing is left to learn
    assert store.version(1).status == "retired"
    from model.review.update import UpdateError

    with pytest.raises(UpdateError, match="nothing to learn"):
        run_update(store, tiny_config(LENIENT), show_progress=False, log=lambda *a: None)


def test_features_recipe_keeps_the_trunk_and_moves_the_decoder(promoted):
    """The default recipe: heads + decoder on cached trunk features; ``encoder.*`` bit-identical (weights
    and BN statistics), for the teacher and the KD student alike; reviewed rows repeated."""
    from model.checkpoints import load_card

    store, result = promoted
    shipped = store.data_dir.parent / "shipped"
    for role in ("teacher", "student"):
        before = _weights(shipped / role)
        after = _weights(store.data_dir / "models" / "v2" / role)
        assert before.keys() == after.keys()
        moved = _moved(before, after)
        assert not any(k.startswith("encoder.") for k in moved), sorted(moved)[:5]
        assert any(k.startswith("decoder.") for k in moved) and any(k.startswith("heads.") for k in moved)
        card = load_card(store.data_dir / "models" / "v2" / role)
        assert card["update"]["recipe"].startswith("features:") and card["update"]["review_repeat"] == 3
        # 6 reviews + 6 replay, the 6 reviews twice more: 24 rows, batch 4, one pass -> 6 steps
        assert card["update"]["fit"]["steps"] == 6
        log = (store.data_dir / "models" / "v2" / role / "train_log.jsonl").read_text()
        assert '"stage": "features"' in log and '"stage": "joint"' not in log
    assert store.current_version().metrics["candidate"]["teacher"]["phantom_test"]["n_cases"] == 6  # gated


def test_recipe_defaults_fill_only_what_is_unset():
    from model.review.update import RECIPE_DEFAULTS, UpdateError

    cfg = UpdateConfig(recipe="full", teacher_lr=3e-5).resolved()
    assert cfg.teacher_lr == 3e-5 and cfg.teacher_epochs == RECIPE_DEFAULTS["full"]["teacher_epochs"]
    assert UpdateConfig().resolved().recipe == "features" and UpdateConfig().resolved().review_repeat >= 1
    old_state = {k: v for k, v in UpdateConfig(recipe="full").resolved().to_dict().items() if k != "recipe"}
    # a state file written before recipes existed resumes as it was planned
    assert UpdateConfig.from_dict(old_state).recipe == "full"
    with pytest.raises(UpdateError, match="Unknown update recipe"):
        UpdateConfig(recipe="magic").resolved()


def test_update_refuses_and_says_which_check_failed(tmp_path, capsys):
    import argparse

    from model.cli import COMMANDS
    from model.commands.update import add_arguments, main

    assert "update" in COMMANDS
    store = make_store(tmp_path)
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--data-dir", str(store.data_dir), "--no-real", "--quiet", "--recipe", "full",
                         "--replay-ratio", "1",
                         "--teacher-epochs", "1", "--student-epochs", "1", "--batch-size", "4", "--folds", "2",
                         "--min-review-gain", "-1", "--max-f1-drop", "-1", "--max-head-drop", "1",
                         "--phantom-test-n", "6"])  # fmt: skip
    assert main(args) == 3
    out = capsys.readouterr().out
    assert "REJECTED" in out and "not promoted because" in out
    assert "phantom test, clinical-efficacy F1" in out and "must rise at least 100.0 points): FAILED" in out
    reopened = ReviewStore.open(data_dir=store.data_dir, create=False)
    assert reopened.current_version().version == 1
    v2 = reopened.version(2)
    assert v2.status == "rejected" and "clinical-efficacy F1" in v2.note
    assert (store.data_dir / "models" / "v2" / "teacher" / "model.safetensors").is_file()  # kept
    # the full recipe trains every weight: the trunk moves too
    moved = _moved(
        _weights(tmp_path / "shipped" / "teacher"), _weights(store.data_dir / "models" / "v2" / "teacher")
    )
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("decoder.") for k in moved)
    state = json.loads((store.data_dir / "models" / "v2" / STATE_NAME).read_text())
    assert state["config"]["recipe"] == "full"


def test_update_resumes_after_an_interruption(tmp_path, monkeypatch):
    import model.review.update as upd

    store = make_store(tmp_path)
    cfg = tiny_config(LENIENT, cv_below=2, holdout_frac=0.34)  # held-out mode: no folds
    calls = {"teacher": 0, "student": 0}
    real_teacher, real_student = upd._STEPS["teacher"], upd._STEPS["student"]

    def counted_teacher(*a):
        calls["teacher"] += 1
        return real_teacher(*a)

    def crashing_student(*a):
        calls["student"] += 1
        raise KeyboardInterrupt  # the process is stopped mid-update

    monkeypatch.setitem(upd._STEPS, "teacher", counted_teacher)
    monkeypatch.setitem(upd._STEPS, "student", crashing_student)
    with pytest.raises(KeyboardInterrupt):
        run_update(store, cfg, show_progress=False, log=lambda *a: None)
    state = json.loads((store.data_dir / "models" / "v2" / STATE_NAME).read_text())
    assert list(state["done"]) == ["teacher"] and state["mode"] == "holdout" and len(state["holdout"]) == 2
    assert store.current_version().version == 1 and [v.version for v in store.versions()] == [1]

    monkeypatch.setitem(upd._STEPS, "student", real_student)
    messages = []
    result = run_update(store, None, resume=True, show_progress=False, log=messages.append)
    assert calls["teacher"] == 1  # the finished step was not run again
    assert any("resuming" in m for m in messages)
    assert result.promoted and store.current_version().version == 2
    assert len(result.feedback_ids) == N_REVIEWS - 2  # the held-out reviews were never trained on
    assert not set(result.feedback_ids) & set(state["holdout"])
    assert "2 held-out of 6" in store.current_version().metrics["reviews_mode"]
