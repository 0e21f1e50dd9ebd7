"""The input guard (model/guard): shipped samples accepted, every negative family refused, header/pixel
disagreement refused, user overrides trusted, verdicts typed and serialisable, probes tied to their weights,
and a deterministic rebuild."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.data.imaging import load_study
from model.guard import GUARD_DIR, Guard, check_prediction
from model.guard.families import HELD_OUT_NEGATIVES, NEGATIVE_FAMILIES, WRONG_MODALITY, dicom_bytes, examples
from model.types import GuardVerdict, Prediction

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples"

pytestmark = pytest.mark.skipif(
    not (GUARD_DIR / "model.safetensors").is_file(), reason="no shipped guard (run meddistill train-guard)"
)


@pytest.fixture(scope="module")
def guard() -> Guard:
    torch.set_num_threads(1)
    g = Guard.load()
    assert g is not None
    return g


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _check(guard: Guard, data: bytes, name: str, hint: str | None = None, override: str | None = None):
    return guard.check(load_study(data, name, modality_hint=hint), override=override)


def test_every_shipped_sample_is_accepted_as_its_modality(guard):
    from pydicom.data import get_testdata_file

    entries = json.loads((SAMPLES / "index.json").read_text())
    assert entries
    for e in entries:
        study = _check(guard, (SAMPLES / e["image"]).read_bytes(), e["image"])
        assert study.verdict.accepted, (e["id"], study.verdict.reason)
        assert study.modality == e["modality"] and study.verdict.detected_modality == e["modality"], e["id"]
    ct = _check(guard, Path(get_testdata_file("CT_small.dcm", download=False)).read_bytes(), "CT_small.dcm")
    assert ct.verdict.accepted and ct.modality == "CT" and ct.verdict.claim_source == "dicom"


@pytest.mark.parametrize("family", [*NEGATIVE_FAMILIES, WRONG_MODALITY])
def test_each_negative_family_is_refused(guard, family):
    refused, n = 0, 0
    for ex in examples(family, "test", 12):
        study = _check(guard, ex.data, ex.name, ex.hint, override=ex.hint)
        n += 1
        refused += not study.verdict.accepted
        if not study.verdict.accepted:
            v = study.verdict
            assert v.score > v.threshold and v.check in ("modality", "modality_mismatch")
            assert ex.name in v.reason and "anyway" in v.reason  # names the file and what to do
    assert refused >= n - 1, f"{family}: {refused}/{n} refused"


def test_issue_12_inputs_are_refused(guard):
    """The images the issue lists: a flat 1x1, a 4000 x 16 strip, a colourful gradient, a cartoon."""
    from model.guard.families import _scene

    yy, xx = np.mgrid[0:200, 0:300] / 300
    gradient = (np.stack([xx, yy, 1 - xx], 2) * 255).astype(np.uint8)
    scene = _scene(7, np.random.default_rng(7))
    cases = {
        "flat.png": _png(np.zeros((1, 1), np.uint8)),
        "strip.png": _png(np.full((16, 4000), 128, np.uint8)),
        "gradient.png": _png(gradient),
        "landscape.png": scene.data,
        "noise.png": _png((np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)),
    }
    for name, data in cases.items():
        study = _check(guard, data, name)
        assert not study.verdict.accepted and study.verdict.check == "modality", name
        assert study.verdict.detected_modality == "neither"


@pytest.mark.parametrize("fname", ["MR_small.dcm", "examples_rgb_color.dcm", "JPEG2000.dcm", "rtdose.dcm"])
def test_other_modalities_forced_as_ct_are_refused(guard, fname):
    """`meddistill predict --modality CT` on MR / US / NM / RT dose loads them; the guard refuses them."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(fname, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {fname} not installed")
    study = _check(guard, Path(path).read_bytes(), fname, hint="CT", override="CT")
    assert not study.verdict.accepted and study.verdict.claim_source == "user"


def test_dicom_header_disagreeing_with_pixels_is_refused_but_a_user_choice_is_trusted(guard):
    from model.data.phantom import make_case

    cxr = make_case(3, "CXR", size=256).image
    data = dicom_bytes(cxr, "CT", 3)  # a chest X-ray whose header says CT
    study = _check(guard, data, "mislabelled.dcm")
    v = study.verdict
    assert not v.accepted and v.check == "modality_mismatch" and v.claimed_modality == "CT"
    assert v.detected_modality == "CXR" and "DICOM header" in v.reason
    ct_png = _png((make_case(4, "CT", size=256).image * 255).astype(np.uint8))
    auto = _check(guard, ct_png, "slice.png")
    assert auto.verdict.accepted and auto.modality == "CT" and auto.verdict.claim_source == ""
    forced = _check(guard, ct_png, "slice.png", override="CXR")  # the user says otherwise: trusted, noted
    assert forced.verdict.accepted and forced.modality == "CXR" and "You chose" in forced.verdict.reason


def test_plain_image_note_is_replaced_by_the_detection(guard):
    from model.data.imaging import NO_MODALITY_NOTE
    from model.data.phantom import make_case

    data = _png((make_case(5, "CT", size=128).image * 255).astype(np.uint8))
    raw = load_study(data, "x.png")
    assert NO_MODALITY_NOTE in raw.warnings
    checked = guard.check(raw)
    assert NO_MODALITY_NOTE not in checked.warnings and "detected a chest CT slice" in checked.verdict.reason


