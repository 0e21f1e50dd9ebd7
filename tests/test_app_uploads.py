"""AppTest (headless Streamlit) for uploads on Compare: hostile names render as text, a rejected upload
is never answered by another study, uploads survive a page switch, and sessions never see each other's.
"""

from __future__ import annotations

import io
import re

import numpy as np

RLO, RLM = "\u202e", "\u200f"

# Names from the user test and worse; each must read as text wherever it is shown.
HOSTILE = {
    "link": "[Re-upload here](https:example.com).png",
    "js": "[click](javascript:alert(1)).png",
    "html": "<img src=x onerror=alert(1)><b>bold</b>.png",
    "autolink": "www.example.com mail@example.com.png",
    "directives": ":red[alarm] :material/block: $x^2$.png",
    "rtl": f"invoice{RLO}gnp.exe{RLM}.png",
    "long": "A" * 500 + ".png",
}


def _png(seed: int) -> bytes:
    """A phantom chest X-ray (what the models and the input guard expect), as PNG bytes."""
    from PIL import Image

    from model.data.phantom import make_case

    img = (make_case(seed, "CXR", size=96).image * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _reports(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if "md-report" in e.proto.body]


def _markdown_texts(at) -> list[str]:
    """Every string the page renders as Markdown (alerts, text, captions, image captions, table cells)."""
    texts = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
             for e in getattr(at, kind)]  # fmt: skip
    texts += [c for e in at.get("image") for c in e.captions]
    texts += [e.label for e in at.expander]
    for table in at.table:
        texts += [str(v) for v in np.asarray(table.value).ravel()]
    return [str(t) for t in texts]


