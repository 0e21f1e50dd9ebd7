"""model.data.dicom: damaged files are called damaged (before the modality rule), messages carry no
exception class names, and pydicom's log records -- from child loggers too -- never leave a read.

Also every DICOM path through ``load_study``: pydicom's bundled files and files made here (LUTs, windows,
transfer syntaxes, frames, no identifiers out). Builders live in imaging_builders.py.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
import pydicom
import pytest
from imaging_builders import BAD_INPUTS, ID_STRINGS, bundled, make_dicom, truncate
from pydicom.dataset import Dataset

from model.data import dicom, imaging
from model.data.imaging import (
    WINDOW_PRESETS,
    CorruptImageError,
    ImageLoadError,
    NoPixelDataError,
    apply_window,
    auto_window,
    load_study,
)

# A CamelCase word ending like an exception class (OSError, UFuncTypeError, InvalidDicomError...).
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")

# ----------------------------------------------------------------------------------------------
# Damaged files: integrity is checked before the modality rule


@pytest.mark.parametrize("shift", [1, 2, 5, -1, -3])
def test_shifted_dicm_marker_is_a_damaged_dicom(shift):
    data = make_dicom(identifiers=False)
    damaged = (b"\x00" * shift + data) if shift > 0 else data[-shift:]
    assert imaging.sniff(damaged) == "damaged_dicom"
    with pytest.raises(CorruptImageError) as info:
        load_study(damaged, "stray.dcm")
    message = str(info.value)
    assert "'stray.dcm'" in message and "damaged DICOM" in message
    assert f"byte {128 + shift}" in message
    assert ("extra byte" if shift > 0 else "missing from") in message
    assert "again" in message  # says what to do
    assert "not a PNG" not in message


def test_dicm_far_from_128_is_not_called_dicom():
    far = b"\x00" * 400 + b"DICM" + b"\x00" * 100
    assert imaging.sniff(far) == "unknown"


@pytest.mark.parametrize("keep", [0.7, 0.9, 0.97])
def test_truncated_mr_is_damaged_not_unsupported(keep):
    data = bundled("MR_small.dcm")
    with pytest.raises(CorruptImageError, match="truncated") as info:
        load_study(data[: int(len(data) * keep)], "cut_mr.dcm")
    assert "MR" not in str(info.value)  # the modality rule never spoke


def test_truncated_compressed_pixel_data_is_damaged():
    data = bundled("MR_small_RLE.dcm")  # encapsulated: pydicom drops a cut Pixel Data element
    with pytest.raises(CorruptImageError, match="truncated DICOM"):
        load_study(data[: int(len(data) * 0.8)], "cut_rle.dcm")


def test_image_without_pixel_data_element_is_still_no_pixel_data():
    with pytest.raises(NoPixelDataError, match="without pixel data"):
        load_study(make_dicom(with_pixels=False, identifiers=False), "header_only.dcm")


def test_intact_unsupported_modality_still_says_its_modality():
    with pytest.raises(ImageLoadError, match="MR study"):
        load_study(bundled("MR_small.dcm"), "mr.dcm")


# ----------------------------------------------------------------------------------------------
# No exception class names in user text


def _damaged_cases() -> dict[str, bytes]:
    mr = bundled("MR_small.dcm")
    return {
        "stray_byte": b"\x00" + mr,
        "cut_mr": mr[: len(mr) // 2],
        "cut_header": mr[:300],
        "garbage_after_preamble": mr[:132] + np.random.default_rng(3).bytes(600),
        "bad_pixels": make_dicom(identifiers=False, pixel_bytes=b"\x01" * 7),
    }


def test_no_exception_class_names_in_loader_messages():
    messages = []
    for case, (make, _error, _phrase) in BAD_INPUTS.items():
        with pytest.raises(ImageLoadError) as info:
            load_study(make(), f"{case}.bin")
        messages.append(str(info.value))
    for case, data in _damaged_cases().items():
        with pytest.raises(ImageLoadError) as info:
            load_study(data, f"{case}.dcm")
        messages.append(str(info.value))
    for message in messages:
        assert not CLASS_NAME.search(message), message
        assert "Traceback" not in message


def test_no_class_name_pattern_in_user_facing_source():
    """The habit the user test caught: ``type(err).__name__`` / ``{err!r}`` in text shown to people."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [  # the dashboard, the loader (messages shown on pages and by the CLI), the CLI commands
        *root.glob("components/**/*.py"),
        root / "app.py",
        *root.glob("model/data/*.py"),
        *root.glob("model/commands/*.py"),
        root / "model/cli.py",
    ]
    habit = re.compile(r"type\((err|e|exc|error)\)\.__name__|\{(err|e|exc|error)!r\}")
    offenders = []
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if habit.search(line) and "log." not in line:  # a log line may name the class (server side)
                offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ----------------------------------------------------------------------------------------------
