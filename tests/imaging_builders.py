"""Test files for the loader tests (test_imaging.py, test_dicom.py, test_intensity.py): small DICOMs with fake
identifiers, PNG/JPEG encoders, decompression-bomb headers and the table of bad inputs. All in memory except
pydicom's bundled test data (offline: ``download=False``)."""

from __future__ import annotations

import io
import struct
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
    CorruptImageError,
    ImageTooLargeError,
    MissingDecoderError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedModalityError,
)


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


def bad_rescale_group() -> Dataset:
    """An enhanced-DICOM functional group whose rescale slope is not a number."""
    item = Dataset()
    item.add_new(0x00281053, "LO", "not-a-number")  # RescaleSlope written with a text VR
    group = Dataset()
    group.PixelValueTransformationSequence = pydicom.Sequence([item])
    return group


def gradient(h: int = 24, w: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w), (h, 1)).astype(np.uint8)


def truncate(data: bytes, keep: float) -> bytes:
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
        lambda: truncate(png_bytes(Image.fromarray(gradient(64, 64))), 0.5),
        CorruptImageError,
        "PNG",
    ),
    "truncated_jpeg": (
        lambda: truncate(jpeg_bytes(Image.fromarray(gradient(64, 64))), 0.6),
        CorruptImageError,
        "truncated JPEG",
    ),
    "png_bad_crc": (
        lambda: (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:])(png_bytes(Image.fromarray(gradient()))),
        CorruptImageError,
        "PNG",
    ),
    "truncated_dicom_pixels": (
        lambda: truncate(make_dicom(np.zeros((32, 32), np.uint16)), 0.7),
        CorruptImageError,
        "truncated DICOM",
    ),
    "truncated_dicom_header": (lambda: truncate(make_dicom(), 0.4), CorruptImageError, "truncated"),
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
            extra={"SharedFunctionalGroupsSequence": pydicom.Sequence([bad_rescale_group()])}, rescale=None
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
