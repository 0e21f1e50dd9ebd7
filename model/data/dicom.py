"""DICOM bytes -> Study: header guard, one-frame decode, modality LUT, window, whitelist metadata.

Called by :func:`model.data.imaging.load_study` once the bytes sniff as DICOM. Order matters:

1. read the header only (``stop_before_pixels=True``) and refuse files without an image or whose
   Rows x Columns x frames x samples x bytes exceed the budget (pydicom has no decompression-bomb
   guard of its own);
2. read the full file and check its integrity (the pixel data is there, and long enough when
   uncompressed) *before* the modality rule, so that a truncated file is called damaged, not "MR";
   then the modality rule, a decoder plugin for compressed transfer syntaxes, and decode only the
   chosen frame;
3. modality LUT -> ``raw`` (Hounsfield units on CT); window from the caller, the file's VOI
   (centre/width or LUT), a CT preset or percentiles; MONOCHROME1 inverted after windowing.

Patient identifiers never leave this module: ``meta`` is built from a whitelist, error messages are
written here and never quote pydicom's (which may contain element values) nor name an exception class,
pydicom's warnings are silenced and its log records, from the "pydicom" logger *and its children*
("pydicom.pixels.decoders.base", ...), are dropped while a file is being read.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
import pydicom.pixels as dicom_pixels
from pydicom import uid as dicom_uid

from model.data.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDecoderError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedModalityError,
    quoted,
)
from model.data.intensity import DEFAULT_CT_WINDOW, WINDOW_PRESETS, auto_window, resolve_window, window_pixels
from model.data.limits import MAX_DECODED_BYTES, MAX_PIXELS, WARNINGS_LOCK
from model.types import Study

#: DICOM Modality -> our modality. "DR" is not a DICOM term but some exporters write it.
MODALITY_MAP: dict[str, str] = {"CR": "CXR", "DX": "CXR", "DR": "CXR", "CT": "CT"}

#: The only header fields that reach Study.meta: keyword -> display label. Labels avoid words that the
#: dashboard's defence-in-depth filter drops ("name", "date", "uid", ...).
META_WHITELIST: dict[str, str] = {
    "Modality": "Modality",
    "ViewPosition": "View position",
    "BodyPartExamined": "Body part",
    "Rows": "Rows",
    "Columns": "Columns",
    "PhotometricInterpretation": "Photometric interpretation",
    "BitsStored": "Bits stored",
    "Manufacturer": "Manufacturer",
    "ManufacturerModelName": "Scanner model",
    "SliceThickness": "Slice thickness (mm)",
    "KVP": "kVp",
    "ConvolutionKernel": "Reconstruction kernel",
}

#: Transfer syntax -> what to pip install when no plugin can decode it.
PLUGIN_HINTS: dict[str, str] = {
    **{
        u: "pylibjpeg and pylibjpeg-openjpeg"
        for u in (
            dicom_uid.JPEG2000,
            dicom_uid.JPEG2000Lossless,
            dicom_uid.HTJ2K,
            dicom_uid.HTJ2KLossless,
            dicom_uid.HTJ2KLosslessRPCL,
        )
    },
    **{
        u: "pylibjpeg and pylibjpeg-libjpeg"
        for u in (
            dicom_uid.JPEGBaseline8Bit,
            dicom_uid.JPEGExtended12Bit,
            dicom_uid.JPEGLossless,
            dicom_uid.JPEGLosslessSV1,
            dicom_uid.JPEGLSLossless,
            dicom_uid.JPEGLSNearLossless,
        )
    },
    dicom_uid.RLELossless: "pylibjpeg and pylibjpeg-rle",
}

_AGAIN = "Export or copy the file again from the viewer or PACS and upload the new copy."
_EXPORT = "Export the image as PNG, JPEG or DICOM and upload that."
_SAFE_VALUE = re.compile(r"[^\w .,:;/()+\-^%]")  # display values: printable, no control characters
_EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
    b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
    b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip

# ----------------------------------------------------------------------------------------------
# Keeping pydicom quiet: its warnings and log lines may quote element values (names, IDs).

_reading = contextvars.ContextVar("meddistill_dicom_reading", default=False)


class _DropPydicomWhileReading(logging.Filter):
    """Drops records of the "pydicom" logger tree logged by a thread that is reading a file here.

    A filter on a *logger* sees only records logged on that very logger, not those propagated from its
    children ("pydicom.pixels.utils" ...); a filter on a *handler* sees every record the handler gets.
    So this one sits on the handlers: the "pydicom" logger's own (pydicom.config.debug() adds one), every
    handler above it up to the root (the app's, pytest's caplog...) and Python's last-resort handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from_pydicom = record.name == "pydicom" or record.name.startswith("pydicom.")
        return not (from_pydicom and _reading.get())


