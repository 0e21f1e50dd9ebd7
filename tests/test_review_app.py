"""Reviewing on the Compare page (AppTest, issue 14): save a review and see "reviewed", idempotent saves,
labels that rewrite both reports, "more detail", refused drafts, escaping, store failures, refused images.

Each test points ``MEDDISTILL_DATA_DIR`` at its own folder, so nothing touches the repository's store.
"""

from __future__ import annotations

import html

import pytest

from model.guard import GUARD_DIR

TIMEOUT = 180  # seconds per AppTest run (conftest.make_app reads it)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    d = tmp_path / "userdata"
    monkeypatch.setenv("MEDDISTILL_DATA_DIR", str(d))
    monkeypatch.delenv("MEDDISTILL_DB_URL", raising=False)
    return d


@pytest.fixture(autouse=True)
def review_open(monkeypatch):
    """The tests below review: "Review this case" starts open (a user opens it; closed, nothing is drawn)."""
    monkeypatch.setattr("components.review_view.REVIEW_OPEN_AT_START", True)


def _w(at, kind: str, suffix: str):
    """The one widget of ``kind`` whose key starts with "rv_" and ends with ``suffix``."""
    found = [w for w in getattr(at, kind) if w.key and w.key.startswith("rv_") and w.key.endswith(suffix)]
    assert len(found) == 1, (suffix, [w.key for w in getattr(at, kind)])
    return found[0]


def _reviewed(at) -> bool:
    return any("reviewed" in m.value and "badge" in m.value for m in at.markdown)