# Markup that must never form from a name (a backslash before the character makes it literal text).
LIVE = {
    "link": re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\s*(?<!\\)\("),
    "html tag": re.compile(r"(?<!\\)<\s*/?\s*[A-Za-z]"),
    "javascript: url": re.compile(r"javascript(?<!\\):"),
    "autolink": re.compile(r"www(?<!\\)\.example|example(?<!\\)\.com|mail(?<!\\)@"),
    "directive": re.compile(r"(?<!\\):red(?<!\\)\[|(?<!\\)\$x"),
}


#: Words only the hostile names bring onto the page: the texts holding them are the ones checked.
MARKERS = ("upload here", "onerror", "javascript", "example", "alarm", "invoice", "AAAAA")


def _assert_shown_as_text(at) -> None:
    texts = [t for t in _markdown_texts(at) if any(m in t for m in MARKERS)]
    assert len(texts) >= 2  # not vacuous: names are on the page
    for text in texts:
        for what, pattern in LIVE.items():
            assert not pattern.search(text), f"live {what} in {text!r}"
        assert RLO not in text and RLM not in text
        assert "A" * 61 not in text  # 500-character names are shortened
    options = at.selectbox(key="cmp_study").options  # plain text (selectbox options are not Markdown)
    assert all(RLO not in o and len(o) <= len("Upload: ") + 60 for o in options)


def test_hostile_names_render_as_text_everywhere(make_app):
    app = make_app().run()
    bad = [(name, b"not an image at all " + key.encode(), "image/png") for key, name in HOSTILE.items()]
    good = [(HOSTILE["link"], _png(1), "image/png"), (HOSTILE["rtl"], _png(2), "image/png")]
    good.append((HOSTILE["long"], _png(3), "image/png"))
    app.file_uploader(key="cmp_upload").set_value(bad + good).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == len(bad)  # one error per rejected file, each naming it (escaped)
    assert any("Re\\-upload here" in e for e in errors)
    assert any("invoicegnp\\.exe" in e for e in errors)  # right-to-left override dropped
    long_error = next(e for e in errors if "AAAA" in e)
    assert "…" in long_error and "\\.png" in long_error  # shortened, extension kept
    # the newest good upload is analysed, named in the viewer and on both Grad-CAM overlays
    assert app.selectbox(key="cmp_study").value.startswith("upload:AAAA")
    assert len(_reports(app)) == 2
    _assert_shown_as_text(app)
    # another hostile upload chosen: its name in image captions, escaped
    app.selectbox(key="cmp_study").set_value(next(v for v in _option_values(app) if "Re-upload" in v)).run()
    assert not app.exception
    captions = [c for e in app.get("image") for c in e.captions]
    expected = "\\[Re\\-upload here\\]\\(https\\:\u2060example\\.com\\)\\.png · "  # word joiner: no autolink
    assert any(c.startswith(expected) for c in captions)
    _assert_shown_as_text(app)


def _option_values(app) -> list[str]:
    from components.uploads import kept_uploads

    return [f"upload:{r.name}:{r.sha256[:8]}" for r in kept_uploads(app.session_state, "cmp")]


def test_rejected_upload_is_not_answered_by_another_study(make_app):
    app = make_app().run()
    assert len(_reports(app)) == 2  # the default sample
    app.file_uploader(key="cmp_upload").set_value(("scan.dcm", b"\x00" * 200 + b"junk", "application/dicom"))
    app.run()
    assert not app.exception
    assert any("scan\\.dcm" in e.value for e in app.error)
    assert app.selectbox(key="cmp_study").value is None
    assert _reports(app) == [] and not app.get("image")  # no viewer, no reports, no overlays
    # a rerun for an unrelated control keeps it that way (the error is still on screen)
    app.sidebar.slider(key="rc_max_tokens").set_value(16).run()
    assert app.selectbox(key="cmp_study").value is None and _reports(app) == []


def test_earlier_upload_stays_labelled_when_a_new_one_is_rejected(make_app):
    app = make_app().run()
    app.file_uploader(key="cmp_upload").set_value(("first.png", _png(4), "image/png")).run()
    app.file_uploader(key="cmp_upload").set_value(
        [("first.png", _png(4), "image/png"), ("second.png", b"broken", "image/png")]
    ).run()
    assert not app.exception
    # the earlier upload stays on show, clearly labelled as not the rejected file
    assert app.selectbox(key="cmp_study").value.startswith("upload:first.png")
    assert len(_reports(app)) == 2
    assert any("Upload\\: first\\.png" in i.value and "not the rejected file" in i.value for i in app.info)
    assert any("second\\.png" in e.value for e in app.error)


def test_upload_survives_a_page_switch(make_app):
    app = make_app().run()
    app.file_uploader(key="cmp_upload").set_value(("kept.png", _png(5), "image/png")).run()
    choice = app.selectbox(key="cmp_study").value
    assert choice.startswith("upload:kept.png")
    app.switch_page("components/pages/metrics.py").run()
    assert not app.exception
    app.switch_page("components/pages/compare.py").run()
    assert not app.exception
    assert app.file_uploader(key="cmp_upload").value in (None, [])  # the widget itself forgot the file
    assert app.selectbox(key="cmp_study").value == choice  # ... the page did not
    assert len(_reports(app)) == 2
    assert any(c.startswith("kept\\.png · ") for e in app.get("image") for c in e.captions)
    # a new upload after coming back is added beside it, and removing it forgets only it
    app.file_uploader(key="cmp_upload").set_value(("new.png", _png(6), "image/png")).run()
    assert app.selectbox(key="cmp_study").value.startswith("upload:new.png")
    app.file_uploader(key="cmp_upload").set_value([]).run()
    assert [v.split(":")[1] for v in _option_values(app)] == ["kept.png"]
    assert app.selectbox(key="cmp_study").value is not None and not app.exception


def test_sessions_do_not_see_each_others_uploads(make_app):
    alice, bob = make_app().run(), make_app().run()
    alice.file_uploader(key="cmp_upload").set_value(("alice.png", _png(7), "image/png")).run()
    bob.file_uploader(key="cmp_upload").set_value(("bob.png", _png(8), "image/png")).run()
    alice.run()
    bob.run()
    alice_opts = " ".join(alice.selectbox(key="cmp_study").options)
    bob_opts = " ".join(bob.selectbox(key="cmp_study").options)
    assert "alice.png" in alice_opts and "bob.png" not in alice_opts
    assert "bob.png" in bob_opts and "alice.png" not in bob_opts
    assert alice.selectbox(key="cmp_study").value.startswith("upload:alice.png")
    assert bob.selectbox(key="cmp_study").value.startswith("upload:bob.png")


def test_replaced_upload_then_rejected_shows_no_sample(make_app):
    """The uploader's files replaced by a bad one: the earlier upload is gone, and no sample steps in."""
    app = make_app().run()
    app.file_uploader(key="cmp_upload").set_value(("good.png", _png(9), "image/png")).run()
    assert app.selectbox(key="cmp_study").value.startswith("upload:good.png")
    app.file_uploader(key="cmp_upload").set_value(("bad.png", b"broken", "image/png")).run()
    assert not app.exception
    assert app.selectbox(key="cmp_study").value is None
    assert _reports(app) == [] and not any("Showing" in i.value for i in app.info)


def test_each_upload_is_hashed_and_sniffed_once_per_run(make_app, monkeypatch):
    """The page hashes and sniffs an upload's bytes once and passes both down: the loader, the byte cache
    and the study picker neither hash nor sniff them again (issue 9)."""
    import hashlib

    from model.data import imaging

    data = _png(6)
    calls = {"sha256": 0, "sniff": 0}
    real_sha, real_sniff = hashlib.sha256, imaging.sniff

    def sha256(*args, **kwargs):
        calls["sha256"] += bool(args) and bytes(args[0]) == data
        return real_sha(*args, **kwargs)

    def sniff(raw):
        calls["sniff"] += bytes(raw) == data
        return real_sniff(raw)

    app = make_app().run()
    monkeypatch.setattr(hashlib, "sha256", sha256)
    monkeypatch.setattr(imaging, "sniff", sniff)
    app.file_uploader(key="cmp_upload").set_value(("once.png", data, "image/png")).run()
    assert not app.exception
    assert app.selectbox(key="cmp_study").value.startswith("upload:once.png")  # loaded and analysed
    assert len(_reports(app)) == 2
    assert calls == {"sha256": 1, "sniff": 1}