_PYDICOM_FILTER = _DropPydicomWhileReading()


def _guard_pydicom_handlers() -> None:
    """Attach the filter to every handler a pydicom record can reach (idempotent; handlers come and go)."""
    known = list(logging.root.manager.loggerDict.items())  # values may be PlaceHolders: skip those
    loggers = [lg for n, lg in known if n.startswith("pydicom.") and isinstance(lg, logging.Logger)]
    node: logging.Logger | None = logging.getLogger("pydicom")
    while node is not None:  # "pydicom" and its ancestors, as propagation walks them
        loggers.append(node)
        node = node.parent if node.propagate else None
    handlers = [h for lg in loggers for h in lg.handlers]
    for handler in [*handlers, logging.lastResort]:
        if handler is not None and _PYDICOM_FILTER not in handler.filters:
            handler.addFilter(_PYDICOM_FILTER)


logging.getLogger("pydicom").addFilter(_PYDICOM_FILTER)  # records logged on "pydicom" itself, handler or not


@contextlib.contextmanager
def _quiet_pydicom():
    """Silence pydicom's warnings and logs while one file is read (serialised: warnings are global)."""
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _guard_pydicom_handlers()
        token = _reading.set(True)
        try:
            yield
        finally:
            _reading.reset(token)


# ----------------------------------------------------------------------------------------------
# Sniffing a DICOM file without its 128-byte preamble


def looks_like_bare_dicom(data: bytes) -> bool:
    """True when the bytes start with a little-endian group 0002/0008 element that looks well formed.

    Only then is ``dcmread(force=True)`` tried, and the result must still hold an image.
    """
    if len(data) < 12:
        return False
    group, _elem = struct.unpack("<HH", data[:4])
    if group not in (0x0002, 0x0008):
        return False
    if data[4:6] in _EXPLICIT_VRS:
        return True
    (length,) = struct.unpack("<I", data[4:8])  # implicit VR: a 4-byte length that fits the file
    return length % 2 == 0 and 0 < length < len(data) - 8


# ----------------------------------------------------------------------------------------------
# Reading