def _text(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [s.value for s in at.success]
    parts += [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def _review_reports(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if "md-review-report" in e.proto.body]


def _store():
    from model.review import ReviewStore

    return ReviewStore.open(create=False)


def test_save_a_review_then_see_reviewed_and_save_again_changes_nothing(app, make_app, data_dir):
    app.run()
    assert not app.exception
    assert not _reviewed(app) and not data_dir.exists()  # a page view creates no store
    draft = _w(app, "text_area", "_draft")
    assert draft.value.strip()  # prefilled with the teacher's report
    note = "[click me](https://example.com) **bold** <b>x</b>"
    _w(app, "text_area", "_note").set_value(note).run()
    _w(app, "button", "_save").click().run()
    assert not app.exception
    assert any("Review saved" in s.value for s in app.success), [e.value for e in app.error] + [
        w.value for w in app.warning
    ]
    assert _reviewed(app)
    store = _store()
    assert store.count() == 1
    (review,) = store.list_reviews()
    assert review.note == note and review.report_text == draft.value.strip()
    assert set(review.outputs) == {"teacher", "student"} and review.model_version is None  # env weights
    assert len(review.findings) == 7 or review.tumour is not None
    assert (data_dir / "images" / f"{review.image_sha256}.png").is_file()
    # the note is shown as the characters it holds: no link, no bold, no tag
    shown = next(c.value for c in app.caption if "note:" in c.value)
    assert "\\[click me\\]" in shown and "\\*\\*bold\\*\\*" in shown and "\\<b\\>" in shown
    _w(app, "button", "_save").click().run()  # the same review again: the same id, no new row
    assert not app.exception and _store().count() == 1
    other = make_app()  # another browser session on the same study sees the badge at once
    other.run()
    assert not other.exception and _reviewed(other)


def test_empty_and_absurd_text_are_refused_with_a_sentence(app, data_dir):
    app.run()
    _w(app, "text_area", "_draft").set_value("   ").run()
    _w(app, "button", "_save").click().run()
    assert not app.exception
    assert any("report text is empty" in e.value for e in app.error)
    _w(app, "text_area", "_draft").set_value("word " * 20_000).run()  # 100k characters
    _w(app, "button", "_save").click().run()
    assert any("characters long" in e.value for e in app.error)
    _w(app, "text_area", "_draft").set_value("..... !!!").run()
    _w(app, "button", "_save").click().run()
    assert any("no words" in e.value for e in app.error)
    assert not _reviewed(app) and not (data_dir / "meddistill.sqlite").exists()


def test_toggled_labels_rewrite_both_reports_and_the_draft_follows(app, data_dir):
    app.run()
    assert _review_reports(app) == []  # unedited: the model columns hold the reports
    toggles = [t for t in app.toggle if t.key and t.key.startswith("rv_") and "_f_" in t.key]
    assert len(toggles) == 7
    off = [t for t in toggles if not t.value]
    target = off[0] if off else toggles[0]
    name = target.key.split("_f_", 1)[1]
    target.set_value(not target.value).run()
    assert not app.exception
    assert len(_review_reports(app)) == 2  # teacher and student, from the edited labels
    after = _w(app, "text_area", "_draft").value
    assert html.escape(after) in _review_reports(app)[0]  # the draft is the teacher's rewritten report
    if (
        off
    ):  # more detail on the finding just switched on: both models answer (sentences, or that they have none)
        from model.types import FINDING_LABELS

        _w(app, "selectbox", "_detail_target").set_value(name).run()
        _w(app, "button", "_detail_btn").click().run()
        assert not app.exception
        answers = [m.value for m in app.markdown if "detailed:" in m.value]
        answers += [c.value for c in app.caption if "says nothing about this finding" in c.value]
        assert len(answers) == 2, (FINDING_LABELS[name], _text(app))
    # the reviewer's own text stays when labels change again
    _w(app, "text_area", "_draft").set_value("My own report.").run()
    _w(app, "toggle", f"_f_{name}").set_value(False).run()
    assert _w(app, "text_area", "_draft").value == "My own report."


def test_store_that_cannot_be_created_says_so_and_the_page_keeps_working(app, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDDISTILL_DATA_DIR", str(blocker / "userdata"))
    app.run()
    _w(app, "button", "_save").click().run()
    assert not app.exception
    errors = [e.value for e in app.error if "not saved" in e.value]
    assert errors and "Traceback" not in errors[0] and "sqlalchemy" not in errors[0].lower()
    assert len([b for b in app.get("html") if "md-report" in b.proto.body]) == 2  # reports still there


def test_newer_schema_is_named_and_nothing_is_written(app, data_dir):
    from sqlalchemy import insert

    from model.review import ReviewStore
    from model.review import schema as S

    store = ReviewStore.open()
    with store.engine.begin() as conn:
        conn.execute(
            insert(S.schema_version).values(version=S.LATEST_SCHEMA + 5, description="future", applied_at="x")
        )
    store.close()
    app.run()
    assert not app.exception
    assert any("newer" in e.value for e in app.error), _text(app)
    _w(app, "button", "_save").click().run()
    assert not app.exception and any("not saved" in e.value for e in app.error)


@pytest.mark.skipif(not (GUARD_DIR / "model.safetensors").is_file(), reason="no shipped guard")
def test_a_refused_image_cannot_be_reviewed(app, data_dir):
    from model.guard.families import NEGATIVE_FAMILIES, examples

    ex = next(iter(examples(NEGATIVE_FAMILIES[0], "test", 1)))
    app.run()
    app.file_uploader(key="cmp_upload").set_value((ex.name, ex.data, "application/octet-stream")).run()
    assert not app.exception
    assert any("cannot be reviewed" in i.value for i in app.info)
    assert not [w for w in app.button if w.key and w.key.startswith("rv_")]
    anyway = next(c for c in app.checkbox if c.key and c.key.startswith("cmp_anyway_"))
    anyway.check().run()  # shown anyway: still no review
    assert any("cannot be reviewed" in i.value for i in app.info)
    assert not [w for w in app.button if w.key and w.key.startswith("rv_")]
    assert not _reviewed(app)


def test_a_locked_database_says_so_and_nothing_is_lost(app, data_dir):
    """Another writer holds the database: the save waits the store's lock timeout, then says so."""
    import sqlite3

    from model.review import ReviewStore

    ReviewStore.open().close()  # the store exists (version 1 registered)
    app.run()
    _w(app, "text_area", "_note").set_value("first").run()
    _w(app, "button", "_save").click().run()
    assert any("Review saved" in s.value for s in app.success)
    holder = sqlite3.connect(data_dir / "meddistill.sqlite", timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        _w(app, "text_area", "_note").set_value("second").run()
        _w(app, "button", "_save").click().run()
        assert not app.exception
        errors = [e.value for e in app.error if "not saved" in e.value]
        assert errors and "lock" in errors[0].lower(), _text(app)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _w(app, "button", "_save").click().run()  # the lock is gone: the same draft saves now
    assert any("Review saved" in s.value for s in app.success)
    assert sorted(r.note for r in _store().list_reviews()) == ["first", "second"]


def test_report_boxes_escape_markup():
    from components.review_view import report_box_html

    out = report_box_html('<img src=x onerror="alert(1)"> & [link](https://x.y)')
    assert "<img" not in out and "&lt;img" in out and "&amp;" in out


def test_closed_review_panel_draws_nothing_and_keeps_what_the_reviewer_set(app, data_dir, monkeypatch):
    """Closed (the default), the panel draws no widget, so an upload's page stays light; opened, closed and
    opened again, the labels, side, severity and note the reviewer set are still there."""
    monkeypatch.setattr("components.review_view.REVIEW_OPEN_AT_START", False)
    app.run()
    assert not app.exception
    (panel,) = [e for e in app.expander if e.label == "Review this case"]
    assert panel.key and panel.key.startswith("rv_")
    assert not [w for w in [*app.text_area, *app.toggle, *app.selectbox] if (w.key or "").startswith("rv_")]

    def set_open(value: bool):
        app.session_state[panel.key] = value  # what the browser sends when the expander is clicked
        app.run()
        assert not app.exception

    set_open(True)
    toggles = [w for w in app.toggle if (w.key or "").startswith("rv_")]
    flipped = next(w for w in toggles if not w.value)  # a finding the teacher did not call
    name = flipped.key.rsplit("_f_", 1)[1]
    flipped.set_value(True).run()
    side = [w for w in app.selectbox if (w.key or "").endswith(f"_side_{name}")]
    if side:
        side[0].set_value("left").run()
    _w(app, "text_area", "_note").set_value("seen on the lateral").run()
    assert not app.exception

    set_open(False)
    assert not [w for w in app.toggle if (w.key or "").startswith("rv_")]
    set_open(True)
    assert _w(app, "toggle", f"_f_{name}").value is True
    if side:
        assert _w(app, "selectbox", f"_side_{name}").value == "left"
    assert _w(app, "text_area", "_note").value == "seen on the lateral"
    assert not data_dir.exists()  # opening and closing saves nothing
