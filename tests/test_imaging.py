"""model.data.imaging + model.data.dicom: every loader path, the limits, the errors, de-identification.

Real files come from pydicom's bundled test data (offline: ``download=False``); everything else is made
in memory here (tiny images, so the module runs in a few seconds).
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
import zlib

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from model.data import imaging
from model.data.imaging import (
    WINDOW_PRESETS,
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDecoderError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedModalityError,
    apply_window,
    auto_window,
    load_study,
    load_study_path,
    to_model_input,
    window_pixels,
)

# ----------------------------------------------------------------------------------------------
# Builders


def bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    with open(path, "rb") as fh:
        return fh.read()


#: Fake identifiers written into the DICOM headers we make; none may come out of the loader.
FAKE_IDS = {
    "PatientName": "Zzfakeperson^Quentina",
    "PatientID": "PIDX998877",
    "PatientBirthDate": "19010203",
    "OtherPatientIDs": "OTHX123456",
    "PatientAddress": "99 Secretive Road",
    "AccessionNumber": "ACCX445566",
    "InstitutionName": "Fakeville General Infirmary",
    "InstitutionAddress": "12 Nowhere Lane",
    "ReferringPhysicianName": "Drfakeref^Nobody",
    "PerformingPhysicianName": "Drfakeperf^Someone",
    "OperatorsName": "Opfake^Person",
    "StudyDate": "20010203",
    "SeriesDate": "20010204",
    "StudyID": "STIDX77",
    "StudyDescription": "Fakedescription of Quentina",
}
ID_STRINGS = sorted({part for v in FAKE_IDS.values() for part in v.split("^")})


def make_dicom(
    pixels: np.ndarray | None = None,
    *,
    modality: str = "CT",
    photometric: str = "MONOCHROME2",
    rows: int | None = None,
    cols: int | None = None,
    frames: int | None = None,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    identifiers: bool = True,
    with_pixels: bool = True,
    pixel_bytes: bytes | None = None,
    tsyntax=ExplicitVRLittleEndian,
    preamble: bool = True,
    extra: dict | None = None,
) -> bytes:
    """A small uint16 DICOM; pixels (H, W) or (F, H, W)."""
    if pixels is None:
        pixels = (np.arange(8 * 8, dtype=np.uint16).reshape(8, 8) * 50) + 24
    pixels = np.asarray(pixels, dtype=np.uint16)
    n_frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows = rows or pixels.shape[-2]
    ds.Columns = cols or pixels.shape[-1]
    if (frames or n_frames) > 1:
        ds.NumberOfFrames = frames or n_frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [0.5, 0.7]
    ds.ManufacturerModelName = "TestScanner 3000"
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if identifiers:
        for key, value in FAKE_IDS.items():
            setattr(ds, key, value)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if with_pixels:
        ds.PixelData = pixel_bytes if pixel_bytes is not None else pixels.tobytes()
    buf = io.BytesIO()
    if preamble:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = tsyntax
        ds.save_as(buf, enforce_file_format=True)
    else:  # bare dataset: no 128-byte preamble, no "DICM", no file meta
        ds.save_as(buf, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming width x height, with almost no data (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        imaging.PNG_MAGIC
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim width x height."""
    data = bytearray(jpeg_bytes(Image.new("L", (8, 8), 90)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bad_rescale_group() -> Dataset:
    """An enhanced-DICOM functional group whose rescale slope is not a number."""
    item = Dataset()
    item.add_new(0x00281053, "LO", "not-a-number")  # RescaleSlope written with a text VR
    group = Dataset()
    group.PixelValueTransformationSequence = pydicom.Sequence([item])
    return group


def gradient(h: int = 24, w: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w), (h, 1)).astype(np.uint8)


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


def _truncate(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


BAD_INPUTS = {
    "zero_bytes": (lambda: b"", CorruptImageError, "empty"),
    "random_bytes": (
        lambda: np.random.default_rng(0).bytes(4096),
        UnsupportedFormatError,
        "not a PNG, JPEG or DICOM",
    ),
    "gif": (lambda: b"GIF89a" + b"\0" * 100, UnsupportedFormatError, "GIF"),
    "pdf": (lambda: b"%PDF-1.7\n" + b"x" * 100, UnsupportedFormatError, "PDF"),
    "text": (lambda: b"<html>hello</html>" * 20, UnsupportedFormatError, "not a PNG"),
    "bare_dicom_lookalike": (
        lambda: b"\x08\x00\x05\x00CS\x0a\x00" + np.random.default_rng(1).bytes(500),
        UnsupportedFormatError,
        "not a PNG, JPEG or DICOM",
    ),
    "truncated_png": (
        lambda: _truncate(png_bytes(Image.fromarray(gradient(64, 64))), 0.5),
        CorruptImageError,
        "PNG",
    ),
    "truncated_jpeg": (
        lambda: _truncate(jpeg_bytes(Image.fromarray(gradient(64, 64))), 0.6),
        CorruptImageError,
        "truncated JPEG",
    ),
    "png_bad_crc": (
        lambda: (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:])(png_bytes(Image.fromarray(gradient()))),
        CorruptImageError,
        "PNG",
    ),
    "truncated_dicom_pixels": (
        lambda: _truncate(make_dicom(np.zeros((32, 32), np.uint16)), 0.7),
        CorruptImageError,
        "truncated DICOM",
    ),
    "truncated_dicom_header": (lambda: _truncate(make_dicom(), 0.4), CorruptImageError, "truncated"),
    "dicom_no_pixel_data": (lambda: make_dicom(with_pixels=False), NoPixelDataError, "without pixel data"),
    "dicom_report_no_image": (lambda: bundled("reportsi.dcm"), NoPixelDataError, "without an image"),
    "dicom_mr_unsupported": (lambda: bundled("MR_small.dcm"), UnsupportedModalityError, "MR"),
    "png_bomb_40mp": (lambda: png_claiming(7000, 7000), ImageTooLargeError, "MP"),
    "png_bomb_pillow_warning": (lambda: png_claiming(10_000, 10_000), ImageTooLargeError, "MP"),
    "png_bomb_pillow_error": (lambda: png_claiming(100_000, 100_000), ImageTooLargeError, "bomb"),
    "jpeg_bomb": (lambda: jpeg_claiming(60_000, 60_000), ImageTooLargeError, "bomb"),
    "dicom_bomb_rows_cols": (
        lambda: make_dicom(rows=60_000, cols=60_000, pixel_bytes=b"\0" * 128),
        ImageTooLargeError,
        "60000 x 60000",
    ),
    "dicom_bomb_frames": (
        lambda: make_dicom(rows=4000, cols=4000, frames=100, pixel_bytes=b"\0" * 128),
        ImageTooLargeError,
        "GiB",
    ),
    "dicom_bad_rescale": (
        lambda: make_dicom(
            extra={"SharedFunctionalGroupsSequence": pydicom.Sequence([_bad_rescale_group()])}, rescale=None
        ),
        CorruptImageError,
        "rescale",
    ),
    "dicom_mpeg2_no_decoder": (
        lambda: make_dicom(tsyntax=MPEG2MPML, pixel_bytes=encapsulate([b"\0" * 64])),
        MissingDecoderError,
        "MPEG2",
    ),
}


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
# DICOM: real bundled files


def test_ct_small_modality_lut_and_default_window():
    data = bundled("CT_small.dcm")
    study = load_study(data, "CT_small.dcm")
    stored = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float32)
    np.testing.assert_allclose(study.raw, stored - 1024.0)  # slope 1, intercept -1024 -> HU
    assert study.modality == "CT" and study.window == WINDOW_PRESETS[imaging.DEFAULT_CT_WINDOW]
    assert study.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert study.pixels.dtype == np.float32 and 0.0 <= study.pixels.min() <= study.pixels.max() <= 1.0
    assert study.meta["Modality"] == "CT" and study.meta["Rows"] == "128"
    assert "CompressedSamples" not in repr(study)  # CT_small's patient name


