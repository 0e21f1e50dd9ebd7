"""Load PNG, JPEG and DICOM bytes into a :class:`~model.types.Study`, safely.

The one door for images into the package: the dashboard's uploads, the CLI and the datasets all come
through here, so the limits, the de-identification and the intensity steps live in one place.

Pipeline (MONAI-style: small pure steps in order)::

    bytes --sniff magic--> DICOM  -> header guard -> decode one frame -> modality LUT (raw, HU on CT)
                                     -> window (file VOI / CT preset / percentiles) -> MONOCHROME1 invert
                       \\-> PNG/JPEG -> verify -> re-open -> size guard -> EXIF orientation -> grayscale

Choices (documented once, here):

- Content is sniffed from the bytes (DICOM "DICM" at offset 128 first, because a DICOM preamble may itself
  look like a TIFF; then PNG and JPEG signatures); the file name is never trusted. "DICM" a few bytes off
  128 (a stray byte added or lost at the start, e.g. by a broken transfer) is called a damaged DICOM file,
  not an unknown format. A DICOM file without the
  128-byte preamble is read only when its first bytes are a plausible group 0002/0008 element *and* it
  parses into an image (see ``dicom.py``). ``dcmread(force=True)`` is never used on arbitrary bytes.
- PNG/JPEG carry no modality: ``modality_hint`` decides, else chest X-ray ("CXR"), with a warning.
- 8-bit images map v -> v / 255. 16-bit PNGs open as ``I;16`` and are min-max normalised in numpy
  (``.convert("L")`` would clip them). Colour converts with ITU-R 601 luma in float; alpha is composited
  on **black** (the background of a radiograph is black, so transparent padding reads as air).
- CT without a window in the file uses the **lung** preset (C -600 / W 1500): the CT task here is lung
  tumour classification, where the lung window shows nodules and masses best. Other DICOMs without a
  window use the 0.5-99.5 percentile range of the modality-LUT values.
- ``to_model_input`` is a plain resize to a square (Pillow bilinear on float32, which antialiases when
  shrinking); the aspect ratio is not kept: chest images are near square and padding would waste
  resolution. Datasets and inference both call it, so training and serving agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model.data.errors import (  # noqa: F401  (public names stay importable from imaging)
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDecoderError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedModalityError,
    display_name,
    quoted,
)
from model.data.intensity import (  # noqa: F401
    AUTO_PERCENTILES,
    AUTO_WINDOW,
    DEFAULT_CT_WINDOW,
    WINDOW_PRESETS,
    auto_window,
    resolve_window,
    window_pixels,
)
from model.data.limits import MAX_BYTES, MAX_DECODED_BYTES, MAX_PIXELS, WARNINGS_LOCK  # noqa: F401
from model.types import MODALITIES, Study

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Formats (limits: model/data/limits.py; errors: model/data/errors.py; windows: model/data/intensity.py)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: the loader's note on a plain image loaded without a hint (the input guard replaces it by what it detects)
NO_MODALITY_NOTE = "PNG/JPEG files carry no modality: treated as chest X-ray (CXR)."
JPEG_MAGIC = b"\xff\xd8\xff"
ACCEPTED = "a PNG, JPEG or DICOM file"
_OR_PNG = {"PNG": "", "JPEG": " (or PNG)"}  # what else to save a damaged raster as

# Other formats users try, to say what the file looks like instead.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"RIFF", "a RIFF (WebP/AVI/WAV) file"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
)


# ----------------------------------------------------------------------------------------------
# Public API


def load_study(
    data: bytes,
    name: str = "",
    *,
    modality_hint: str | None = None,
    frame: int = 0,
    window: str | tuple[float, float] | None = None,
    sha256: str | None = None,
    kind: str | None = None,
) -> Study:
    """Parse one uploaded file into a Study: float32 H x W pixels in [0, 1] plus de-identified meta.

    ``modality_hint`` ("CXR" | "CT") sets the modality of plain images and allows best-effort loading of
    other DICOM modalities (with a warning). ``frame`` picks one frame of a multi-frame DICOM. ``window``
    overrides the DICOM default window (a WINDOW_PRESETS name, "auto" or (centre, width)).
    ``sha256`` / ``kind``: the caller's ``sha256(data).hexdigest()`` and ``sniff(data)`` of these very
    bytes, when it has them already (the app hashes and sniffs each upload once); else computed here.
    Raises the ImageLoadError family, never anything else, for bad input.
    """
    name = display_name(name)
    hint = _check_hint(modality_hint)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_study wants bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise CorruptImageError(
            f"{quoted(name)} is empty (0 bytes): it may not have finished copying. Upload it again."
        )
    if len(data) > MAX_BYTES:
        raise ImageTooLargeError(
            f"{quoted(name)} is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB. "
            "Export a smaller copy (one frame, or a downsized PNG) and upload that."
        )
    if frame < 0:
        raise ImageLoadError(f"Frame {frame} of {quoted(name)} does not exist (frames count from 0).")

    kind = kind or sniff(data)
    log.debug("loading %s bytes as %s", len(data), kind)
    if kind == "damaged_dicom":
        raise CorruptImageError(_shifted_dicom_message(data, name))
    if kind == "dicom":
        from model.data import dicom  # lazy: plain images never import pydicom

        study = dicom.read_dicom(data, name, modality_hint=hint, frame=frame, window=window)
    elif kind in ("png", "jpeg"):
        study = _load_raster(data, name, kind, hint, frame, window)
    else:
        looks = _looks_like(data)
        extra = f" It looks like {looks}." if looks else ""
        raise UnsupportedFormatError(
            f"{quoted(name)} is not {ACCEPTED}.{extra} "
            "Export the image as PNG, JPEG or DICOM and upload that."
        )
    study.sha256 = sha256 or hashlib.sha256(data).hexdigest()
    study.source = name
    h, w = study.pixels.shape
    colour = str(study.meta.get("Photometric interpretation", study.meta.get("Colour mode", "L"))).upper()
    colour_file = colour not in ("L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA") and not colour.startswith(
        "MONOCHROME"
    )
    stats = {"height": float(h), "width": float(w), **study.image_stats}  # for the input guard (model/guard)
    # a colour file with grey pixels (RGBA exports of CT slices, say) counts as grey; colour DICOM as colour
    stats["colour_source"] = float(colour_file and stats.get("colourfulness", COLOURFUL) > 10.0)
    study.image_stats = stats
    return study


def load_study_path(path: str | Path, **kwargs) -> Study:
    """load_study on a file on disk (size checked before reading)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ImageTooLargeError(
                f"{quoted(display_name(p.name))} is {size / 2**20:.0f} MB; the limit is "
                f"{MAX_BYTES // 2**20} MB. Export a smaller copy (one frame, or a downsized PNG)."
            )
        data = p.read_bytes()
    except OSError as err:
        reason = (err.strerror or "the operating system refused").lower()
        raise ImageLoadError(
            f"{quoted(display_name(p.name))} could not be read ({reason}): "
            "check the path and its permissions."
        ) from None
    return load_study(data, p.name, **kwargs)


