"""Fixtures shared by the test modules: the demo checkpoints (built once) and fresh AppTests.

Tiny random-weight models and checkpoints come from one builder, ``tests/tiny_training.py``
(``tiny_model``, ``tiny_checkpoint``): a plain module, because DDP worker processes import it too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app.py"
APP_TIMEOUT = 120


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory) -> Path:
    """The app's demo checkpoints (tiny random teacher / students), built once per session.

    Shared: do not write into it. A module that needs more (a training log, ...) overrides this fixture.
    """
    from model.demo import build_demo_checkpoints

    d = tmp_path_factory.mktemp("demo_ckpt")
    build_demo_checkpoints(d)
    return d


@pytest.fixture
def make_app(ckpt_dir, monkeypatch, request):
    """Fresh AppTests (one per simulated browser session) on ``ckpt_dir``, Streamlit's caches cleared.

    A module's ``TIMEOUT`` (seconds per run) replaces the default.
    """
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDDISTILL_CHECKPOINTS", str(ckpt_dir))
    st.cache_data.clear()
    st.cache_resource.clear()
    timeout = getattr(request.module, "TIMEOUT", APP_TIMEOUT)
    yield lambda: AppTest.from_file(str(APP), default_timeout=timeout)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app(make_app):
    """One fresh AppTest of app.py (not yet run)."""
    return make_app()
