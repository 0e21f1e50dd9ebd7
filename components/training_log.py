"""Reading a checkpoint's train_log.jsonl and card for display (cached; tolerant of partial files)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st


@st.cache_data(show_spinner=False)
def read_train_log(path: str, mtime_ns: int) -> list[dict]:
    """Records of a JSON-lines training log; broken lines (a run still writing) are skipped."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(_flatten(rec))
    return out


def _flatten(rec: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def train_log_for(checkpoint_dir: Path) -> list[dict]:
    path = Path(checkpoint_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return read_train_log(str(path), path.stat().st_mtime_ns)


@st.cache_data(show_spinner=False)
def file_sha256(path: str, mtime_ns: int) -> str:
    """``checkpoints.sha256_file``, cached per (path, modification time)."""
    from model.checkpoints import sha256_file

    return sha256_file(path)
