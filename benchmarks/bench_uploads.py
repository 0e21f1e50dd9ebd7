"""Hostile and awkward uploads through the loader (and the Compare page): crashes, messages, identifiers.

    .venv/bin/python benchmarks/bench_uploads.py            # loader corpus + one AppTest session
    .venv/bin/python benchmarks/bench_uploads.py --no-app   # loader corpus only (a few seconds)

Corpus (built in memory, offline): every DICOM file bundled with pydicom, each also with a stray leading
byte, a lost first byte and cut to 60 % and 90 % of its length; plus PNG/JPEG variants (8/16-bit,
palette, CMYK, truncated, bad CRC, decompression bombs) and other formats (GIF, BMP, TIFF, PDF, ZIP,
HTML, SVG, random bytes, empty). Every file carries a hostile name (Markdown link, HTML, javascript:,
right-to-left override, 300 characters...).

Counted per file (``load_study``): ``crashes`` (anything but the ImageLoadError family),
``class_names`` (an exception class name in the message), ``unnamed`` (the message does not name the
file), ``no_action`` (it does not say what to do), ``identifier_leaks`` (a patient/institution value
of the file in the message, the study's meta/warnings or the log), and whether the message calls a
damaged DICOM variant damaged/truncated (``shifted_said_damaged``: 'DICM' off offset 128;
``cut_said_damaged``: cut files, the rest being files with nothing of the image left before the cut,
or cut inside trailing padding and accepted whole).
The app phase uploads ``--app-files`` of them at once (all the PNG/JPEG/other-format files, then DICOM
files spread over the corpus) to one AppTest session of the Compare page and counts page exceptions,
error boxes, class names and live Markdown from the names, and the reports of the study analysed. Writes
``benchmarks/results/uploads.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from model.data.imaging import ImageLoadError, display_name, load_study  # noqa: E402

HOSTILE_NAMES = [
    "[Re-upload here](https:example.com){ext}",
    "<img src=x onerror=alert(1)>{ext}",
    "[click](javascript:alert(1)){ext}",
    "invoice\u202egnp.exe{ext}",
    "www.example.com mail@example.com{ext}",
    ":red[alarm] $x^2$ **b**{ext}",
    "C:\\fakepath\\" + "A" * 300 + "{ext}",
    "line\nbreak\ttab{ext}",
]
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")
ACTIONS = ("upload", "export", "choose", "save", "check", "pip install", "downsize", "again")
DAMAGE_WORDS = ("damaged", "truncated")
IDENTIFYING = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "InstitutionName",
    "ReferringPhysicianName", "OperatorsName", "AccessionNumber", "PerformingPhysicianName",
)  # fmt: skip


def _png(arr: np.ndarray, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png_claiming(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def raster_corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, extension)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    gray = (np.tile(np.linspace(0, 255, 64), (48, 1))).astype(np.uint8)
    png = _png(gray)
    jpeg = _jpeg(Image.fromarray(gray))
    jpeg_big = bytearray(jpeg)
    sof = jpeg_big.index(b"\xff\xc0")
    jpeg_big[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return {
        "png_8bit": (png, ".png"),
        "png_16bit": (_png(gray.astype(np.uint16) * 200), ".png"),
        "png_palette": (_png(np.asarray(Image.fromarray(gray).convert("P"))), ".png"),
        "png_rgba": (_png(np.dstack([gray, gray, gray, gray])), ".png"),
        "jpeg_gray": (jpeg, ".jpg"),
        "jpeg_cmyk": (_jpeg(Image.fromarray(gray).convert("CMYK")), ".jpg"),
        "png_truncated": (png[: len(png) // 2], ".png"),
        "png_bad_crc": (png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], ".png"),
        "jpeg_truncated": (jpeg[: int(len(jpeg) * 0.6)], ".jpg"),
        "png_bomb": (_png_claiming(100_000, 100_000), ".png"),
        "jpeg_bomb": (bytes(jpeg_big), ".jpg"),
        "empty": (b"", ".png"),
        "random": (rng.bytes(4096), ".dcm"),
        "gif": (b"GIF89a" + b"\0" * 64, ".png"),
        "bmp": (b"BM" + b"\0" * 64, ".png"),
        "tiff": (b"II*\x00" + b"\0" * 64, ".dcm"),
        "pdf": (b"%PDF-1.7\n" + b"x" * 64, ".png"),
        "zip": (b"PK\x03\x04" + b"\0" * 64, ".dcm"),
        "html": (b"<html><body><a href='https://example.com'>x</a></body></html>", ".png"),
        "svg": (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", ".png"),
    }


def dicom_corpus() -> tuple[dict[str, tuple[bytes, str]], dict[str, list[str]], set[str], set[str]]:
    """name -> (bytes, ext); name -> identifier values; shifted ('DICM' off 128) and cut variants."""
    import pydicom
    from pydicom.data import get_testdata_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = sorted(get_testdata_files("*.dcm"))
    files, ids, damaged, cut = {}, {}, set(), set()
    for p in paths:
        data = Path(p).read_bytes()
        stem = Path(p).stem
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            values = [str(ds.get(k, "")) for k in IDENTIFYING]
        except Exception:
            values = []
        secrets = sorted({part for v in values for part in re.split(r"[\^ ]+", v) if len(part) >= 4})
        variants = {"": data}
        if len(data) > 132 and data[128:132] == b"DICM":
            variants |= {"_stray": b"\x00" + data, "_lost": data[1:]}
            damaged |= {stem + "_stray", stem + "_lost"}
        variants |= {"_cut60": data[: int(len(data) * 0.6)], "_cut90": data[: int(len(data) * 0.9)]}
        cut |= {stem + "_cut60", stem + "_cut90"}
        for suffix, blob in variants.items():
            files[stem + suffix] = (blob, ".dcm")
            ids[stem + suffix] = secrets
    return files, ids, damaged, cut


def run_loader(corpus, ids, damaged, cut) -> dict:
    records = logging.getLogger()
    log_lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            log_lines.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    records.addHandler(handler)
    records.setLevel(logging.DEBUG)
    logging.getLogger("pydicom").setLevel(logging.DEBUG)  # the worst case: pydicom logs every element
    counts = dict(files=0, accepted=0, rejected=0, crashes=0, class_names=0, unnamed=0, no_action=0,
                  identifier_leaks=0, shifted_variants=0, shifted_said_damaged=0, cut_variants=0,
                  cut_accepted=0, cut_said_damaged=0, cut_said_other=0)  # fmt: skip
    by_error: dict[str, int] = {}
    examples: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        for i, (key, (data, ext)) in enumerate(corpus.items()):
            name = HOSTILE_NAMES[i % len(HOSTILE_NAMES)].format(ext=ext)
            counts["files"] += 1
            log_lines.clear()
            texts: list[str] = []
            try:
                study = load_study(data, name)
                counts["accepted"] += 1
                counts["cut_accepted"] += key in cut  # cut inside trailing padding: the image is whole
                texts += [repr(study.meta), *study.warnings, study.source]
            except ImageLoadError as err:
                counts["rejected"] += 1
                kind = type(err).__name__
                by_error[kind] = by_error.get(kind, 0) + 1
                msg = str(err)
                texts.append(msg)
                examples.setdefault(kind, msg)
                counts["class_names"] += bool(CLASS_NAME.search(msg) or "Traceback" in msg)
                counts["unnamed"] += display_name(name) not in msg
                counts["no_action"] += not any(a in msg.lower() for a in ACTIONS)
                said = any(w in msg for w in DAMAGE_WORDS)
                if key in damaged:
                    counts["shifted_said_damaged"] += said
                if key in cut:
                    counts["cut_said_damaged"] += said
                    counts["cut_said_other"] += not said
                    if not said:
                        examples.setdefault(f"cut, not called damaged ({kind})", msg)
            except Exception as err:  # a crash: the thing this benchmark exists to find
                counts["crashes"] += 1
                examples.setdefault(f"crash:{key}", f"{type(err).__name__}: {err}")
            counts["shifted_variants"] += key in damaged
            counts["cut_variants"] += key in cut
            texts += log_lines
            blob = "\n".join(texts)
            counts["identifier_leaks"] += any(s in blob for s in ids.get(key, []))
    finally:
        records.removeHandler(handler)
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return {"counts": counts, "rejected_by_error": by_error, "example_messages": examples}


def run_app(rasters, dicoms, n_files: int) -> dict:
    import tempfile

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from model.demo import build_demo_checkpoints

    ckpt = Path(tempfile.mkdtemp())
    build_demo_checkpoints(ckpt)
    os.environ["MEDDISTILL_CHECKPOINTS"] = str(ckpt)
    st.cache_data.clear()
    items = list(dicoms.items())
    n_dicom = max(0, n_files - len(rasters))
    chosen = list(rasters.items())[:n_files] + items[:: max(1, len(items) // max(n_dicom, 1))][:n_dicom]
    uploads = [
        (HOSTILE_NAMES[i % len(HOSTILE_NAMES)].format(ext=ext), data, "application/octet-stream")
        for i, (_key, (data, ext)) in enumerate(chosen)
    ]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    t0 = time.perf_counter()
    at.file_uploader(key="cmp_upload").set_value(uploads).run()
    reports = [e for e in at.get("html") if "md-report" in e.proto.body]
    texts = [e.value for e in at.error] + [e.value for e in at.info] + [e.value for e in at.caption]
    texts += [c for e in at.get("image") for c in e.captions]
    live = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\s*(?<!\\)\(|(?<!\\)<\s*[A-Za-z]|javascript(?<!\\):")
    return {
        "files_uploaded": len(uploads),
        "page_exceptions": len(at.exception),
        "error_boxes": len(at.error),
        "input_guard_refusals": sum("Input guard" in e.value for e in at.error),  # the guard, not the loader
        "study_analysed": at.selectbox(key="cmp_study").value,
        "reports_rendered": len(reports),
        "class_names_on_page": sum(bool(CLASS_NAME.search(t)) for t in texts),
        "live_markup_from_names": sum(bool(live.search(t)) for t in texts if "example" in t or "alert" in t),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-app", action="store_true", help="skip the AppTest phase")
    ap.add_argument("--app-files", type=int, default=42, help="files uploaded at once in the app phase")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/uploads.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    dicoms, ids, damaged, cut = dicom_corpus()
    rasters = raster_corpus()
    corpus = {**rasters, **dicoms}
    result = {"loader": run_loader(corpus, ids, damaged, cut)}
    if not args.no_app:
        result["app"] = run_app(rasters, dicoms, args.app_files)
    result["load_average"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=True) + "\n")
    summary = {k: v for k, v in result.items() if k != "loader"} | result["loader"]["counts"]
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
