"""Cold start: pages paint before torch loads, the serving path never imports pytorch-grad-cam or
scikit-learn, and the background pre-warm imports the model stack once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "transformers", "sklearn", "pytorch_grad_cam", "cv2", "matplotlib")


def _modules_after(code: str) -> dict[str, bool]:
    """Which HEAVY modules a fresh interpreter holds after running ``code``."""
    probe = textwrap.dedent(code) + f"\nimport sys\nprint({{m: m in sys.modules for m in {HEAVY!r}}})\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    return eval(out.stdout.strip().splitlines()[-1])  # a dict literal we printed ourselves


def test_page_modules_import_without_torch():
    loaded = _modules_after(
        """
        import components.cam_view, components.controls, components.layout, components.model_store
        import components.prediction_view, components.predictions, model.guard, model.serving
        import components.review_view, components.study_view  # the Compare page's other imports
        """
    )
    assert not any(loaded.values()), loaded


def test_run_time_paths_never_import_transformers():
    """Issue 13: transformers (and the torchvision, torch._dynamo... it pulls in) was ~5.5 CPU-s of a cold
    start. The dashboard's model stack and ``meddistill predict`` (greedy and beam, teacher and student,
    shipped weights and tokenizers) run on the in-house GPT-2 and tokenizer wrapper without it."""
    probe = textwrap.dedent(
        """
        import contextlib, io, sys
        from model.serving import PREWARM_MODULES
        import importlib
        for name in PREWARM_MODULES:
            importlib.import_module(name)
        import model.inference, model.checkpoints, model.explain.gradcam, model.explain.divergence
        import components.predictions, components.model_store, components.cam_view
        from model.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            for extra in ([], ["--decoding", "beam", "--num-beams", "3"]):
                for image, modality, model in (("cxr_effusion", "CXR", "teacher"), ("ct_malignant", "CT", "student")):
                    args = [f"assets/samples/{image}.png", "--modality", modality, "--model", model, *extra]
                    assert main(["predict", *args]) == 0, args
        assert "effusion" in out.getvalue().lower(), out.getvalue()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "torchvision")))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]


def test_sample_list_finds_the_pydicom_file_without_importing_pydicom():
    """Listing the samples (every first page) finds pydicom's CT_small.dcm on disk; importing pydicom for
    it cost ~1 CPU-s of each cold start (benchmarks/results/cold_start_profile.md)."""
    import importlib.util

    if importlib.util.find_spec("pydicom") is None:
        pytest.skip("pydicom not installed")
    probe = (
        "import sys\nfrom components.samples import _pydicom_path\n"
        "p = _pydicom_path('CT_small.dcm')\nprint(repr((p, 'pydicom' in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    path, imported = eval(out.stdout.strip().splitlines()[-1])  # a tuple literal we printed ourselves
    assert path is not None and Path(path).name == "CT_small.dcm" and Path(path).is_file()
    assert not imported


def test_a_grad_cam_needs_neither_pytorch_grad_cam_nor_sklearn():
    loaded = _modules_after(
        """
        import sys, threading
        import numpy as np
        sys.path.insert(0, "tests")
        from tiny_training import tiny_model
        from model.explain.gradcam import explain
        from model.networks import build_tokenizer
        from model.types import Study

        class P:
            tokenizer = build_tokenizer(["The heart is enlarged."])
            model = tiny_model("tiny-student", len(tokenizer), seed=0)[0].eval()
            lock = threading.Lock()

        px = np.random.default_rng(0).random((48, 48), dtype=np.float32)
        for method in ("gradcam", "hirescam", "gradcam++", "layercam", "eigencam"):
            explain(P(), Study(pixels=px, modality="CXR"), "finding:nodule", method=method)
        """
    )
    assert loaded["torch"]  # the probe did run a CAM
    assert not loaded["pytorch_grad_cam"] and not loaded["sklearn"] and not loaded["cv2"], loaded


def test_start_prewarm_imports_once_in_the_background(monkeypatch):
    import threading

    import model.serving as serving

    serving.wait_prewarm(0)  # nothing started in this state: returns at once
    monkeypatch.setattr(serving, "_prewarm_started", False)
    monkeypatch.setattr(serving, "_prewarm_done", threading.Event())
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    assert serving.start_prewarm(("colorsys",)) is True
    assert serving.start_prewarm(("colorsys",)) is False  # once per process
    serving.wait_prewarm(30)
    assert serving._prewarm_done.is_set() and "colorsys" in sys.modules
    # a module that cannot be imported ends the pre-warm quietly, and waiting still returns
    monkeypatch.setattr(serving, "_prewarm_started", False)
    monkeypatch.setattr(serving, "_prewarm_done", threading.Event())
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    assert serving.start_prewarm(("no_such_module_xyz", "colorsys")) is True
    t = time.perf_counter()
    serving.wait_prewarm(30)
    assert serving._prewarm_done.is_set() and time.perf_counter() - t < 30


def test_prewarm_list_is_third_party_only():
    """Our own modules are imported by the page alone: two threads importing them in different orders
    could each wait on the other (Python then hands one a half-initialised module)."""
    from model.serving import PREWARM_MODULES

    assert PREWARM_MODULES[0] == "torch"
    assert not [m for m in PREWARM_MODULES if m.split(".")[0] in ("model", "components")]