def read_dicom(
    data: bytes,
    name: str,
    *,
    modality_hint: str | None,
    frame: int,
    window: str | tuple[float, float] | None,
) -> Study:
    """DICOM bytes -> Study (see module docstring for the order of checks)."""
    notes: list[str] = []
    with _quiet_pydicom():
        header = _read(data, name, pixels=False)
        rows, cols, n_frames, samples, bits = _geometry(header, name)
        _check_budget(name, rows, cols, n_frames, samples, bits)
        ds = _read(data, name, pixels=True)
        # Integrity before the modality rule: a damaged file is called damaged, whatever it shows.
        tsyntax = ds.file_meta.get("TransferSyntaxUID")
        _check_pixel_data(ds, data, name)
        _check_pixel_length(ds, name, tsyntax, rows, cols, n_frames, samples, bits)
        modality = _map_modality(ds, name, modality_hint, notes)
        if frame >= n_frames:
            raise ImageLoadError(
                f"{quoted(name)} has {n_frames} frame(s); frame {frame} does not exist (frames count from 0)."
            )
        _check_decoder(tsyntax, name)
        arr = _decode_frame(ds, name, frame)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        hounsfield = str(ds.get("Modality", "")).strip().upper() == "CT"  # CT presets need real HU
        try:
            values = _intensities(ds, arr, photometric, frame, hounsfield, window)
            meta = _whitelisted_meta(ds, n_frames, tsyntax)
            spacing = _pixel_spacing(ds)
        except ImageLoadError:
            raise
        except Exception:  # odd LUTs, non-numeric rescale values...: never a raw traceback
            raise CorruptImageError(
                f"{quoted(name)} has pixel-value settings (rescale, LUT or palette) that could not be "
                "applied: its DICOM header is damaged or non-standard. Export it again (uncompressed "
                "DICOM or PNG) and upload the new copy."
            ) from None
    raw, pixels, win = values.raw, values.pixels, values.window
    notes.extend(values.notes)
    if win is not None:
        meta["Window (C/W)"] = f"{win[0]:g} / {win[1]:g}"
    if spacing:
        meta["Pixel spacing (mm)"] = f"{spacing[0]:g} x {spacing[1]:g}"
    return Study(
        pixels=pixels,
        modality=modality,
        pixel_spacing=spacing,
        meta=meta,
        raw=raw,
        window=win,
        n_frames=n_frames,
        warnings=tuple(notes),
    )


def _read(data: bytes, name: str, *, pixels: bool) -> pydicom.Dataset:
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        # force=True only for preamble-less files that passed looks_like_bare_dicom().
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels, force=not preamble)
        if not preamble:
            _add_bare_transfer_syntax(ds)
            # "Clearly parses": an image-bearing SOP instance, not noise that happened to start like one.
            if not ("SOPClassUID" in ds or "Modality" in ds) or "Rows" not in ds or "Columns" not in ds:
                raise UnsupportedFormatError(f"{quoted(name)} is not a PNG, JPEG or DICOM file. {_EXPORT}")
        ds.get("Rows")  # touch: fail here, not later, on a damaged header
    except ImageLoadError:
        raise
    except Exception:  # pydicom raises many types; none of their text is shown (may quote values)
        if not preamble:
            raise UnsupportedFormatError(
                f"{quoted(name)} is not a PNG, JPEG or DICOM file (it does not parse as DICOM). {_EXPORT}"
            ) from None
        raise CorruptImageError(
            f"{quoted(name)} is a damaged or truncated DICOM file: its header could not be read. {_AGAIN}"
        ) from None
    return ds


