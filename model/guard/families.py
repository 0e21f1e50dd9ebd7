"""Example files for training and measuring the input guard, as the bytes a user would upload.

Every example is a file (PNG, JPEG or DICOM bytes) that goes through ``imaging.load_study`` like an upload,
so the guard trains on the pixels it will serve. Families:

- positives: ``phantom_cxr`` / ``phantom_ct`` (``phantom.make_case``, augmented, several encodings, DICOM
  with the right header too), ``nih_cxr`` / ``real_ct`` (``../shared/data``, when present), ``ct_small``
  (pydicom's CT_small.dcm, re-windowed and resized);
- negatives (label "neither"): ``noise``, ``flat``, ``gradient``, ``scene`` (procedural landscapes),
  ``text`` (rendered documents), ``body`` (other body parts and modalities: pydicom's MR / US / NM / RT
  dose / SEG / secondary-capture files loaded as the CLI's ``--modality`` would, procedural skull and limb
  radiographs, transformed phantoms: mosaics, colour tints, strips, sideways chests) and ``drawing``
  (cartoons and line drawings), which is HELD OUT of training to measure generalisation;
- ``wrong_modality``: a chest X-ray phantom in a DICOM tagged CT and a CT phantom tagged DX (the
  classifier's label is what the pixels show; the guard refuses the header/pixel disagreement).

Everything is procedural and deterministic for a (family, seed).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy.ndimage import gaussian_filter

#: families whose images the guard must accept, and their label
POSITIVE_FAMILIES: dict[str, str] = {
    "phantom_cxr": "CXR",
    "phantom_ct": "CT",
    "nih_cxr": "CXR",
    "real_ct": "CT",
    "ct_small": "CT",
}
#: negative families used for training (label "neither")
TRAIN_NEGATIVES: tuple[str, ...] = ("noise", "flat", "gradient", "scene", "text", "body")
#: negative family kept out of training, to measure how the guard generalises
HELD_OUT_NEGATIVES: tuple[str, ...] = ("drawing",)
NEGATIVE_FAMILIES: tuple[str, ...] = TRAIN_NEGATIVES + HELD_OUT_NEGATIVES
WRONG_MODALITY = "wrong_modality"

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

#: pydicom's bundled non-chest files (offline), split so that the test split sees files training did not
BODY_DICOM_TRAIN: tuple[str, ...] = (
    "MR_small.dcm",
    "examples_overlay.dcm",
    "examples_rgb_color.dcm",
    "examples_palette.dcm",
    "JPEG-lossy.dcm",
    "rtdose.dcm",
    "liver_1frame.dcm",
    "SC_rgb_jpeg.dcm",
)
BODY_DICOM_TEST: tuple[str, ...] = (
    "MR_small_RLE.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "ExplVR_BigEnd.dcm",
    "JPEG2000.dcm",
    "rtdose_1frame.dcm",
    "examples_ybr_color.dcm",
    "SC_rgb_rle.dcm",
    "image_dfl.dcm",
)


@dataclass
class Example:
    """One file for the guard: bytes + name, what it shows and how it is loaded."""

    data: bytes
    name: str
    family: str
    label: str  # "CXR" | "CT" | "neither"
    hint: str | None = None  # modality_hint passed to the loader (a user's --modality)


# ----------------------------------------------------------------------------------------------
# Encoding


def encode_png(arr: np.ndarray) -> bytes:
    """float [0, 1] (H, W) or (H, W, 3) -> 8-bit PNG bytes."""
    a = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def encode(arr: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A random realistic encoding: 8-bit PNG (gray or RGB), 16-bit PNG or JPEG."""
    a = np.clip(arr, 0, 1)
    kind = rng.choice(["png", "png", "rgb", "jpeg", "png16"])
    buf = io.BytesIO()
    if kind == "png16" and a.ndim == 2:
        Image.fromarray((a * 65535).astype(np.uint16)).save(buf, format="PNG")
        return buf.getvalue(), "png"
    if kind == "rgb" and a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    img = Image.fromarray((a * 255 + 0.5).astype(np.uint8))
    if kind == "jpeg":
        img.save(buf, format="JPEG", quality=int(rng.integers(60, 96)))
        return buf.getvalue(), "jpg"
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def dicom_bytes(pixels: np.ndarray, modality: str, seed: int, window: bool = True) -> bytes:
    """A minimal uncompressed DICOM of a [0, 1] image with the given Modality tag.

    CT stores Hounsfield units through the lung window (C -600 / W 1500), so the loader's default CT window
    reproduces the pixels; other modalities store 12-bit values with a full-range window.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        CTImageStorage,
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    sop = CTImageStorage if modality == "CT" else DigitalXRayImageStorageForPresentation
    uid = generate_uid(entropy_srcs=[f"meddistill-guard-{modality}-{seed}"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop, uid, modality
    p = np.clip(np.asarray(pixels, dtype=np.float64), 0, 1)
    ds.Rows, ds.Columns = p.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if modality == "CT":
        hu = p * 1500.0 - 1350.0  # inverse of the lung window
        stored = np.clip(np.round(hu + 1024.0), 0, 4095)
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        if window:
            ds.WindowCenter, ds.WindowWidth = -600, 1500
    else:
        stored = np.round(p * 4095.0)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Small image helpers


def _resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    h, w = max(1, int(h)), max(1, int(w))
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    return np.stack([_resize(arr[..., c], h, w) for c in range(arr.shape[2])], axis=2)


def _random_size(rng: np.random.Generator, extreme: bool = True) -> tuple[int, int]:
    """(H, W): mostly photo-like sizes, sometimes tiny or extreme strips."""
    r = rng.random()
    if extreme and r < 0.08:
        return int(rng.integers(1, 6)), int(rng.integers(1, 6))
    if extreme and r < 0.2:
        long, short = int(rng.integers(400, 4000)), int(rng.integers(4, 40))
        return (long, short) if rng.random() < 0.5 else (short, long)
    side = int(rng.integers(48, 700))
    aspect = float(np.exp(rng.uniform(-0.7, 0.7)))
    return max(1, int(side / aspect**0.5)), max(1, int(side * aspect**0.5))


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.random(3)


def _gray_or_colour(img: np.ndarray, rng: np.random.Generator, p_gray: float = 0.4) -> np.ndarray:
    """(H, W, 3) -> itself or its luma, at random."""
    if rng.random() < p_gray:
        return img @ np.asarray([0.299, 0.587, 0.114])
    return img


def augment_positive(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild acquisition variety: crop, rotation, gamma, contrast, blur, noise, output size."""
    h, w = img.shape
    m = rng.uniform(0, 0.08, 4)
    crop = img[int(m[0] * h) : h - int(m[1] * h), int(m[2] * w) : w - int(m[3] * w)]
    pil = Image.fromarray(crop.astype(np.float32), mode="F")
    if rng.random() < 0.5:
        pil = pil.rotate(float(rng.uniform(-6, 6)), resample=Image.BILINEAR, fillcolor=0.0)
    out = np.asarray(pil, dtype=np.float64)
    if rng.random() < 0.3:
        out = gaussian_filter(out, float(rng.uniform(0.3, 1.2)))
    out = np.clip(out, 0, 1) ** float(np.exp(rng.uniform(-0.35, 0.35)))
    lo, hi = rng.uniform(0, 0.08), rng.uniform(0.9, 1.0)
    out = lo + (hi - lo) * out
    if rng.random() < 0.4:
        out = out + rng.normal(0, rng.uniform(0.005, 0.03), out.shape)
    side = int(rng.choice([128, 192, 256, 384, 512, 768]))
    aspect = float(np.exp(rng.uniform(-0.15, 0.15)))
    return np.clip(_resize(out, side / aspect**0.5, side * aspect**0.5), 0, 1)


