"""Which weights the app serves and which version it says they are (components/model_store.py, issue 14):
no store = the shipped weights = version 1; the registry's current version when its folder holds
checkpoints; a broken pointer falls back to version 1 and says why; the version shows on Compare and on
the Models page cards."""

from __future__ import annotations

import shutil

import pytest

from model.inference import SHIPPED_DIR

TIMEOUT = 180
SHIPPED = all((SHIPPED_DIR / m / "model.safetensors").is_file() for m in ("teacher", "student"))


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    """No $MEDDISTILL_CHECKPOINTS; a fresh data directory; Streamlit's caches cleared around the test."""
    import streamlit as st

    monkeypatch.delenv("MEDDISTILL_CHECKPOINTS", raising=False)
    monkeypatch.delenv("MEDDISTILL_DB_URL", raising=False)
    monkeypatch.setenv("MEDDISTILL_DATA_DIR", str(tmp_path / "userdata"))
    st.cache_resource.clear()
    yield tmp_path / "userdata"
    st.cache_resource.clear()


def _register(version_dir, ckpt_dir, number: int = 0) -> int:
    """Copy the demo checkpoints into ``version_dir`` and make them the registry's current version."""
    from model.review import ModelVersion, ReviewStore, now_iso

    for role in ("teacher", "student"):
        shutil.copytree(ckpt_dir / role, version_dir / role)
    store = ReviewStore.open()
    n = store.register_version(
        ModelVersion(number, 1, str(version_dir), now_iso(), (), {}, {}, "candidate", "test version")
    )
    store.promote(n)
    store.close()
    return n


@pytest.mark.skipif(not SHIPPED, reason="shipped checkpoints are not installed")
def test_no_store_serves_the_shipped_weights_as_version_1_without_creating_one(store_env):
    from components.model_store import resolve_served

    origin, dirs, version, note = resolve_served()
    assert (origin, version, note) == ("shipped", 1, "")
    assert dirs["teacher"] == SHIPPED_DIR / "teacher"
    assert not store_env.exists()  # reading the version never creates the store


@pytest.mark.skipif(not SHIPPED, reason="shipped checkpoints are not installed")
def test_the_registrys_current_version_is_served_and_a_broken_pointer_falls_back(store_env, ckpt_dir, tmp_path):
    import streamlit as st

    from components.model_store import resolve_served
    from model.review import ReviewStore

    n = _register(tmp_path / "v2", ckpt_dir)
    st.cache_resource.clear()
    origin, dirs, version, note = resolve_served()
    assert (origin, version, note) == ("registry", n, "")
    assert dirs["teacher"] == tmp_path / "v2" / "teacher"
    shutil.rmtree(tmp_path / "v2" / "student")  # the version's folder lost a model
    origin, dirs, version, note = resolve_served()
    assert (origin, version) == ("shipped", 1) and f"current version {n}" in note and "holds no" in note
    ReviewStore.open().rollback()  # back to version 1: read on the next rerun, no restart
    assert resolve_served()[:3] == ("shipped", {m: SHIPPED_DIR / m for m in dirs}, 1)


def test_env_checkpoints_have_no_version(store_env, ckpt_dir, monkeypatch):
    from components.model_store import ModelSet, resolve_served, version_text

    monkeypatch.setenv("MEDDISTILL_CHECKPOINTS", str(ckpt_dir))
    assert resolve_served()[2] is None
    assert "not a registry version" in version_text(ModelSet({}, {}, "env", "k"))
    assert version_text(ModelSet({}, {}, "shipped", "k", version=1)) == "Model version 1 (shipped weights)"
    assert version_text(ModelSet({}, {}, "registry", "k", version=4)) == "Model version 4"


def test_compare_and_model_cards_show_the_served_version(store_env, ckpt_dir, tmp_path):
    """The registry points at the (tiny) demo checkpoints as version 2: every result and card says so."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    n = _register(tmp_path / "v2", ckpt_dir)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    shown = [c.value for c in at.caption if f"Model version {n}" in c.value]
    assert len(shown) >= 3, [c.value for c in at.caption]  # the origin line + one per model column
    at.switch_page("components/pages/models.py").run()
    assert not at.exception
    cards = [m.value for m in at.markdown if m.value.startswith("**Serving:**")]
    assert cards and all(f"Model version {n}" in c for c in cards)