def test_colour_is_recorded_and_warned_about():
    rgb = (np.random.default_rng(1).random((40, 60, 3)) * 255).astype(np.uint8)
    study = load_study(_png(rgb), "photo.png")
    assert study.image_stats["colourfulness"] > 15 and study.image_stats["colour_source"] == 1.0
    assert any("colour image" in w and "'photo.png'" in w for w in study.warnings)
    gray = load_study(_png(rgb[..., 0]), "gray.png")
    assert gray.image_stats["colourfulness"] == 0.0 and not any("colour" in w for w in gray.warnings)


def _pred(flag: bool, method: str = "guard_probe") -> Prediction:
    return Prediction(
        "student", "CXR", {}, {}, [], "the lungs are clear .", [], [], {}, 5.0, flag, None, 1.0, method
    )


def test_model_verdict_travels_with_the_prediction_and_serialises(guard):
    from model.data.phantom import make_case
    from model.guard import with_verdict

    study = _check(guard, _png((make_case(6, "CXR", size=128).image * 255).astype(np.uint8)), "c.png")
    refused = check_prediction(study, _pred(True))
    assert isinstance(refused, GuardVerdict) and not refused.accepted and refused.check == "ood:student"
    assert "5.00 > threshold 1.00" in refused.reason and "'c.png'" in refused.reason
    assert check_prediction(study, _pred(False)).accepted
    assert check_prediction(study, _pred(True, "mahalanobis")).accepted  # uncalibrated: a warning only
    doc = json.loads(json.dumps(with_verdict(study, _pred(True)).to_dict(), default=float))
    assert doc["verdict"]["check"] == "ood:student" and doc["verdict"]["accepted"] is False


def _probed_student():
    """The shipped student with its guard probe; skips when the guard's probe was fitted on other weights
    (a new student shipped since: rerun `meddistill train-guard`)."""
    from model.checkpoints import load_card
    from model.inference import Predictor, shipped_checkpoint

    d = shipped_checkpoint("student")
    if not (d / "model.safetensors").is_file():
        pytest.skip("no shipped student")
    entry = (json.loads((GUARD_DIR / "config.json").read_text()).get("ood") or {}).get("student")
    if not entry:
        pytest.skip("guard built without OOD probes")
    if entry["weights_sha256"] != load_card(d).get("weights_sha256"):
        pytest.skip(
            "the guard's student probe was fitted on other student weights: rerun meddistill train-guard"
        )
    return Predictor.from_dir("student")


def test_ood_probe_is_attached_only_to_the_weights_it_was_fitted_on(tmp_path):
    from model.guard.ood import attach_probe

    p = _probed_student()
    assert p.ood_probe is not None
    p.card = {**p.card, "weights_sha256": "0" * 64}  # other weights: no probe
    assert not attach_probe(p) and p.ood_probe is None


def test_shipped_probe_separates_junk_from_chest_images(guard):
    """The student's probe flags noise and flat images that the old Mahalanobis score passed (issue 12)."""
    from model.data.phantom import make_case

    p = _probed_student()
    junk = [
        np.zeros((64, 64), np.uint8),
        (np.random.default_rng(2).random((128, 128)) * 255).astype(np.uint8),
    ]
    for arr in junk:
        study = load_study(_png(arr), "junk.png")
        pred = p.predict(study)
        assert pred.ood_flag and pred.ood_score > pred.ood_threshold
    chest = load_study(_png((make_case(11, "CXR", size=256).image * 255).astype(np.uint8)), "chest.png")
    pred = p.predict(guard.check(chest))
    assert not pred.ood_flag and pred.ood_score <= pred.ood_threshold


@pytest.mark.slow
def test_train_guard_is_deterministic_and_loadable(tmp_path):
    from safetensors.torch import load_file

    from model.guard.train import TrainGuardConfig, train_guard

    def run(out):
        cfg = TrainGuardConfig(
            out=str(out), n_positive=8, real_passes=0, n_negative=5, n_calib=3, epochs=1, ood_models=()
        )
        return train_guard(cfg, log=lambda *_: None)

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    card = json.loads((a / "model_card.json").read_text())
    assert card["held_out_families"] == list(HELD_OUT_NEGATIVES)
    assert not set(HELD_OUT_NEGATIVES) & set(card["training_images"])  # the held-out family stays out
    g = Guard.load(a)
    assert g is not None and set(g.probabilities(load_study(_png(np.zeros((8, 8), np.uint8)), "z.png"))) == {
        "CXR",
        "CT",
        "neither",
    }


def test_clean_phantoms_for_the_ood_probes_are_plain_deterministic_and_split(monkeypatch):
    """The OOD probes also fit and calibrate on plain phantoms (as the training set renders them): augmented
    positives alone left a probe flagging half the plain CT test phantoms."""
    from model.data.phantom import make_case
    from model.guard import ood

    monkeypatch.setattr(ood, "CLEAN_PHANTOMS", {"train": 2, "calib": 2})
    tr, tr_labels = ood.clean_phantoms("train")
    ca, _ = ood.clean_phantoms("calib")
    assert [s.modality for s in tr] == ["CXR", "CXR", "CT", "CT"] and tr_labels.tolist() == [0, 0, 1, 1]
    assert all(s.pixels.shape == (256, 256) and s.pixels.dtype == np.float32 for s in tr + ca)
    again, _ = ood.clean_phantoms("train")
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(tr, again, strict=True))
    assert not any(np.array_equal(a.pixels, b.pixels) for a in tr for b in ca)
    first = make_case(ood.CLEAN_PHANTOM_SEED, "CXR", size=256).image  # no augmentation, no re-encoding
    assert np.array_equal(tr[0].pixels, first.astype(np.float32))