# ----------------------------------------------------------------------------------------------
# Positives


def _phantom(modality: str) -> Callable[[int, np.random.Generator], Example]:
    def make(seed: int, rng: np.random.Generator) -> Example:
        from model.data.phantom import make_case

        case = make_case(seed, modality, size=int(rng.choice([128, 192, 256])))
        img = augment_positive(case.image, rng)
        if rng.random() < 0.25:  # DICOM with the right header
            return Example(dicom_bytes(img, modality if modality == "CT" else "DX", seed), f"{seed}.dcm",
                           f"phantom_{modality.lower()}", modality)  # fmt: skip
        data, ext = encode(img, rng)
        return Example(data, f"{seed}.{ext}", f"phantom_{modality.lower()}", modality)

    return make


def shared_files(kind: str, split: str) -> list[Path]:
    """Image files of a ../shared/data set ("nih" | "ct") and split ("train" | "valid"); [] when absent."""
    root = SHARED_DATA / ("nih1000" if kind == "nih" else "chest_ct") / split
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def _shared(kind: str, modality: str, family: str) -> Callable[[int, np.random.Generator, str], Example]:
    def make(seed: int, rng: np.random.Generator, split: str = "train") -> Example:
        files = shared_files(kind, split)
        path = files[seed % len(files)]
        data = path.read_bytes()
        if seed >= len(files):  # second pass over the files: augmented copies
            from model.data.imaging import load_study

            img = augment_positive(load_study(data, path.name).pixels, rng)
            data, ext = encode(img, rng)
            return Example(data, f"{path.stem}_{seed}.{ext}", family, modality)
        return Example(data, path.name, family, modality)

    return make