# pydicom's log records (they may quote element values) never leave a read, from any child logger


CHILD_LOGGERS = ["pydicom", "pydicom.pixels.utils", "pydicom.pixels.decoders.base", "pydicom.new.child"]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def pydicom_handler():
    """A handler directly on the "pydicom" logger, as ``pydicom.config.debug()`` adds one."""
    handler = _Collect()
    logger = logging.getLogger("pydicom")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_log_records_from_child_loggers_are_dropped_while_reading(caplog, pydicom_handler):
    caplog.set_level(logging.DEBUG)
    secret = ID_STRINGS[0]
    with dicom._quiet_pydicom():
        for name in CHILD_LOGGERS:
            logging.getLogger(name).warning("value %s", secret)
    assert secret not in caplog.text
    assert not pydicom_handler.lines
    # outside a read nothing is filtered: the filter is not a blanket mute
    for name in CHILD_LOGGERS:
        logging.getLogger(name).warning("after %s", name)
    assert all(f"after {name}" in caplog.text for name in CHILD_LOGGERS)
    assert len(pydicom_handler.lines) == len(CHILD_LOGGERS)


def test_other_loggers_are_not_filtered_while_reading(caplog):
    caplog.set_level(logging.DEBUG)
    with dicom._quiet_pydicom():
        logging.getLogger("model.data.imaging").warning("our own line")
        logging.getLogger("pydicomish").warning("a look-alike name")
    assert "our own line" in caplog.text and "a look-alike name" in caplog.text


def test_reading_a_file_with_identifiers_logs_none_of_them(caplog, pydicom_handler):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pydicom").setLevel(logging.DEBUG)  # pydicom.config.debug(): every element logged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = make_dicom(extra={"PatientAge": "Zzfakeperson"})  # pydicom warns (and logs) while writing
    caplog.clear()
    pydicom_handler.lines.clear()
    study = load_study(data, "identified.dcm")
    for bad in (data[: len(data) // 2], b"\x00" + data):
        with pytest.raises(ImageLoadError):
            load_study(bad, "identified.dcm")
    logged = caplog.text + "\n".join(pydicom_handler.lines)
    for secret in ID_STRINGS:
        assert secret not in logged
        assert secret not in repr(study)


def test_intact_ybr_full_422_is_not_called_truncated():
    """4:2:2 pixel data is 2/3 of rows x cols x 3 samples: the length check must not call it damaged."""
    data = bundled("SC_ybr_full_422_uncompressed.dcm")
    with pytest.raises(ImageLoadError, match="study; only chest X-ray"):  # intact: the modality rule speaks
        load_study(data, "ybr.dcm")
    study = load_study(data, "ybr.dcm", modality_hint="CXR")
    assert study.pixels.ndim == 2 and study.pixels.size > 0


def test_pydicom_truncated_test_file_is_damaged():
    with pytest.raises(CorruptImageError, match="truncated"):
        load_study(bundled("MR_truncated.dcm"), "MR_truncated.dcm")


def test_window_choice_order_requested_then_file_then_ct_preset_then_percentiles():
    from model.data.dicom import _choose_window
    from model.data.intensity import WINDOW_PRESETS, auto_window

    raw = np.linspace(-1000, 1000, 100, dtype=np.float32).reshape(10, 10)
    assert _choose_window(raw, "bone", (10.0, 20.0), True) == (WINDOW_PRESETS["bone"], ())
    assert _choose_window(raw, None, (10.0, 20.0), True) == ((10.0, 20.0), ())
    win, notes = _choose_window(raw, None, None, True)
    assert win == WINDOW_PRESETS["lung"] and len(notes) == 1 and "lung window" in notes[0]
    assert _choose_window(raw, None, None, False) == (auto_window(raw), ())


def test_dicom_reader_does_not_import_the_loader_back():
    """No circle: dicom.py takes errors, limits and intensity steps from their own modules, not imaging.py."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(dicom))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "model.data.imaging" not in imported
    assert {"model.data.errors", "model.data.intensity", "model.data.limits"} <= imported


def test_png_holding_dicm_near_128_is_still_a_png():
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("c", "x" * 83 + "DICM" + "y" * 60)  # a text chunk puts "DICM" near offset 128
    buf = io.BytesIO()
    Image.new("L", (8, 8), 100).save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    assert abs(data.find(b"DICM") - 128) <= imaging.DICM_SLACK
    assert imaging.sniff(data) == "png"
    assert load_study(data, "text.png").pixels.shape == (8, 8)


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
            truncate(make_dicom(), 0.4),
            truncate(make_dicom(np.zeros((32, 32), np.uint16)), 0.8),
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
