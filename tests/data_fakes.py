"""Stand-ins for data modules written in parallel (used by the data tests only while one is missing).

``ensure_data_modules(monkeypatch)`` imports the real ``imaging``, ``formulary``, ``labeler`` and
``phantom`` modules; a module that is not there yet is replaced for the test by a small fake that
honours the contract of docs/interfaces.md.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
from PIL import Image

from model.types import FINDINGS, CaseTruth, Finding, PatientContext, Study, TreatmentSuggestion


def _fake_imaging() -> types.ModuleType:
    m = types.ModuleType("model.data.imaging")

    def load_study_path(path):
        with Image.open(path) as im:
            px = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        return Study(pixels=px, modality="CXR", source=str(path))

    def to_model_input(pixels, size):
        im = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))
        return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0

    m.load_study_path, m.to_model_input = load_study_path, to_model_input
    return m


def _fake_formulary() -> types.ModuleType:
    m = types.ModuleType("model.data.formulary")

    def suggest_treatments(findings, tumour, context):
        names = {f.name for f in findings}
        out = []
        if tumour == "malignant":
            out.append(TreatmentSuggestion("oncology_referral", 1.0, "suspected malignancy"))
        if "atelectasis" in names:
            out.append(TreatmentSuggestion("respiratory_physiotherapy", 1.0, "atelectasis"))
        return out

    m.suggest_treatments = suggest_treatments
    return m


def _fake_labeler() -> types.ModuleType:
    m = types.ModuleType("model.data.labeler")

    def label_report(text):
        t = text.lower()
        out = {}
        for f in FINDINGS:
            word = f.split("_")[-1]
            out[f] = ("negative" if f"no {word}" in t else "positive") if word in t else None
        out["tumour_malignant"] = "positive" if "malignan" in t else None
        out["tumour_benign"] = None
        return out

    m.label_report = label_report
    return m


def _fake_make_case(seed, modality, size=256, case_id=None):
    from model.data.phantom import PhantomCase

    rng = np.random.default_rng(seed)
    img = rng.random((size, size)).astype(np.float32)
    masks = {}
    if modality == "CXR":
        findings = tuple(Finding(n) for n in FINDINGS if rng.random() < 0.3)
        tumour = None
        for i, f in enumerate(findings):
            m = np.zeros((size, size), bool)
            m[i : i + 4, i : i + 4] = True
            masks[f.name] = m
    else:
        tumour = str(rng.choice(["none", "benign", "malignant"]))
        findings = () if tumour == "none" else (Finding("tumour", side="left", size_mm=20.0),)
        if findings:
            masks["tumour"] = np.zeros((size, size), bool)
            masks["tumour"][2:6, 2:6] = True
    truth = CaseTruth(
        case_id or f"c{seed}", modality, findings, tumour, None, PatientContext(age=50, sex="F")
    )
    return PhantomCase(img, masks, truth, (1.0, 1.0))


def ensure_data_modules(monkeypatch) -> list[str]:
    """Install fakes for missing modules; returns the names of the faked ones."""
    faked = []
    for name, make in (
        ("model.data.imaging", _fake_imaging),
        ("model.data.formulary", _fake_formulary),
        ("model.data.labeler", _fake_labeler),
    ):
        try:
            importlib.import_module(name)
        except ImportError:
            monkeypatch.setitem(sys.modules, name, make())
            faked.append(name)
    phantom = importlib.import_module("model.data.phantom")
    try:
        phantom.make_case(0, "CT", size=32)
        phantom.make_case(0, "CXR", size=32)
    except ImportError:
        monkeypatch.setattr(phantom, "make_case", _fake_make_case)
        faked.append("model.data.phantom.make_case")
    return faked