@pytest.mark.parametrize("preset", ["bone", "mediastinum", (40.0, 400.0)])
def test_window_argument_and_apply_window_agree(preset):
    data = bundled("CT_small.dcm")
    loaded = load_study(data, "ct.dcm", window=preset)
    rewindowed = apply_window(load_study(data, "ct.dcm"), preset)
    expected = WINDOW_PRESETS[preset] if isinstance(preset, str) else preset
    assert loaded.window == rewindowed.window == expected
    np.testing.assert_array_equal(loaded.pixels, rewindowed.pixels)


def test_file_window_is_used():
    study = load_study(bundled("693_J2KI.dcm"), "j2k.dcm")  # JPEG 2000 CT with W/C 40/100 in the file
    assert study.window == (40.0, 100.0) and study.meta["Transfer syntax"].startswith("JPEG 2000")
    assert study.pixels.shape == (512, 512)


@pytest.mark.parametrize(
    "variant",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_lossless_transfer_syntaxes_match_uncompressed(variant):
    ref = load_study(bundled("MR_small.dcm"), "mr.dcm", modality_hint="CT")
    got = load_study(bundled(variant), variant, modality_hint="CT")
    np.testing.assert_array_equal(got.raw, ref.raw)
    assert got.window == ref.window == (600.0, 1600.0)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("JPGExtended.dcm", "CXR"), ("SC_rgb_jpeg.dcm", "CXR"), ("examples_palette.dcm", "CXR")],
)
def test_other_modalities_best_effort_with_hint(name, hint):
    study = load_study(bundled(name), name, modality_hint=hint)
    assert study.modality == hint and study.pixels.ndim == 2
    assert any("best effort" in w for w in study.warnings)
    assert 0.0 <= study.pixels.min() < study.pixels.max() <= 1.0


def test_real_multiframe_file():
    first = load_study(bundled("rtdose.dcm"), "dose.dcm", modality_hint="CT", frame=0)
    last = load_study(bundled("rtdose.dcm"), "dose.dcm", modality_hint="CT", frame=14)
    assert first.n_frames == last.n_frames == 15 and first.meta["Frames"] == "15"
    assert not np.array_equal(first.raw, last.raw)