def _ct_small(seed: int, rng: np.random.Generator) -> Example:
    from pydicom.data import get_testdata_file

    from model.data.imaging import load_study_path

    path = get_testdata_file("CT_small.dcm", download=False)
    if seed == 0:
        return Example(Path(path).read_bytes(), "CT_small.dcm", "ct_small", "CT")
    img = augment_positive(load_study_path(path).pixels, rng)
    if rng.random() < 0.5:
        return Example(dicom_bytes(img, "CT", seed), f"ct_small_{seed}.dcm", "ct_small", "CT")
    data, ext = encode(img, rng)
    return Example(data, f"ct_small_{seed}.{ext}", "ct_small", "CT")


# ----------------------------------------------------------------------------------------------
# Negatives


def _noise(seed: int, rng: np.random.Generator) -> Example:
    h, w = _random_size(rng)
    kind = rng.integers(0, 4)
    c = 3 if rng.random() < 0.5 else 1
    if kind == 0:
        img = rng.random((h, w, c))
    elif kind == 1:
        img = rng.normal(rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3), (h, w, c))
    elif kind == 2:
        img = (rng.random((h, w, c)) < rng.uniform(0.05, 0.5)).astype(float)
    else:  # smooth (upsampled) noise: blobs
        g = rng.random((max(1, h // int(rng.integers(4, 40))), max(1, w // int(rng.integers(4, 40))), c))
        img = _resize(g, h, w) if c == 3 else _resize(g[..., 0], h, w)[..., None]
    img = np.clip(img, 0, 1)
    img = img[..., 0] if c == 1 else img
    return Example(
        encode(img, rng)[0] if img.ndim == 2 else encode_png(img), f"noise_{seed}.png", "noise", "neither"
    )


def _flat(seed: int, rng: np.random.Generator) -> Example:
    h, w = _random_size(rng)
    if rng.random() < 0.5:
        img = np.full((h, w), float(rng.random()))
    else:
        img = np.ones((h, w, 3)) * _colour(rng)
    if rng.random() < 0.3:  # a faint border or a little noise
        img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    return Example(encode_png(img), f"flat_{seed}.png", "flat", "neither")


def _gradient(seed: int, rng: np.random.Generator) -> Example:
    h, w = _random_size(rng)
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / max(1, h - 1), xx / max(1, w - 1)
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
    else:
        cy, cx = rng.random(2)
        t = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    t = (t - t.min()) / max(1e-6, np.ptp(t))
    if rng.random() < 0.5:
        img = t
    else:
        c0, c1 = _colour(rng), _colour(rng)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    return Example(encode_png(img), f"gradient_{seed}.png", "gradient", "neither")


def _scene(seed: int, rng: np.random.Generator) -> Example:
    """A procedural landscape: sky, sun, mountains, ground, trees, sometimes water."""
    w = int(rng.integers(160, 900))
    h = int(w * rng.uniform(0.5, 1.0))
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    sky0, sky1 = (rng.random(3) * [0.4, 0.6, 1] + [0, 0.2, 0.5]), rng.random(3) * 0.5 + 0.5
    horizon = int(h * rng.uniform(0.4, 0.75))
    for y in range(horizon):
        c = sky0 + (sky1 - sky0) * y / max(1, horizon)
        d.line([(0, y), (w, y)], fill=tuple(int(v * 255) for v in np.clip(c, 0, 1)))
    sr = int(rng.integers(8, max(9, w // 8)))
    sx, sy = int(rng.integers(0, w)), int(rng.integers(0, max(1, horizon // 2)))
    d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, int(rng.integers(180, 256)), 60))
    for _ in range(int(rng.integers(1, 5))):  # mountains
        base = int(rng.integers(-w // 4, w))
        top = horizon - int(rng.integers(h // 10, h // 2))
        c = tuple(int(v) for v in rng.integers(40, 160, 3))
        d.polygon(
            [(base, horizon), (base + int(rng.integers(w // 8, w // 2)), top), (base + w // 2, horizon)],
            fill=c,
        )
    ground = tuple(int(v) for v in (rng.random(3) * [100, 120, 60] + [20, 80, 10]))
    d.rectangle([0, horizon, w, h], fill=ground)
    if rng.random() < 0.4:
        d.rectangle([0, horizon + (h - horizon) // 2, w, h], fill=(30, 80, int(rng.integers(120, 220))))
    for _ in range(int(rng.integers(0, 12))):  # trees
        tx, ty = int(rng.integers(0, w)), int(rng.integers(horizon, h))
        s = int(rng.integers(6, max(7, h // 6)))
        d.rectangle([tx - s // 8, ty - s, tx + s // 8, ty], fill=(90, 60, 30))
        d.ellipse(
            [tx - s // 2, ty - 2 * s, tx + s // 2, ty - s // 2], fill=(20, int(rng.integers(90, 170)), 30)
        )
    arr = np.asarray(img, dtype=np.float64) / 255
    arr = _gray_or_colour(np.clip(arr + rng.normal(0, 0.02, arr.shape), 0, 1), rng, 0.25)
    data, ext = encode(arr, rng) if arr.ndim == 2 else (encode_png(arr), "png")
    return Example(data, f"scene_{seed}.{ext}", "scene", "neither")


_WORDS = (
    "patient report invoice total page section the of and to in results figure table summary date "
    "meeting agenda notes project budget quarterly review lorem ipsum dolor sit amet consectetur"
).split()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _text(seed: int, rng: np.random.Generator) -> Example:
    """A rendered document: lines of words, headings, sometimes a table, sometimes dark mode or a photo of it."""
    w = int(rng.integers(200, 1000))
    h = int(w * rng.uniform(0.6, 1.5))
    dark = rng.random() < 0.2
    bg, fg = ((20, 20, 20), (230, 230, 230)) if dark else ((255, 255, 255), (0, 0, 0))
    if rng.random() < 0.3:
        bg = tuple(int(v) for v in rng.integers(200, 256, 3)) if not dark else bg
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    size = int(rng.integers(10, 28))
    font = _font(size)
    y = int(rng.integers(5, 30))
    while y < h - size:
        if rng.random() < 0.1:  # table rule
            d.line([(10, y), (w - 10, y)], fill=fg, width=1)
        n = int(rng.integers(2, 14))
        line = " ".join(rng.choice(_WORDS, n))
        d.text(
            (int(rng.integers(5, 40)), y), line, fill=fg, font=_font(size + 8) if rng.random() < 0.1 else font
        )
        y += int(size * rng.uniform(1.2, 2.0))
    arr = np.asarray(img, dtype=np.float64) / 255
    if rng.random() < 0.3:  # a photographed page: blur, shading, noise
        arr = np.asarray(img.filter(ImageFilter.GaussianBlur(1)), dtype=np.float64) / 255
        arr = arr * np.linspace(rng.uniform(0.6, 1), 1, w)[None, :, None] + rng.normal(0, 0.02, arr.shape)
    arr = _gray_or_colour(np.clip(arr, 0, 1), rng, 0.5)
    data, ext = encode(arr, rng) if arr.ndim == 2 else (encode_png(arr), "png")
    return Example(data, f"document_{seed}.{ext}", "text", "neither")


def _drawing(seed: int, rng: np.random.Generator) -> Example:
    """Cartoons and line drawings: outlined and filled shapes, stick figures, smileys, scribbles."""
    w = int(rng.integers(120, 800))
    h = int(w * rng.uniform(0.6, 1.4))
    bg = (255, 255, 255) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(0, 256, 3))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 20))):
        kind = rng.integers(0, 5)
        c = (0, 0, 0) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(10, max(11, min(w, h) // 2)))
        lw = int(rng.integers(1, 6))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.4 else None
        if kind == 0:
            d.ellipse([x0, y0, x0 + s, y0 + s], outline=c, width=lw, fill=fill)
        elif kind == 1:
            d.rectangle([x0, y0, x0 + s, y0 + int(s * rng.uniform(0.5, 1.5))], outline=c, width=lw, fill=fill)
        elif kind == 2:  # scribble
            pts = [(x0, y0)]
            for _ in range(int(rng.integers(3, 12))):
                pts.append((pts[-1][0] + int(rng.integers(-s, s)), pts[-1][1] + int(rng.integers(-s, s))))
            d.line(pts, fill=c, width=lw)
        elif kind == 3:  # stick figure
            r = s // 5
            d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=c, width=lw)
            d.line([(x0, y0 + r), (x0, y0 + 3 * r)], fill=c, width=lw)
            d.line([(x0 - 2 * r, y0 + 2 * r), (x0 + 2 * r, y0 + 2 * r)], fill=c, width=lw)
            d.line([(x0, y0 + 3 * r), (x0 - r, y0 + 5 * r)], fill=c, width=lw)
            d.line([(x0, y0 + 3 * r), (x0 + r, y0 + 5 * r)], fill=c, width=lw)
        else:  # smiley
            d.ellipse([x0, y0, x0 + s, y0 + s], outline=c, width=lw, fill=fill or (255, 220, 0))
            e = max(1, s // 10)
            d.ellipse([x0 + s // 3 - e, y0 + s // 3 - e, x0 + s // 3 + e, y0 + s // 3 + e], fill=(0, 0, 0))
            d.ellipse(
                [x0 + 2 * s // 3 - e, y0 + s // 3 - e, x0 + 2 * s // 3 + e, y0 + s // 3 + e], fill=(0, 0, 0)
            )
            d.arc(
                [x0 + s // 4, y0 + s // 3, x0 + 3 * s // 4, y0 + 3 * s // 4],
                20,
                160,
                fill=(0, 0, 0),
                width=lw,
            )
    arr = _gray_or_colour(np.asarray(img, dtype=np.float64) / 255, rng, 0.35)
    data, ext = encode(arr, rng) if arr.ndim == 2 else (encode_png(arr), "png")
    return Example(data, f"drawing_{seed}.{ext}", "drawing", "neither")


def _skull_or_limb(rng: np.random.Generator) -> np.ndarray:
    """A procedural non-chest radiograph / slice: a head (bright ring, textured inside) or limb bones."""
    s = int(rng.choice([128, 256, 384]))
    yy, xx = np.mgrid[0:s, 0:s] / s
    img = np.zeros((s, s))
    if rng.random() < 0.5:  # head: skull ring + brain texture
        cy, cx, ry, rx = (
            0.5 + rng.normal(0, 0.03),
            0.5 + rng.normal(0, 0.03),
            rng.uniform(0.3, 0.45),
            rng.uniform(0.25, 0.4),
        )
        r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        tex = _resize(rng.random((12, 12)), s, s)
        img = np.where(r < 0.9, 0.35 + 0.15 * tex, 0.0) + np.where((r >= 0.9) & (r < 1.0), 0.95, 0.0)
        if rng.random() < 0.5:  # ventricles
            img -= 0.25 * (np.sqrt(((yy - cy) / 0.08) ** 2 + ((xx - cx) / 0.04) ** 2) < 1)
    else:  # limb: soft tissue + long bones, sometimes a joint
        n = int(rng.integers(1, 3))
        ang = rng.uniform(-0.4, 0.4)
        u = (xx - 0.5) * np.cos(ang) + (yy - 0.5) * np.sin(ang)
        img += 0.3 * (np.abs(u) < rng.uniform(0.15, 0.3))
        for i in range(n):
            off = (i - (n - 1) / 2) * rng.uniform(0.06, 0.12)
            img += 0.6 * (np.abs(u - off) < rng.uniform(0.02, 0.05))
        if rng.random() < 0.5:
            v = (yy - 0.5) * np.cos(ang) - (xx - 0.5) * np.sin(ang)
            img += 0.5 * (np.sqrt((u / 0.12) ** 2 + (v / 0.08) ** 2) < 1)
    img = gaussian_filter(np.clip(img, 0, 1), 1.5)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)


def _transformed_phantom(seed: int, rng: np.random.Generator) -> np.ndarray:
    """A chest phantom made wrong: a 2 x 2 mosaic, a colour tint, a thin strip or a sideways chest X-ray."""
    from model.data.phantom import make_case

    modality = "CXR" if rng.random() < 0.6 else "CT"
    img = make_case(seed, modality, size=128).image.astype(np.float64)
    kind = rng.integers(0, 4 if modality == "CXR" else 3)
    if kind == 0:
        tiles = [make_case(seed * 4 + i + 1, modality, size=128).image for i in range(3)]
        return np.block([[img, tiles[0]], [tiles[1], tiles[2]]])
    if kind == 1:
        tint = rng.random(3)
        return np.clip(img[..., None] * tint + (1 - tint) * rng.uniform(0, 0.4), 0, 1)
    if kind == 2:
        long, short = int(rng.integers(300, 1500)), int(rng.integers(8, 40))
        return _resize(img, long, short) if rng.random() < 0.5 else _resize(img, short, long)
    return np.rot90(img, 1 if rng.random() < 0.5 else 3)


def _body(split: str) -> Callable[[int, np.random.Generator], Example]:
    files = BODY_DICOM_TRAIN if split == "train" else BODY_DICOM_TEST

    def make(seed: int, rng: np.random.Generator) -> Example:
        hint = str(rng.choice(["CT", "CXR"]))
        r = rng.random()
        if r < 0.4:  # a real non-chest DICOM, loaded as the user forced it (like --modality)
            from pydicom.data import get_testdata_file

            from model.data.imaging import ImageLoadError, load_study

            name = files[seed % len(files)]
            path = get_testdata_file(name, download=False)
            if path is not None:
                data = Path(path).read_bytes()
                if seed % 1_000_000 < len(files) * 2:  # each file twice as is, then augmented copies
                    return Example(data, name, "body", "neither", hint)
                try:
                    px = load_study(data, name, modality_hint=hint).pixels
                except ImageLoadError:
                    px = _skull_or_limb(rng)
                img = augment_positive(px, rng)
                return Example(encode(img, rng)[0], f"body_{name}_{seed}.png", "body", "neither")
        img = _skull_or_limb(rng) if r < 0.7 else _transformed_phantom(seed, rng)
        data, ext = encode(img, rng) if img.ndim == 2 else (encode_png(img), "png")
        return Example(
            data,
            f"body_{seed}.{ext}",
            "body",
            "neither",
            hint if img.ndim == 2 and rng.random() < 0.3 else None,
        )

    return make


def _wrong_modality(seed: int, rng: np.random.Generator) -> Example:
    """A chest X-ray phantom whose DICOM header says CT, or a CT phantom whose header says DX."""
    from model.data.phantom import make_case

    true = "CXR" if seed % 2 == 0 else "CT"
    img = augment_positive(make_case(seed, true, size=256).image, rng)
    tag = "CT" if true == "CXR" else "DX"
    return Example(dicom_bytes(img, tag, seed), f"wrong_{true.lower()}_{seed}.dcm", WRONG_MODALITY, true)


# ----------------------------------------------------------------------------------------------
# Registry


def generators(split: str) -> dict[str, Callable[[int, np.random.Generator], Example]]:
    """family -> make(seed, rng) for one split ("train" | "calib" | "test"); shared-data families only
    when ../shared/data is present."""
    real_split = "train" if split == "train" else "valid"
    out: dict[str, Callable] = {
        "phantom_cxr": _phantom("CXR"),
        "phantom_ct": _phantom("CT"),
        "ct_small": _ct_small,
    }
    if shared_files("nih", real_split):
        nih = _shared("nih", "CXR", "nih_cxr")
        out["nih_cxr"] = lambda seed, rng: nih(seed, rng, real_split)
    if shared_files("ct", real_split):
        ct = _shared("ct", "CT", "real_ct")
        out["real_ct"] = lambda seed, rng: ct(seed, rng, real_split)
    out |= {
        "noise": _noise,
        "flat": _flat,
        "gradient": _gradient,
        "scene": _scene,
        "text": _text,
        "body": _body("train" if split == "train" else "test"),
        "drawing": _drawing,
        WRONG_MODALITY: _wrong_modality,
    }
    return out


#: seed offsets keep the three splits apart (phantom seeds included)
SPLIT_OFFSETS = {"train": 0, "calib": 1_000_000, "test": 2_000_000}


def examples(family: str, split: str, n: int) -> Iterator[Example]:
    """``n`` deterministic examples of a family for a split."""
    make = generators(split)[family]
    base = SPLIT_OFFSETS[split]
    for i in range(n):
        # real files are indexed from 0 in their own split folder; procedural seeds are offset per split
        seed = i if family in ("nih_cxr", "real_ct", "ct_small") else base + i
        rng = np.random.default_rng([_family_code(family), base, i])
        yield make(seed, rng)


def _family_code(family: str) -> int:
    """A stable integer per family (Python's hash() is salted per process)."""
    return int.from_bytes(family.encode()[:8].ljust(8, b"\0"), "little") % 2**31
