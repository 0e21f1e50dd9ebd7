"""model.data.dicom: damaged files are called damaged (before the modality rule), messages carry no
exception class names, and pydicom's log records -- from child loggers too -- never leave a read.

Builders (``make_dicom``, ``bundled``, the fake identifiers) are shared with test_imaging.py.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
import pytest
from test_imaging import BAD_INPUTS, ID_STRINGS, bundled, make_dicom

from model.data import dicom, imaging
from model.data.imaging import CorruptImageError, ImageLoadError, NoPixelDataError, load_study

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
