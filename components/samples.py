"""Shipped sample studies (assets/samples) and pydicom's bundled CT_small.dcm.

``assets/samples/index.json`` lists ``{"id", "title", "modality", "image", "truth", "mask", "kind"}``
entries (written by ``benchmarks/make_samples.py``); ``truth`` is ``CaseTruth.to_dict()`` plus
``"reports"`` and ``"treatments"``; ``mask`` is a uint8 bit mask (bit i = FINDINGS[i] on CXR, bit 0 =
tumour on CT). ``kind`` is ``"textbook"`` (one clear finding, tumour class or a normal study) or
``"subtle"`` (a finding below the phantoms' subtle sizes); an entry without one counts as textbook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from model.data.generate import read_masks
from model.types import CaseTruth

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
PYDICOM_SAMPLES = {"pydicom_ct_small": ("CT_small.dcm", "Real CT slice (pydicom test file CT_small.dcm)")}


@dataclass
class Sample:
    id: str
    title: str
    data: bytes  # raw file bytes, exactly what an upload would give
    name: str  # file name for the loader
    truth: CaseTruth | None = None
    reports: dict[str, str] | None = None  # detail -> ground-truth report
    treatments: list[dict] | None = None  # ground-truth rulebook suggestions
    masks: dict[str, np.ndarray] | None = None  # finding (or "tumour") -> bool mask
    modality: str | None = None  # "CXR" | "CT" for plain images (a PNG does not say); None = from the file


@st.cache_data(show_spinner=False)
def list_samples() -> dict[str, str]:
    """Sample id -> title: textbook phantoms, real DICOM, then the subtle phantoms (titled "(subtle)").

    Textbook cases come first so that the default study is one a reader can check by eye; the subtle ones
    are last and say so, since the models are expected to miss some of them (issue 10).
    """
    out: dict[str, str] = {}
    subtle: dict[str, str] = {}
    index = SAMPLES_DIR / "index.json"
    if index.exists():
        for entry in json.loads(index.read_text()):
            if entry.get("kind") == "subtle":
                title = entry["title"]
                subtle[entry["id"]] = title if "subtle" in title.lower() else f"{title} (subtle)"
            else:
                out[entry["id"]] = entry["title"]
    for sid, (fname, title) in PYDICOM_SAMPLES.items():
        if _pydicom_path(fname):
            out[sid] = title
    return out | subtle


def _pydicom_path(fname: str) -> str | None:
    """pydicom's bundled test file ``fname``: looked up in the installed package's ``data/test_files``
    without importing pydicom (1 CPU-s with its pixel plugins and ``requests``, on every cold start, to
    list the samples; issue 13); pydicom's own lookup (external data packages) only when it is not there."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("pydicom")  # finds the package, runs none of it
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for root in spec.submodule_search_locations or ():
        match = next((Path(root) / "data" / "test_files").rglob(fname), None)
        if match is not None:
            return str(match)
    try:
        from pydicom.data import get_testdata_file

        return get_testdata_file(fname, download=False)
    except Exception:
        return None


@st.cache_data(max_entries=32, ttl=3600, show_spinner=False)  # bytes + masks of a few samples
def load_sample(sample_id: str) -> Sample:
    if sample_id in PYDICOM_SAMPLES:
        fname, title = PYDICOM_SAMPLES[sample_id]
        return Sample(sample_id, title, Path(_pydicom_path(fname)).read_bytes(), fname)
    entry = next(e for e in json.loads((SAMPLES_DIR / "index.json").read_text()) if e["id"] == sample_id)
    truth_d = json.loads((SAMPLES_DIR / entry["truth"]).read_text()) if entry.get("truth") else None
    truth = CaseTruth.from_dict(truth_d) if truth_d else None
    masks = None
    if entry.get("mask") and (SAMPLES_DIR / entry["mask"]).exists():
        masks = read_masks(SAMPLES_DIR / entry["mask"], entry["modality"])
    return Sample(
        id=sample_id,
        title=entry["title"],
        data=(SAMPLES_DIR / entry["image"]).read_bytes(),
        name=entry["image"],
        truth=truth,
        reports=(truth_d or {}).get("reports"),
        treatments=(truth_d or {}).get("treatments"),
        masks=masks,
        modality=entry.get("modality"),
    )
