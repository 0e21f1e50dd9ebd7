"""A report before and after an update, the change highlighted word by word (HTML for ``st.html``).

``report_diff_html`` is pure (no Streamlit): ``difflib.SequenceMatcher`` over whitespace-separated words;
removed words are struck through in red, added words underlined in green, and every word is
``html.escape``d first, so a report (model output or a reviewer's text) can never inject markup.
"""

from __future__ import annotations

import difflib
import html

DEL_STYLE = "background:#fde2e1;color:#8a1c12;text-decoration:line-through"
INS_STYLE = "background:#dcf5e3;color:#0f5a2a;text-decoration:underline"


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """``[(op, text)]`` with op "same" | "removed" | "added", covering both texts in reading order."""
    a, b = (before or "").split(), (after or "").split()
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("same", " ".join(a[i1:i2])))
            continue
        if tag in ("replace", "delete"):
            out.append(("removed", " ".join(a[i1:i2])))
        if tag in ("replace", "insert"):
            out.append(("added", " ".join(b[j1:j2])))
    return out


def report_diff_html(before: str, after: str) -> str:
    """One paragraph: the words both reports share plain, removed ones struck out, added ones marked."""
    parts = []
    for op, text in word_diff(before, after):
        t = html.escape(text)
        if op == "removed":
            parts.append(f'<del style="{DEL_STYLE}" title="removed">{t}</del>')
        elif op == "added":
            parts.append(f'<ins style="{INS_STYLE}" title="added">{t}</ins>')
        else:
            parts.append(t)
    body = " ".join(parts) if parts else "<em>(empty)</em>"
    return f'<p style="line-height:1.6;margin:0">{body}</p>'


def changed(before: str, after: str) -> bool:
    """True when the two reports differ in any word."""
    return (before or "").split() != (after or "").split()
