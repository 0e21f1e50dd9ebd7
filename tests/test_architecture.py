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


def test_training_never_imports_the_serving_module():
    """OOD statistics live in model/ood.py (issue 9): training and data code do not need the Predictor."""
    pattern = re.compile(r"^\s*(from model\.inference import|import model\.inference)", re.M)
    folders = [ROOT / "model" / d for d in ("distill", "data", "networks")] + [ROOT / "model" / "ood.py"]
    files = [p for f in folders for p in ([f] if f.is_file() else f.rglob("*.py"))]
    assert files and [p.name for p in files if pattern.search(p.read_text())] == []
