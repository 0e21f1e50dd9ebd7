"""components.escaping + model.data.imaging.display_name: hostile names read as text, everywhere.

``md`` is checked with a real CommonMark renderer (markdown-it-py, HTML enabled as in the worst case):
whatever the input, the output holds no link, image or tag, and its text is exactly the input's.
"""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from components.escaping import md, md_error, md_name, plain_name
from model.data.errors import MAX_NAME_CHARS, CorruptImageError, display_name

RLO, RLM, ZWSP, JOINER = "\u202e", "\u200f", "\u200b", "\u2060"

HOSTILE_NAMES = [
    "[Re-upload here](https:example.com).png",
    "[x](javascript:alert(1)).png",
    "![img](http://example.com/a.png).png",
    "<img src=x onerror=alert(1)><b>bold</b>.png",
    "<https://example.com>.png",
    "<script>alert('x')</script>.dcm",
    "javascript:alert(document.cookie).jpg",
    "www.example.com and mail@example.com.png",
    "**bold** _it_ `code` ~~strike~~ # head.png",
    ":red[alarm] :material/block: $x^2$ &lt;b&gt; &#x202E;.png",
    f"invoice{RLO}gnp.exe",
    f"a{RLM}b{ZWSP}c\n# heading\r\n- item\t.png",
    "1. ordered.png",
    "> quote | table | row.png",
    "back\\slash\\\\[not a link](x).png",
    "A" * 500 + ".png",
]

_RENDER = MarkdownIt("commonmark", {"html": True})


def _text_of(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_md_renders_as_exactly_its_text(name):
    shown = plain_name(name)
    rendered = _RENDER.render(md(shown))
    assert "<a " not in rendered and "<img" not in rendered
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", rendered))
    assert tags <= {"p"}, (name, rendered)  # one paragraph, nothing else: no heading, list, code, html
    assert _text_of(rendered).replace(JOINER, "") == shown


# GFM's literal autolinks, as remark-gfm finds them in the text *after* escapes are resolved.
GFM_LITERAL = {
    "www": re.compile(r"www\.", re.IGNORECASE),
    "scheme": re.compile(r"(?:https?|ftp|mailto|xmpp)://|(?:mailto|xmpp):[-.+\w]", re.IGNORECASE),
    "email": re.compile(r"[-.+\w]+@[-\w]+(?:\.[-\w]+)+"),
}


@pytest.mark.parametrize(
    "text",
    ["www.example.com", "WWW.Example.org/x", "mail@example.com", "https://example.com", "ftp://a.b",
     "mailto:a@b.c", "see http://x.y and www.z.w now"],
)  # fmt: skip
def test_md_breaks_gfm_literal_autolinks(text):
    assert any(p.search(text) for p in GFM_LITERAL.values())  # the pattern is there before
    seen = _text_of(_RENDER.render(md(text)))  # what the autolink pass would scan
    for what, pattern in GFM_LITERAL.items():
        assert not pattern.search(seen), (what, seen)
    assert seen.replace(JOINER, "") == text  # and it still reads the same


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_plain_name_is_printable_short_and_a_basename(name):
    shown = plain_name(name)
    assert len(shown) <= MAX_NAME_CHARS
    assert not any(ch in shown for ch in (RLO, RLM, ZWSP, "\n", "\r", "\t"))
    assert "\\" not in shown or name.startswith("back")  # only a basename survives


def test_long_names_keep_start_and_extension():
    shown = display_name("chest_" + "x" * 480 + "_final.dcm")
    assert len(shown) == MAX_NAME_CHARS
    assert shown.startswith("chest_xxx") and shown.endswith("_final.dcm") and "…" in shown
    assert display_name("short.png") == "short.png"


def test_display_name_basename_and_invisible_characters():
    assert display_name("C:\\fakepath\\scan.dcm") == "scan.dcm"
    assert display_name("/tmp/dir/scan.dcm") == "scan.dcm"
    assert display_name(f"invoice{RLO}gnp.exe") == "invoicegnp.exe"
    assert display_name("  two   spaces\tand\ttabs.png ") == "two spaces and tabs.png"


def test_md_name_of_the_user_test_file():
    assert md_name("[Re-upload here](https:example.com).png") == (
        f"\\[Re\\-upload here\\]\\(https\\:{JOINER}example\\.com\\)\\.png"
    )


def test_md_error_shows_user_sentences_and_hides_bugs(caplog):
    assert md_error(CorruptImageError("'a.png' is damaged.")) == "'a\\.png' is damaged\\."
    text = md_error(ZeroDivisionError("division by zero"), "a step")
    assert "ZeroDivisionError" not in text and "division" not in text
    assert "server log" in text
    assert "ZeroDivisionError" in caplog.text  # the details went to the log


def test_cli_error_names_the_file_cleanly(tmp_path, capsys):
    """`meddistill predict` prints the loader's message: the shown name, no bidi override, no class name."""
    from model.cli import main

    bad = tmp_path / (f"[x](javascript:alert(1)){RLO}" + "B" * 200 + ".png")  # 255-byte file-name limit
    bad.write_bytes(b"not an image")
    assert main(["predict", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a PNG, JPEG or DICOM file" in err and "…" in err
    assert RLO not in err and "B" * 61 not in err
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", err)