# ----------------------------------------------------------------------------------------------
# DICOM: files made here


@pytest.mark.parametrize(("code", "expected"), [("CR", "CXR"), ("DX", "CXR"), ("DR", "CXR"), ("CT", "CT")])
def test_modality_mapping(code, expected):
    study = load_study(make_dicom(modality=code, identifiers=False), "m.dcm")
    assert study.modality == expected and study.meta["Modality"] == code


def test_hint_never_overrides_a_supported_file_modality():
    study = load_study(make_dicom(modality="DX", identifiers=False), "m.dcm", modality_hint="CT")
    assert study.modality == "CXR" and any("ignored" in w for w in study.warnings)


def test_non_ct_without_window_uses_percentiles():
    study = load_study(make_dicom(modality="DX", rescale=None, identifiers=False), "dx.dcm")
    assert study.window == pytest.approx(auto_window(study.raw))
    assert study.pixel_spacing == (0.5, 0.7)


def test_monochrome1_is_inverted():
    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 60) + 24
    kw = dict(pixels=pixels, window=(-100.0, 2000.0), identifiers=False)
    mono2 = load_study(make_dicom(photometric="MONOCHROME2", **kw), "m2.dcm")
    mono1 = load_study(make_dicom(photometric="MONOCHROME1", **kw), "m1.dcm")
    np.testing.assert_array_equal(mono1.raw, mono2.raw)
    np.testing.assert_allclose(mono1.pixels, 1.0 - mono2.pixels, atol=1e-6)
    assert mono1.pixels[0, 0] > mono1.pixels[-1, -1]  # low values are bright in MONOCHROME1
    np.testing.assert_allclose(apply_window(mono1, "bone").pixels, 1.0 - apply_window(mono2, "bone").pixels)


def test_multiframe_frame_choice():
    frames = np.stack([np.full((6, 5), 1024 + 100 * i, np.uint16) for i in range(3)])
    data = make_dicom(frames, identifiers=False)
    for i in range(3):
        study = load_study(data, "mf.dcm", frame=i)
        assert study.n_frames == 3 and study.pixels.shape == (6, 5)
        np.testing.assert_allclose(study.raw, 100.0 * i)  # HU after intercept -1024
    with pytest.raises(ImageLoadError, match="3 frame"):
        load_study(data, "mf.dcm", frame=3)


def test_dicom_without_preamble_parses_when_it_clearly_is_one():
    data = make_dicom(identifiers=False, preamble=False)
    assert data[128:132] != b"DICM"
    study = load_study(data, "bare")
    assert study.modality == "CT" and study.pixels.shape == (8, 8)


def test_voi_lut_sequence_table():
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = (np.arange(4096, dtype=np.uint16) * 16).tobytes()
    seq = pydicom.Sequence([lut])
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60
    study = load_study(
        make_dicom(pixels, rescale=None, extra={"VOILUTSequence": seq}, identifiers=False), "v"
    )
    assert study.window is None
    np.testing.assert_allclose(study.pixels, pixels * 16 / 65535.0, atol=1e-5)  # LUT output is 16-bit


def test_no_identifiers_leave_the_loader(caplog):
    with warnings.catch_warnings():  # building the file: pydicom itself warns with the bad value
        warnings.simplefilter("ignore")
        data = make_dicom(extra={"PatientAge": "Zzfakeperson"})  # invalid AS value: pydicom warns on read
        failing = [
            make_dicom(modality="MR"),
            make_dicom(with_pixels=False),
            make_dicom(rows=60_000, cols=60_000, pixel_bytes=b"\0" * 8),
            _truncate(make_dicom(), 0.4),
            _truncate(make_dicom(np.zeros((32, 32), np.uint16)), 0.8),
        ]
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = load_study(data, "identified.dcm")
        apply_window(study, "lung")
        texts = [repr(study), str(study.meta), study.source, *study.warnings]
        for bad in failing:
            with pytest.raises(ImageLoadError) as info:
                load_study(bad, "identified.dcm")
            texts.append(str(info.value))
    texts += [caplog.text, *(str(w.message) for w in caught)]
    for secret in ID_STRINGS:
        for text in texts:
            assert secret not in text
    assert set(study.meta) <= {*imaging_meta_labels(), "Window (C/W)", "Pixel spacing (mm)"}
    assert study.meta["Scanner model"] == "TestScanner 3000"


def imaging_meta_labels() -> set[str]:
    from model.data.dicom import META_WHITELIST

    return {*META_WHITELIST.values(), "Frames", "Transfer syntax", "Rescale (slope, intercept)"}


# ----------------------------------------------------------------------------------------------
# Windowing and resizing


def test_window_pixels_golden_values():
    raw = np.asarray([-1000.0, 49.5, 50.0, 224.0, 1000.0], np.float32)
    out = window_pixels(raw, 50.0, 350.0)
    np.testing.assert_allclose(out, [0.0, 0.5, 0.5 + 0.5 / 349.0, 0.5 + 174.5 / 349.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(window_pixels(raw, 50.0, 350.0, invert=True), 1.0 - out)


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