def _add_bare_transfer_syntax(ds: pydicom.Dataset) -> None:
    """Preamble-less files have no file meta: record the (uncompressed) encoding they were read with."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        ts = dicom_uid.ImplicitVRLittleEndian
    else:
        ts = dicom_uid.ExplicitVRLittleEndian if little else dicom_uid.ExplicitVRBigEndian
    ds.file_meta.TransferSyntaxUID = ts


def _int_field(ds: pydicom.Dataset, keyword: str, default: int | None) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _geometry(ds: pydicom.Dataset, name: str) -> tuple[int, int, int, int, int]:
    rows, cols = _int_field(ds, "Rows", None), _int_field(ds, "Columns", None)
    if not rows or not cols:
        if _is_image_sop(ds):  # pydicom stops quietly at EOF: an image SOP class without a size was cut
            raise CorruptImageError(
                f"{quoted(name)} is a truncated or damaged DICOM image: its header ends before the image "
                f"size. {_AGAIN}"
            )
        what = str(ds.get("Modality", "")).strip()
        kind = f" (modality {what})" if _is_code(what) else ""
        raise NoPixelDataError(
            f"{quoted(name)} is a DICOM file without an image{kind} (a report, plan or header only). "
            "Upload the image series instead."
        )
    n_frames = _int_field(ds, "NumberOfFrames", 1)
    samples = _int_field(ds, "SamplesPerPixel", 1)
    bits = _int_field(ds, "BitsAllocated", 16)
    for value, label in ((n_frames, "frame count"), (samples, "samples per pixel"), (bits, "bits allocated")):
        if value is None or value <= 0:
            raise CorruptImageError(
                f"{quoted(name)} has an invalid {label} in its DICOM header: the file is damaged. {_AGAIN}"
            )
    return rows, cols, n_frames, samples, bits


def _is_image_sop(ds: pydicom.Dataset) -> bool:
    """True for SOP classes that always carry an image ("CT Image Storage", "Digital X-Ray Image ...")."""
    sop = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    try:
        return sop is not None and "Image Storage" in dicom_uid.UID(str(sop)).name
    except Exception:
        return False


def _check_budget(name: str, rows: int, cols: int, n_frames: int, samples: int, bits: int) -> None:
    if rows < 0 or cols < 0 or rows * cols > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{quoted(name)} declares {rows} x {cols} pixels per frame; the limit is "
            f"{MAX_PIXELS / 1e6:.0f} MP. Export a downsized copy and upload that."
        )
    decoded = rows * cols * n_frames * samples * ((bits + 7) // 8)
    if decoded > MAX_DECODED_BYTES:
        raise ImageTooLargeError(
            f"{quoted(name)} declares {n_frames} frame(s) of {rows} x {cols} pixels "
            f"({decoded / 2**30:.1f} GiB decoded); the limit is {MAX_DECODED_BYTES / 2**30:.0f} GiB. "
            "Export a single frame or a downsized copy and upload that."
        )


def _is_code(text: str) -> bool:
    """A short DICOM code string (safe to echo in a message: cannot carry a name)."""
    return bool(re.fullmatch(r"[A-Z0-9_ ]{1,16}", text))


def _map_modality(ds: pydicom.Dataset, name: str, hint: str | None, notes: list[str]) -> str:
    code = str(ds.get("Modality", "")).strip().upper()
    shown = code if _is_code(code) else "unknown"
    mapped = MODALITY_MAP.get(code)
    if mapped:
        if hint and hint != mapped:
            notes.append(f"The file says {shown} ({mapped}); the {hint} hint was ignored.")
        return mapped
    if hint is None:
        raise UnsupportedModalityError(
            f"{quoted(name)} is a DICOM {shown} study; only chest X-ray (CR/DX) and CT are supported. "
            "Choose a modality to load it anyway (best effort)."
        )
    notes.append(
        f"DICOM modality {shown} is not chest X-ray or CT: loaded as {hint} on request (best effort); "
        "the models were not trained on it."
    )
    return hint


#: The Pixel Data tag (7FE0,0010) as it appears in little- and big-endian files.
_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")


def _check_pixel_data(ds: pydicom.Dataset, data: bytes, name: str) -> None:
    """Pixel data present; when pydicom dropped it (cut mid-element) the file is truncated, not image-less."""
    if "PixelData" in ds:
        return
    if any(tag in data for tag in _PIXEL_DATA_TAGS):
        raise CorruptImageError(
            f"{quoted(name)} is a truncated DICOM file: its pixel data starts but the file ends before the "
            f"image is complete. {_AGAIN}"
        )
    cut = " (the file may be truncated)" if _is_image_sop(ds) else ""
    raise NoPixelDataError(
        f"{quoted(name)} is a DICOM file without pixel data{cut}: no image to show. "
        "Upload the image file of the series instead."
    )


def _check_pixel_length(
    ds: pydicom.Dataset, name: str, tsyntax, rows: int, cols: int, n_frames: int, samples: int, bits: int
) -> None:
    if tsyntax is None or tsyntax.is_compressed:
        return
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422" and samples == 3:
        samples = 2  # 4:2:2 chroma subsampling stores two values per pixel on average (PS3.3 C.7.6.3.1.2)
    n_bits = rows * cols * n_frames * samples * bits
    expected = (n_bits + 7) // 8
    if len(ds.PixelData) < expected:
        raise CorruptImageError(
            f"{quoted(name)} is a truncated DICOM file: its pixel data holds {len(ds.PixelData)} of "
            f"{expected} bytes, so the file is damaged. {_AGAIN}"
        )


def _check_decoder(tsyntax, name: str) -> None:
    if tsyntax is None:
        raise CorruptImageError(
            f"{quoted(name)} has no transfer syntax in its DICOM header, so its pixels cannot be read. "
            + _AGAIN
        )
    if not tsyntax.is_compressed:
        return
    label = tsyntax.name if tsyntax.is_valid and tsyntax.name != tsyntax else "an unknown transfer syntax"
    try:
        decoder = dicom_pixels.get_decoder(tsyntax)
    except NotImplementedError:
        raise MissingDecoderError(
            f"{quoted(name)} is compressed with {label}, which this app cannot decode "
            "(no Python decoder exists for it). Export it as uncompressed DICOM or PNG and upload that."
        ) from None
    if not decoder.is_available:
        plugin = PLUGIN_HINTS.get(tsyntax, "a pydicom pixel-data plugin")
        raise MissingDecoderError(
            f"{quoted(name)} is compressed with {label}, but no decoder is installed: pip install {plugin}."
        )


def _decode_frame(ds: pydicom.Dataset, name: str, frame: int) -> np.ndarray:
    try:
        return np.asarray(dicom_pixels.pixel_array(ds, index=frame))
    except MemoryError:
        raise ImageTooLargeError(
            f"{quoted(name)} is too large to decode in memory. Export a single frame or a downsized copy."
        ) from None
    except Exception:
        raise CorruptImageError(
            f"{quoted(name)} has pixel data that could not be decoded: the file may be damaged or "
            f"truncated. {_AGAIN}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Intensities


def _functional_item(ds: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    """Enhanced multi-frame: the per-frame, else shared, functional group item holding ``sequence``."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and len(seq) > index and sequence in seq[index] and len(seq[index][sequence]) > 0:
            return seq[index][sequence][0]
    return None


