"""Why an image could not be loaded: one error family, and how messages name a file.

``str(err)`` is a sentence for the user that names the file, the problem and what to do.
"""

from __future__ import annotations

import unicodedata


class ImageLoadError(ValueError):
    """Any reason an image could not be loaded."""


class UnsupportedFormatError(ImageLoadError):
    """Not a PNG, JPEG or DICOM file."""


class NoPixelDataError(UnsupportedFormatError):
    """A DICOM file without an image in it (report, plan, header only...)."""


class CorruptImageError(ImageLoadError):
    """Truncated, damaged or undecodable content."""


class ImageTooLargeError(ImageLoadError):
    """Over the byte or pixel limits (decompression bombs included)."""


class UnsupportedModalityError(ImageLoadError):
    """A DICOM modality other than chest X-ray or CT, with no modality_hint."""


class MissingDecoderError(ImageLoadError):
    """A compressed DICOM transfer syntax whose decoder plugin is not installed."""


#: Longest file name shown in messages and captions; longer names keep their start and their extension.
MAX_NAME_CHARS = 60
_NAME_TAIL = 16  # characters kept from the end of a shortened name (the extension and a little more)
_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}  # controls, bidi marks/overrides, private, unassigned


def display_name(name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """How a file name is shown anywhere (messages, captions, CLI): a basename, printable, not too long.

    Browsers may send ``C:\\fakepath\\x.dcm``; names may carry control characters, right-to-left overrides
    that make ``gpj.exe`` read as ``exe.jpg``, or run to hundreds of characters. This drops the invisible
    characters, collapses white space and shortens the middle (``start…end.png``). It does not escape
    Markdown or HTML: the dashboard does that where it renders (``components.escaping``).
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    kept = (ch for ch in base if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)
    base = " ".join("".join(kept).split())  # tabs, newlines and runs of spaces -> one space
    if len(base) > max_chars:
        tail = min(_NAME_TAIL, max_chars // 3)
        base = base[: max_chars - tail - 1].rstrip() + "…" + base[-tail:].lstrip()
    return base


def quoted(name: str) -> str:
    """How messages name a file."""
    return f"'{name}'" if name else "The file"
