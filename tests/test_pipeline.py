"""model/commands/pipeline.py: the sizing profiles (frozen dataclasses) and their --set overrides."""

from __future__ import annotations

import dataclasses

import pytest

from model.commands.pipeline import PROFILES, Profile
from model.networks import STUDENT_PRESETS, TEACHER_PRESETS


def test_profiles_are_frozen_and_name_real_presets():
    for prof in PROFILES.values():
        assert isinstance(prof, Profile)
        assert prof.teacher_arch in TEACHER_PRESETS and prof.student_arch in STUDENT_PRESETS
        with pytest.raises(dataclasses.FrozenInstanceError):
            prof.n_cxr = 1  # type: ignore[misc]


def test_overrides_parse_by_field_type():
    base = PROFILES["fast"]
    p = base.with_overrides(["n_cxr=12", "teacher_lr=0.5", "bf16=0", "max_per_source=None", "student_arch=x"])
    assert (p.n_cxr, p.teacher_lr, p.bf16, p.max_per_source, p.student_arch) == (12, 0.5, False, None, "x")
    from model.distill.config import cpu_has_fast_bf16

    assert base.n_cxr == 160 and base.bf16 is cpu_has_fast_bf16()  # the shared profile is untouched
    assert PROFILES["default"].with_overrides(["max_per_source=40"]).max_per_source == 40
    with pytest.raises(SystemExit, match="unknown profile key 'n_xray'"):
        base.with_overrides(["n_xray=3"])


def test_profiles_train_heads_and_decoder_on_cached_features():
    for name in ("default", "full", "fast"):
        p = PROFILES[name]
        assert p.teacher_feature_epochs > 0 and p.student_feature_epochs > 0, name
    d = PROFILES["default"]
    budgets = (
        d.pretrain_budget_s + d.teacher_budget_s + d.teacher_feature_budget_s
        + 2 * (d.student_budget_s + d.student_feature_budget_s)
    )  # fmt: skip
    assert budgets <= 75 * 60  # the rest of the 90 minutes: data, feature and teacher caches, evaluation


def test_full_profile_names_what_the_shipped_teacher_used():
    p = PROFILES["full"]
    assert p.teacher_head_pool == "lesion" and p.teacher_repeat == "phantom_ct=3"
    assert p.student_head_pool == "lesion"  # both students: one architecture, the KD comparison stays fair
    # one input size from pre-training on: a scale change lost the CT tumour class (retrain_v8.json)
    assert p.pretrain_size == p.image_size == PROFILES["default"].image_size == PROFILES["default"].pretrain_size
    budget = p.pretrain_budget_s + p.teacher_budget_s + p.teacher_feature_budget_s
    assert budget <= 150 * 60  # issue 10: the shipped teacher trains at most 150 minutes
    assert PROFILES["fast"].with_overrides(["teacher_repeat=phantom_ct=2"]).teacher_repeat == "phantom_ct=2"


def test_a_partial_rerun_keeps_the_runs_record(tmp_path):
    """``--reuse --only ...`` (e.g. a later ``--install``) adds to OUT/pipeline.json, never erases the
    stages the training run recorded."""
    import json

    from model.cli import main

    (tmp_path / "pipeline.json").write_text(
        json.dumps({"command": "meddistill pipeline --out X", "stages": {"teacher": {"wall_s": 2909.5}}})
    )
    assert main(["pipeline", "--fast", "--out", str(tmp_path), "--reuse", "--no-real", "--only", "--quiet"]) == 0
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    assert doc["stages"]["teacher"] == {"wall_s": 2909.5}
    assert doc["earlier_commands"] == ["meddistill pipeline --out X"]
