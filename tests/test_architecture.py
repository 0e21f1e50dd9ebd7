"""House rules that keep the layers apart (STYLE.md)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_model_never_imports_streamlit():
    pattern = re.compile(r"^\s*(import streamlit|from streamlit)", re.M)
    offenders = [p for p in (ROOT / "model").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_no_pickle_weights_shipped():
    bad = [p for p in (ROOT / "assets").rglob("*") if p.suffix in {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}]
    assert bad == []


def test_cli_help_lists_commands(capsys):
    from model.cli import COMMANDS, main

    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