def _modality_lut(ds: pydicom.Dataset, arr: np.ndarray, frame: int) -> np.ndarray:
    item = _functional_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        slope, intercept = float(item.RescaleSlope), float(item.get("RescaleIntercept", 0.0))
        return arr.astype(np.float64) * slope + intercept
    return np.asarray(dicom_pixels.apply_modality_lut(arr, ds), dtype=np.float64)


def _file_window(ds: pydicom.Dataset, frame: int) -> tuple[float, float] | None:
    source = _functional_item(ds, frame, "FrameVOILUTSequence") or ds
    centre, width = source.get("WindowCenter"), source.get("WindowWidth")
    if centre is None or width is None:
        return None
    try:
        c = float(centre[0] if isinstance(centre, (list, tuple, pydicom.multival.MultiValue)) else centre)
        w = float(width[0] if isinstance(width, (list, tuple, pydicom.multival.MultiValue)) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if np.isfinite(c) and np.isfinite(w) and w > 0 else None


@dataclass(frozen=True)
class Intensities:
    """What the intensity steps made of one decoded frame."""

    raw: np.ndarray | None  # modality-LUT values (HU on CT), float32; None for colour files
    pixels: np.ndarray  # (H, W) float32 in [0, 1]
    window: tuple[float, float] | None  # (centre, width) applied, or None (colour, VOI LUT table)
    notes: tuple[str, ...] = ()  # what the user should know (a default window, a colour conversion)


def _intensities(
    ds: pydicom.Dataset,
    arr: np.ndarray,
    photometric: str,
    frame: int,
    hounsfield: bool,
    window: str | tuple[float, float] | None,
) -> Intensities:
    """The steps in order: colour -> grayscale; or modality LUT -> choose a window -> window (+ invert)."""
    if photometric == "PALETTE COLOR" or arr.ndim == 3:
        return _colour_to_gray(ds, arr, photometric, window)
    raw = _modality_lut(ds, arr, frame).astype(np.float32)
    invert = photometric == "MONOCHROME1"
    file_window = _file_window(ds, frame) if window is None else None
    if window is None and file_window is None and "VOILUTSequence" in ds:
        return Intensities(raw, _voi_lut_table(ds, raw, invert), None)
    win, notes = _choose_window(raw, window, file_window, hounsfield)
    return Intensities(raw, window_pixels(raw, win[0], win[1], invert), win, notes)


def _colour_to_gray(
    ds: pydicom.Dataset, arr: np.ndarray, photometric: str, window: str | tuple[float, float] | None
) -> Intensities:
    """Palette or RGB / YBR (pydicom converts YBR to RGB when decoding) -> ITU-R 601 luma in [0, 1]."""
    if photometric == "PALETTE COLOR":
        rgb = dicom_pixels.apply_color_lut(arr, ds)
        top = 255.0 if rgb.dtype.itemsize == 1 else 65535.0
    else:
        rgb = arr
        top = 255.0 if arr.dtype.itemsize == 1 else float(2 ** int(ds.get("BitsStored", 16)) - 1)
    gray = (rgb[..., :3].astype(np.float64) @ np.asarray([0.299, 0.587, 0.114])) / top
    notes = [f"Colour DICOM ({photometric}) converted to grayscale."]
    if window is not None:
        notes.append("Windowing applies to grayscale DICOM only; the requested window was ignored.")
    return Intensities(None, np.clip(gray, 0.0, 1.0).astype(np.float32), None, tuple(notes))


def _choose_window(
    raw: np.ndarray,
    window: str | tuple[float, float] | None,
    file_window: tuple[float, float] | None,
    hounsfield: bool,
) -> tuple[tuple[float, float], tuple[str, ...]]:
    """The requested window, else the file's, else the CT preset (real HU only), else percentiles."""
    if window is not None:
        return resolve_window(window, raw), ()
    if file_window is not None:
        return file_window, ()
    if hounsfield:
        note = f"No window in the file: showing the CT {DEFAULT_CT_WINDOW} window."
        return WINDOW_PRESETS[DEFAULT_CT_WINDOW], (note,)
    return auto_window(raw), ()


def _voi_lut_table(ds: pydicom.Dataset, raw: np.ndarray, invert: bool) -> np.ndarray:
    """A VOI LUT Sequence table (no centre/width): pydicom applies it; its output depth scales to [0, 1]."""
    out = np.asarray(dicom_pixels.apply_voi_lut(raw, ds, prefer_lut=True), dtype=np.float64)
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])  # LUT output depth (PS3.3 C.11.2.1.1)
    scaled = out / float(2**bits - 1)
    scaled = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    return 1.0 - scaled if invert else scaled


# ----------------------------------------------------------------------------------------------
# Metadata (whitelist only) and geometry


def _safe_text(value: object) -> str:
    text = " ".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)
    return _SAFE_VALUE.sub("", text).strip()[:64]


def _whitelisted_meta(ds: pydicom.Dataset, n_frames: int, tsyntax) -> dict[str, str]:
    meta: dict[str, str] = {}
    for keyword, label in META_WHITELIST.items():
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            meta[label] = _safe_text(value)
    if n_frames > 1:
        meta["Frames"] = str(n_frames)
    if tsyntax is not None:
        meta["Transfer syntax"] = _safe_text(tsyntax.name)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        meta["Rescale (slope, intercept)"] = (
            f"{float(ds.get('RescaleSlope', 1) or 1):g}, {float(ds.get('RescaleIntercept', 0) or 0):g}"
        )
    return meta


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    candidates = [ds.get("PixelSpacing"), ds.get("ImagerPixelSpacing")]
    item = _functional_item(ds, 0, "PixelMeasuresSequence")
    if item is not None:
        candidates.insert(0, item.get("PixelSpacing"))
    for value in candidates:
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0:
            return row, col
    return None
