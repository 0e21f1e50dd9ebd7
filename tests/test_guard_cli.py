"""`meddistill predict` behind the input guard: refusals exit 3 with the guard's sentence and no report
(text and --json), --force shows the output anyway, notes (Study.warnings) are always printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.cli import main
from model.guard import GUARD_DIR
from model.guard.families import NEGATIVE_FAMILIES, WRONG_MODALITY, examples
from model.inference import shipped_checkpoint

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (GUARD_DIR / "model.safetensors").is_file()
    or not (shipped_checkpoint("student") / "model.safetensors").is_file(),
    reason="needs the shipped guard and student",
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _write(tmp_path: Path, ex) -> Path:
    p = tmp_path / ex.name
    p.write_bytes(ex.data)
    return p


@pytest.mark.parametrize("family", [*NEGATIVE_FAMILIES, WRONG_MODALITY])
def test_each_negative_family_is_refused_by_the_cli(tmp_path, capsys, family):
    ex = next(iter(examples(family, "test", 1)))
    path = _write(tmp_path, ex)
    argv = ["predict", str(path)] + (["--modality", ex.hint] if ex.hint else [])
    assert main(argv) == 3
    out, err = capsys.readouterr()
    assert out == ""  # no report, findings or treatment
    assert "refused:" in err and ex.name in err and "--force" in err

    assert main([*argv, "--json"]) == 3
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["refused"] is True and doc["verdict"]["accepted"] is False
    assert "report" not in doc and "findings" not in doc
    assert doc["verdict"]["reason"] in err  # the same sentence on both channels
    assert doc["verdict"]["score"] > doc["verdict"]["threshold"]


def test_force_shows_the_output_anyway(tmp_path, capsys):
    ex = next(iter(examples("noise", "test", 1)))
    path = _write(tmp_path, ex)
    assert main(["predict", str(path), "--force", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["refused"] is False and doc["forced"] is True and doc["verdict"]["accepted"] is False
    assert isinstance(doc["report"], str) and "shown anyway (--force)" in err


def test_shipped_sample_is_accepted_and_notes_are_printed(capsys):
    sample = ROOT / "assets" / "samples" / "ct_malignant.png"
    assert main(["predict", str(sample)]) == 0
    out, err = capsys.readouterr()
    assert "[student] CT" in out and "tumour" in out
    assert "note: 'ct_malignant.png': detected a chest CT slice" in err
    assert main(["predict", str(sample), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["modality"] == "CT" and doc["verdict"]["accepted"] is True
    assert any("detected a chest CT slice" in w for w in doc["warnings"])


def test_loader_warnings_are_printed(tmp_path, capsys):
    """A colour photo of a chest phantom: the loader's colour note reaches the CLI in the loader's words."""
    import io

    import numpy as np
    from PIL import Image

    from model.data.phantom import make_case

    img = make_case(8, "CXR", size=256).image
    rgb = np.stack([img, img * 0.6, img * 0.3], 2)
    buf = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buf, format="PNG")
    path = tmp_path / "tinted.png"
    path.write_bytes(buf.getvalue())
    code = main(["predict", str(path), "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code in (0, 3)
    assert any("'tinted.png' is a colour image" in w for w in doc["warnings"])


def test_unsupported_dicom_without_modality_says_how_to_load_it(capsys):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm", download=False)
    assert main(["predict", path]) == 2
    err = capsys.readouterr().err
    assert "--modality" in err
    assert main(["predict", path, "--modality", "CT"]) == 3
    assert "does not look like a chest X-ray or a chest CT slice" in capsys.readouterr().err
