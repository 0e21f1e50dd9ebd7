"""model.data.imaging: PNG / JPEG loading, every failure a user-facing error naming the file, re-windowing and
the one resize rule. DICOM reading is in test_dicom.py, the window steps in test_intensity.py; the test files
are made in imaging_builders.py."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from imaging_builders import (
    BAD_INPUTS,
    ID_STRINGS,
    bundled,
    gradient,
    jpeg_bytes,
    make_dicom,
    png_bytes,
)
from PIL import Image

from model.data import imaging
from model.data.imaging import (
    ImageLoadError,
    ImageTooLargeError,
    MissingDecoderError,
    apply_window,
    auto_window,
    load_study,
    load_study_path,
    to_model_input,
)

# ----------------------------------------------------------------------------------------------
# PNG / JPEG


def test_png_8bit_basics():
    data = png_bytes(Image.fromarray(gradient()))
    study = load_study(data, "C:\\fakepath\\chest.png")
    assert study.pixels.shape == (24, 32) and study.pixels.dtype == np.float32
    assert study.pixels.min() == 0.0 and study.pixels.max() == 1.0
    assert study.modality == "CXR" and any("chest X-ray" in w for w in study.warnings)
    assert study.source == "chest.png"
    assert study.sha256 == hashlib.sha256(data).hexdigest()
    assert study.raw is None and study.window is None and study.n_frames == 1
    assert study.meta["Format"] == "PNG"


def test_modality_hint_sets_plain_image_modality():
    study = load_study(png_bytes(Image.fromarray(gradient())), "slice.png", modality_hint="ct")
    assert study.modality == "CT" and not study.warnings
    with pytest.raises(ValueError):
        load_study(png_bytes(Image.fromarray(gradient())), "x.png", modality_hint="MRI")


def test_png_16bit_keeps_depth():
    values = (np.arange(60 * 50).reshape(60, 50) + 1000).astype(np.uint16)  # 3000 distinct 12-bit levels
    data = png_bytes(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    study = load_study(data, "deep.png")
    assert study.pixels.min() == 0.0 and study.pixels.max() == 1.0
    assert len(np.unique(study.pixels)) == 3000  # .convert("L") would clip/quantise to <= 256 levels
    np.testing.assert_allclose(study.pixels, (values - 1000.0) / 2999.0, atol=1e-6)
    assert study.meta["Bit depth"] == "16"


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("L", 128, 128 / 255),
        ("1", 1, 1.0),
        ("RGB", (255, 0, 0), 0.299),
        ("RGB", (0, 0, 255), 0.114),
        ("RGBA", (255, 255, 255, 255), 1.0),
        ("RGBA", (255, 255, 255, 0), 0.0),  # fully transparent -> composited on black
        ("RGBA", (255, 255, 255, 102), 0.4),
        ("LA", (200, 51), (200 / 255) * 0.2),
    ],
)
def test_png_modes_to_grayscale(mode, colour, expected):
    study = load_study(png_bytes(Image.new(mode, (8, 6), colour)), f"{mode}.png")
    assert study.pixels.shape == (6, 8)
    np.testing.assert_allclose(study.pixels, expected, atol=2e-3)


def test_palette_png_with_and_without_transparency():
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putpixel((0, 0), 2)
    study = load_study(png_bytes(img), "palette.png")
    assert study.pixels[1, 1] == pytest.approx(0.299, abs=2e-3)  # red
    assert study.pixels[0, 0] == pytest.approx(0.587, abs=2e-3)  # green
    transparent = load_study(png_bytes(img, transparency=1), "palette_t.png")
    assert transparent.pixels[1, 1] == 0.0 and transparent.pixels[0, 0] == pytest.approx(0.587, abs=2e-3)


@pytest.mark.parametrize(("cmyk", "expected"), [((0, 0, 0, 0), 1.0), ((0, 0, 0, 255), 0.0)])
def test_cmyk_jpeg(cmyk, expected):
    data = jpeg_bytes(Image.new("CMYK", (16, 16), cmyk))
    study = load_study(data, "print.jpg")
    assert study.meta["Colour mode"] == "CMYK"
    np.testing.assert_allclose(study.pixels, expected, atol=0.03)


def test_jpeg_grayscale():
    study = load_study(jpeg_bytes(Image.fromarray(gradient())), "x.jpeg")
    assert study.meta["Format"] == "JPEG" and study.pixels.shape == (24, 32)
    assert study.pixels[:, 0].mean() < 0.05 and study.pixels[:, -1].mean() > 0.95


def test_exif_orientation_applied():
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :20] = 255  # left half white, stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    study = load_study(jpeg_bytes(Image.fromarray(arr), exif=exif.tobytes()), "rotated.jpg")
    assert study.pixels.shape == (40, 20)  # portrait after transpose
    assert study.pixels[:18].mean() > 0.9 and study.pixels[22:].mean() < 0.1  # left went to the top
    assert study.meta["EXIF orientation"].startswith("6")


def test_png_named_dcm_is_read_as_png_and_dicom_named_png_as_dicom():
    as_png = load_study(png_bytes(Image.fromarray(gradient())), "study.dcm")
    assert as_png.meta["Format"] == "PNG" and as_png.source == "study.dcm"
    as_dcm = load_study(make_dicom(identifiers=False), "image.png")
    assert as_dcm.meta["Modality"] == "CT" and as_dcm.raw is not None


# ----------------------------------------------------------------------------------------------
# Bad input: every failure is an ImageLoadError naming the file


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_user_facing_error(case):
    make, error, phrase = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        load_study(make(), f"upload_{case}.bin")
    message = str(info.value)
    assert isinstance(info.value, ImageLoadError)
    assert f"upload_{case}.bin" in message
    assert phrase.lower() in message.lower()
    for secret in ID_STRINGS:  # our DICOMs carry fake identifiers: never echoed
        assert secret not in message


def test_byte_limit(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_BYTES", 1000)
    with pytest.raises(ImageTooLargeError, match="limit"):
        load_study(png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))))


def test_bad_frame_requests():
    with pytest.raises(ImageLoadError, match="single frame"):
        load_study(png_bytes(Image.fromarray(gradient())), "a.png", frame=1)
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_study(make_dicom(identifiers=False), "a.dcm", frame=-1)
    with pytest.raises(ImageLoadError, match="1 frame"):
        load_study(make_dicom(identifiers=False), "a.dcm", frame=1)


def test_missing_decoder_names_the_plugin(monkeypatch):
    data = bundled("693_J2KI.dcm")

    class Unavailable:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(MissingDecoderError, match="pylibjpeg-openjpeg") as info:
        load_study(data, "ct_j2k.dcm")
    assert "JPEG 2000" in str(info.value)


def test_load_study_path(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(png_bytes(Image.fromarray(gradient())))
    assert load_study_path(path).source == "scan.png"
    with pytest.raises(ImageLoadError, match="missing.png"):
        load_study_path(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------------
# Re-windowing and resizing (imaging.apply_window, to_model_input)


def test_apply_window_errors():
    png = load_study(png_bytes(Image.fromarray(gradient())), "p.png")
    with pytest.raises(ImageLoadError, match="no raw values"):
        apply_window(png, "lung")
    ct = load_study(make_dicom(identifiers=False), "c.dcm")
    with pytest.raises(ImageLoadError, match="Unknown window preset"):
        apply_window(ct, "brain-ish")
    with pytest.raises(ImageLoadError, match="positive"):
        apply_window(ct, (0.0, 0.0))
    auto = apply_window(ct, "auto")
    assert auto.window == pytest.approx(auto_window(ct.raw))
    assert apply_window(ct, "lung").meta["Window (C/W)"] == "-600 / 1500"


def test_to_model_input():
    flat = to_model_input(np.full((30, 50), 0.25, np.float32), 16)
    assert flat.shape == (16, 16) and flat.dtype == np.float32
    np.testing.assert_allclose(flat, 0.25, atol=1e-6)
    ramp = to_model_input(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1)), 32)
    assert np.all(np.diff(ramp[0]) > 0) and 0.0 <= ramp.min() and ramp.max() <= 1.0
    same = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    np.testing.assert_array_equal(to_model_input(same, 8), same)
    with pytest.raises(ValueError):
        to_model_input(np.zeros((4, 4, 3)), 8)


def test_load_study_takes_the_callers_hash_and_sniff(monkeypatch):
    """The app hashes and sniffs an upload once; ``load_study`` then does neither again (issue 9)."""
    data = png_bytes(Image.fromarray(gradient()))
    want = load_study(data, "p.png")
    sha = hashlib.sha256(data).hexdigest()

    def refuse(*_a, **_k):
        raise AssertionError("hashed or sniffed again")

    monkeypatch.setattr(imaging, "sniff", refuse)
    monkeypatch.setattr(imaging.hashlib, "sha256", refuse)
    got = load_study(data, "p.png", sha256=sha, kind="png")
    assert got.sha256 == want.sha256 == sha and np.array_equal(got.pixels, want.pixels)
    assert got.image_stats == want.image_stats
