"""Showing user-supplied text (upload names, DICOM values, loader messages) as the characters it holds.

Streamlit renders GitHub-flavoured Markdown plus its own directives (``:red[...]``, ``:material/icon:``,
``$LaTeX$``) in ``st.markdown``, alerts, captions, image captions, table cells, expander and widget
labels. A file named ``[Re-upload here](https:example.com).png`` would put a live link in an error box.
Every place that shows such text goes through this module:

- :func:`md` for Markdown-rendering elements: ASCII punctuation is backslash-escaped (CommonMark lets
  any of it be escaped, and an escaped character is always literal text), so no
  link, image, emphasis, HTML tag, entity, directive or formula can form; line breaks become spaces
  (no headings or lists). GFM's *literal* autolinks (``www.x.y``, ``https://x``, ``a@b.c``) are found
  in the text after escapes are resolved (checked in Chromium: an escaped ``www.example.com`` still
  became a link), so they are broken with an invisible WORD JOINER (U+2060) inside ``www``, after ``:`` of
  ``scheme://`` / ``mailto:`` and after ``@``.
- :func:`plain_name` for elements that show plain text (selectbox options, ``st.html`` after
  ``html.escape``): the name the loader uses in its messages, without invisible characters
  (right-to-left overrides...) and shortened in the middle when long.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from model.data.imaging import display_name

log = logging.getLogger(__name__)

#: CommonMark's escapable ASCII punctuation, less , ; ? % ' " (they start no construct on their own)
_PUNCTUATION = re.compile(r"""([!#$&()*+\-./:<=>@\[\\\]^_`{|}~])""")
_JOINER = "\u2060"  # WORD JOINER: invisible, no line break; splits GFM's literal autolink patterns
_AUTOLINK_WWW = re.compile(r"www(?=\.)", re.IGNORECASE)
_AUTOLINK_SCHEME = re.compile(r"(?:https?|ftp|mailto|xmpp)\\:", re.IGNORECASE)  # on escaped text: "http\:"
_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}  # controls, bidi overrides, zero-width characters


def md(text: object) -> str:
    """Any user-supplied text -> Markdown that renders exactly that text (on one line)."""
    visible = (ch for ch in str(text) if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)
    flat = " ".join("".join(visible).split())
    flat = _AUTOLINK_WWW.sub(lambda m: m.group(0)[:2] + _JOINER + m.group(0)[2], flat)
    escaped = _PUNCTUATION.sub(r"\\\1", flat)
    escaped = _AUTOLINK_SCHEME.sub(lambda m: m.group(0) + _JOINER, escaped)
    return escaped.replace("\\@", "\\@" + _JOINER)


def plain_name(name: str) -> str:
    """An upload's name for plain-text places: basename, printable, at most ~60 characters."""
    return display_name(name)


def md_name(name: str) -> str:
    """An upload's name for Markdown places: :func:`plain_name`, escaped."""
    return md(plain_name(name))


def md_error(err: BaseException, what: str = "") -> str:
    """An exception for the page: its own sentence when it is written for users, else a plain line.

    The loader's and the checkpoint code's errors are user-facing sentences (file, problem, what to do);
    anything else is a bug whose class name and text mean nothing to a user: it goes to the server log
    (with its traceback) and the page says so.
    """
    from model.checkpoints import CheckpointError
    from model.data.imaging import ImageLoadError

    if isinstance(err, (ImageLoadError, CheckpointError)):
        return md(err)
    log.error("%s failed", what or "a dashboard step", exc_info=err)
    return "an unexpected internal error (the details are in the server log)"