#: How far (bytes) from offset 128 a "DICM" marker still says "a DICOM file, shifted": damaged.
DICM_SLACK = 8


def sniff(data: bytes) -> str:
    """ "dicom" | "damaged_dicom" | "png" | "jpeg" | "unknown" from the bytes alone."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if _dicm_offset(data) is not None:  # after PNG/JPEG: their bytes may hold "DICM" by chance
        return "damaged_dicom"
    from model.data import dicom

    if dicom.looks_like_bare_dicom(data):
        return "dicom"
    return "unknown"


def _dicm_offset(data: bytes) -> int | None:
    """Where "DICM" sits when it is near (not at) offset 128, else None."""
    pos = data.find(b"DICM", 128 - DICM_SLACK, 132 + DICM_SLACK)
    return None if pos < 0 or pos == 128 else pos


def _shifted_dicom_message(data: bytes, name: str) -> str:
    shift = _dicm_offset(data) - 128
    n = abs(shift)
    what = f"{n} extra byte{'s' * (n > 1)} before" if shift > 0 else f"{n} byte{'s' * (n > 1)} missing from"
    return (
        f"{quoted(name)} is a damaged DICOM file: its 'DICM' marker sits at byte {128 + shift} instead of "
        f"128 ({what} the start of the file, e.g. from a broken copy or transfer). "
        "Export or copy the file again from the viewer or PACS and upload the new copy."
    )


def apply_window(study: Study, window: str | tuple[float, float]) -> Study:
    """Re-window a study from ``study.raw`` (a preset name, "auto", or (centre, width)); returns a copy."""
    if study.raw is None:
        raise ImageLoadError(
            f"{quoted(study.source)} has no raw values to re-window (only DICOM images keep them)."
        )
    centre, width = resolve_window(window, study.raw)
    invert = study.meta.get("Photometric interpretation") == "MONOCHROME1"
    pixels = window_pixels(study.raw, centre, width, invert)
    meta = {**study.meta, "Window (C/W)": f"{centre:g} / {width:g}"}
    return dataclasses.replace(study, pixels=pixels, window=(centre, width), meta=meta)


def to_model_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """The one resize rule (train and serve): H x W [0, 1] -> size x size float32 [0, 1].

    Pillow bilinear on a float32 image (it widens its kernel when shrinking, i.e. antialiases); aspect
    ratio is not kept (see module docstring).
    """
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"to_model_input wants an H x W array, got shape {arr.shape}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if arr.shape != (size, size):
        arr = np.asarray(Image.fromarray(arr, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    return np.clip(arr, 0.0, 1.0).astype(np.float32, copy=True)


# ----------------------------------------------------------------------------------------------
# PNG / JPEG


def _check_hint(hint: str | None) -> str | None:
    if hint is None:
        return None
    up = str(hint).strip().upper()
    if up not in MODALITIES:
        raise ValueError(f"modality_hint must be one of {MODALITIES} or None, got {hint!r}")
    return up


def _looks_like(data: bytes) -> str:
    for magic, what in _OTHER_MAGIC:
        if data.startswith(magic):
            return what
    head = data[:64].lstrip()
    if head[:1] in (b"<", b"{", b"["):
        return "a text document"
    return ""


def _open_checked(data: bytes, name: str, fmt: str) -> Image.Image:
    """verify() the file, re-open it (verify leaves it unusable), check the size, decode; bombs -> error."""
    label = fmt.upper()
    try:
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb warning is an error
            with Image.open(io.BytesIO(data), formats=[label]) as probe:
                probe.verify()
            img = Image.open(io.BytesIO(data), formats=[label])
            w, h = img.size
            if w <= 0 or h <= 0:
                raise CorruptImageError(
                    f"{quoted(name)} claims an empty image ({w} x {h}): the file is damaged. "
                    "Export it again and upload the new copy."
                )
            if w * h > MAX_PIXELS:
                raise ImageTooLargeError(
                    f"{quoted(name)} is {w} x {h} pixels ({w * h / 1e6:.0f} MP); "
                    f"the limit is {MAX_PIXELS / 1e6:.0f} MP. Downsize it and upload the smaller copy."
                )
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"{quoted(name)} declares a huge image (a possible decompression bomb); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} MP. Downsize it and upload the smaller copy."
        ) from None
    except ImageLoadError:
        raise
    except Image.UnidentifiedImageError:
        raise CorruptImageError(
            f"{quoted(name)} starts like a {label} but is not a readable {label}: the file is damaged. "
            f"Save it again as {label}{_OR_PNG[label]} and upload the new copy."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as err:
        what = "truncated" if "truncat" in str(err).lower() else "damaged"
        raise CorruptImageError(
            f"{quoted(name)} is a {what} {label} file and cannot be decoded. "
            f"Export or save it again as {label}{_OR_PNG[label]} and upload the new copy."
        ) from None
    return img


def to_grayscale(img: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Any Pillow mode -> float32 H x W in [0, 1] (+ notes). Alpha composited on black; 16-bit min-max."""
    notes: list[str] = []
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return out.astype(np.float32), notes
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0, notes
    alpha = None
    if mode in ("LA", "La", "RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3]
    else:  # RGB, CMYK, YCbCr, LAB, HSV...
        if mode != "RGB":
            notes.append(f"Converted a {mode} image to grayscale.")
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    gray = rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma
    if alpha is not None:
        if float(alpha.min()) < 1.0:
            notes.append("Transparent areas were composited on black.")
        gray = gray * alpha  # over a black background
    return np.clip(gray, 0.0, 1.0).astype(np.float32), notes


def _load_raster(data: bytes, name: str, kind: str, hint: str | None, frame: int, window: object) -> Study:
    if frame != 0:
        raise ImageLoadError(f"{quoted(name)} has a single frame; frame {frame} does not exist.")
    img = _open_checked(data, name, kind)
    mode = img.mode
    try:
        orientation = img.getexif().get(0x0112, 1)
        oriented = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block should not lose the image
        orientation, oriented = 1, img
    pixels, notes = to_grayscale(oriented)
    colourfulness = _colourfulness(oriented)
    warns = list(notes)
    if colourfulness > COLOURFUL:
        warns.append(
            f"{quoted(name)} is a colour image (colourfulness {colourfulness:.0f}); it was converted to grayscale. "
            "Chest X-rays and CT slices are grayscale: check that this is the image you meant to upload."
        )
    if hint is None:
        warns.append(NO_MODALITY_NOTE)
    if window is not None:
        warns.append("Windowing applies to DICOM only; the requested window was ignored.")
    h, w = pixels.shape
    bits = "16" if mode.startswith("I") or mode == "F" else "8"
    meta = {
        "Format": kind.upper(),
        "Rows": str(h),
        "Columns": str(w),
        "Colour mode": mode,
        "Bit depth": bits,
    }
    if orientation not in (1, None):
        meta["EXIF orientation"] = f"{orientation} (applied)"
    return Study(
        pixels=pixels,
        modality=hint or "CXR",
        meta=meta,
        warnings=tuple(warns),
        image_stats={"colourfulness": colourfulness},
    )


COLOURFUL = 15.0  # Hasler-Suesstrunk colourfulness above which a 'grayscale' conversion is worth a warning


def _colourfulness(img: Image.Image) -> float:
    """Hasler & Suesstrunk (2003) colourfulness on a <= 128 px thumbnail, 0-255 scale; 0 for gray modes.

    C = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G, yb = (R + G) / 2 - B.
    """
    if img.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"):
        return 0.0
    small = img.copy()
    small.thumbnail((128, 128))
    rgb = np.asarray(small.convert("RGB"), dtype=np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
