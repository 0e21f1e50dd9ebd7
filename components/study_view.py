"""Getting a study in (upload or sample) and showing it (viewer, window presets, de-identified metadata)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import streamlit as st

from components.escaping import md, md_name, plain_name
from components.samples import Sample, list_samples, load_sample
from components.uploads import forget_uploads, keep_upload, kept_uploads, upload_bytes
from model.types import Study

log = logging.getLogger(__name__)

#: DICOM-ish keys never shown even if a loader lets one through (defence in depth; the loader whitelists).
IDENTIFYING = (
    "patient",
    "name",
    "birth",
    "address",
    "phone",
    "accession",
    "institution",
    "physician",
    "operator",
    "referring",
    "uid",
    "studyid",
    "date",
    "other",
)
ACCEPTED = "PNG, JPEG or DICOM"


@dataclass
class PickedStudy:
    study: Study
    sample: Sample | None  # set when the study is a shipped sample (ground truth may exist)
    key: str  # stable id for caches and widget keys: sha256 of the bytes + frame


def _loader():
    from model.data import imaging

    return imaging


SERVE_MAX_SIDE = 1024  # px: longest side of a cached study (display 768, model inputs 128-512 px)
STUDY_TTL_S = 1800  # s: a study nobody opened for half an hour leaves the cache


def served_study(study: Study, max_side: int = SERVE_MAX_SIDE) -> Study:
    """The study the app keeps and analyses: area-downsampled to ``max_side`` when larger.

    A 40-MP upload would otherwise hold 160 MB of float32 pixels (twice with DICOM raw values) in a
    cache shared by all sessions. Viewer and Grad-CAM overlays show at most 768 px and the models read
    128 px, so nothing visible changes; a note says the study was reduced. Small studies pass unchanged.
    """
    import dataclasses

    h, w = study.pixels.shape
    if max(h, w) <= max_side:
        return study
    pixels = display_pixels(study.pixels, max_side)
    nh, nw = pixels.shape
    raw = None if study.raw is None else display_pixels(study.raw.astype(np.float32, copy=False), max_side)
    spacing = study.pixel_spacing
    if spacing:
        spacing = (spacing[0] * h / nh, spacing[1] * w / nw)
    note = (
        f"Large image ({w}×{h}): shown and analysed at {nw}×{nh} (area-averaged) "
        "to keep the server responsive."
    )
    return dataclasses.replace(
        study, pixels=pixels, raw=raw, pixel_spacing=spacing, warnings=(*study.warnings, note)
    )


@st.cache_data(max_entries=64, ttl=STUDY_TTL_S, show_spinner=False)
def load_study_cached(
    sha: str, name: str, frame: int, hint: str | None, _data: bytes, kind: str | None = None
) -> Study:
    """Parse once per (bytes, frame, modality hint) and keep the served (display-size) copy; raises the
    loader's ImageLoadError (not cached). Bounded by entries, age and ``server.maxCacheDataSize``.
    ``sha`` (and ``kind``, the loader's sniff) of ``_data`` are passed on: the loader neither hashes nor
    sniffs the bytes again."""
    from model.serving import shared_queue

    # decoding is heavy CPU and memory work too: it takes its turn on the inference queue, so eight
    # sessions uploading 40-MP files decode two at a time, not eight (peak memory bounded)
    return shared_queue().run(_load_served, _data, name, frame, hint, sha, kind)


def _load_served(
    data: bytes, name: str, frame: int, hint: str | None, sha: str | None = None, kind: str | None = None
) -> Study:
    from model.serving import release_memory

    study = _loader().load_study(data, name, frame=frame, modality_hint=hint, sha256=sha, kind=kind)
    served = served_study(study)
    if served is not study:
        del study
        release_memory()  # the full-size arrays' pages go back to the OS now, not "some day"
    return served


def try_load(
    data: bytes,
    name: str,
    frame: int = 0,
    plain_modality: str | None = None,
    chosen: str | None = None,
    *,
    sha256: str | None = None,
    kind: str | None = None,
) -> tuple[Study | None, str | None]:
    """(study, None) or (None, user-facing message); never raises.

    ``plain_modality`` says what a PNG/JPEG shows (it carries no modality); DICOM files speak for themselves.
    ``chosen`` is the user's explicit modality for this file: it also loads other DICOM modalities (best effort).
    ``sha256`` / ``kind``: the bytes' digest and ``sniff`` when the caller has them (see ``upload_identity``).
    """
    try:
        sha = sha256 or hashlib.sha256(data).hexdigest()
        kind = kind or _loader().sniff(data)
        hint = plain_modality if plain_modality and kind in ("png", "jpeg") else None
        hint = chosen or hint
        return load_study_cached(sha, name, frame, hint, data, kind), None
    except _loader().ImageLoadError as err:
        return None, str(err)
    except Exception as err:  # a loader bug must not take the page down; no exception text on the page
        log.error("unexpected loader failure on an upload (%s)", type(err).__name__)
        shown = f"'{plain_name(name)}'" if plain_name(name) else "This file"
        return None, (
            f"{shown} could not be read: the loader hit an unexpected problem with it. Export it again as "
            "PNG or DICOM and upload the new copy; if that fails too, report it."
        )


def upload_identity(data: bytes) -> tuple[str, str]:
    """(sha256 hex digest, ``sniff`` kind) of file bytes: computed once per file and passed down to the
    loader, the byte cache (``KeptUpload``) and the widget keys."""
    return hashlib.sha256(data).hexdigest(), _loader().sniff(data)


def study_picker_ui(key: str = "cmp") -> PickedStudy | None:
    """Upload several files or pick a sample; bad uploads get an error each; returns the chosen study.

    Accepted uploads are kept for the session (components.uploads), so they survive a page switch.
    When the newest upload is rejected, nothing is picked (None) unless an earlier upload was on show (it
    stays, labelled as not the rejected file): a sample's reports must not pass for an answer to it.
    """
    fresh_visit = f"{key}_upload" not in st.session_state  # the uploader forgot its files (page switch)
    uploads = st.file_uploader(
        f"Upload studies ({ACCEPTED}; several at once)",
        accept_multiple_files=True,
        key=f"{key}_upload",
        help="Files stay in this browser session only. DICOM identifiers are never shown or stored.",
    )
    plain = None  # no global switch: the input guard detects each study's modality (override per study)
    rejected = _check_uploads(uploads or [], key, plain, fresh_visit)
    options: dict[str, tuple[str, object]] = {}
    for rec in kept_uploads(st.session_state, key):
        options[f"upload:{rec.name}:{rec.sha256[:8]}"] = (f"Upload: {rec.name}", ("upload", rec))
    opened: Sample | None = st.session_state.get(f"{key}_opened")  # set by "open in compare" elsewhere
    if opened is not None:
        options[f"opened:{opened.id}"] = (f"Opened: {opened.title}", ("opened", opened))
    for sid, title in list_samples().items():
        options[f"sample:{sid}"] = (f"Sample: {title}", ("sample", sid))
    if not options:
        st.info("No samples are shipped yet: upload a study to begin.")
        return None

    # A fresh upload becomes the selection; a freshly rejected one clears it; otherwise keep the user's
    # choice (or an opened case). The selectbox forgets its value on a page switch: keep_key remembers it.
    pick_key, keep_key = f"{key}_study", f"{key}_study_kept"
    if pick_key not in st.session_state:
        st.session_state[pick_key] = st.session_state.get(keep_key)
    upload_keys = [k for k in options if k.startswith("upload:")]
    seen_key = f"{key}_seen_uploads"
    seen = st.session_state.setdefault(seen_key, [])
    new = [k for k in upload_keys if k not in seen]
    if new:
        st.session_state[pick_key] = new[-1]
        st.session_state[seen_key] = seen + new
    elif rejected.fresh and st.session_state.get(pick_key) not in upload_keys:
        st.session_state[pick_key] = None  # a sample must not pass for the answer; an earlier upload stays
    elif opened is not None and st.session_state.pop(f"{key}_opened_new", False):
        st.session_state[pick_key] = f"opened:{opened.id}"
    value = st.session_state.get(pick_key)
    if (value is None and not rejected.names) or (value is not None and value not in options):
        st.session_state[pick_key] = next(iter(options))  # None stays while a rejected file is up
    choice = st.selectbox(
        "Study",
        list(options),
        format_func=lambda k: options[k][0],
        key=pick_key,
        placeholder="Choose a study or upload another file",
    )
    st.session_state[keep_key] = choice
    if choice is None:
        st.info(
            "No study is analysed: the upload above was rejected. Upload another file, or choose a study "
            "from the list.",
            icon=":material/info:",
        )
        return None

    kind, *rest = options[choice][1]
    sample, modality = None, plain
    if kind in ("sample", "opened"):
        sample = load_sample(rest[0]) if kind == "sample" else rest[0]
        data, name, modality = sample.data, sample.name, sample.modality
    else:
        data, name = upload_bytes(rest[0]), rest[0].name
        if data is None:  # the shared byte cache let it go (many uploads since)
            st.warning(
                f"**{md_name(name)}** is no longer held by the server (many uploads since). Upload it "
                "again to analyse it.",
                icon=":material/history:",
            )
            forget_uploads(st.session_state, key, {rest[0].sha256})
            return None
    if rejected.names:
        st.info(
            f"Showing **{md(options[choice][0])}**, not the rejected "
            f"{'files' if len(rejected.names) > 1 else 'file'} above.",
            icon=":material/info:",
        )
    sha, file_kind = (rest[0].sha256, rest[0].kind) if kind == "upload" else upload_identity(data)
    chosen = chosen_modality(key, sha)
    study, err = try_load(data, name, plain_modality=modality, chosen=chosen, sha256=sha, kind=file_kind)
    if err:  # samples and kept uploads get here (new uploads were checked above)
        st.error(md(err), icon=":material/block:")
        return None
    if study.n_frames > 1:
        frame = st.slider("Frame", 0, study.n_frames - 1, 0, key=f"{key}_frame")
        study, err = try_load(
            data, name, frame, plain_modality=modality, chosen=chosen, sha256=sha, kind=file_kind
        )
        if err:
            st.error(md(err), icon=":material/block:")
            return None
    study = guard_study_ui(study, key, chosen)
    for w in study.warnings:
        st.caption(f":material/info: {md(w)}")
    return PickedStudy(
        study=study, sample=sample, key=f"{study.sha256}:{study.modality}:{study.window}:{choice}"
    )


#: the per-study modality choice: "auto" = the DICOM header, else what the guard detects
MODALITY_CHOICES = ("auto", "CXR", "CT")


def _modality_key(key: str, sha: str) -> str:
    return f"{key}_modality_{sha[:16]}"


def chosen_modality(key: str, sha: str) -> str | None:
    """The user's explicit modality for a file ("CXR" | "CT"), or None (header / detection decides)."""
    value = st.session_state.get(_modality_key(key, sha)) or st.session_state.get(f"{key}_load_as_{sha[:16]}")
    return value if value in ("CXR", "CT") else None


@st.cache_resource(show_spinner=False)
def load_guard():
    """The input guard (model/guard), shared by all sessions (read only); None when not installed."""
    from model.guard import Guard

    return Guard.load()


def guard_study_ui(study: Study, key: str, chosen: str | None) -> Study:
    """Run the input guard on a study; show the detected modality and a per-study override."""
    from model.guard import MODALITY_NAMES, guard_missing_note

    guard = load_guard()
    if guard is None:
        st.caption(f":material/warning: {md(guard_missing_note())}")
        return study
    from model.serving import shared_queue

    checked = shared_queue().run(guard.check, study, override=chosen)  # torch work: on the inference queue
    v = checked.verdict
    if v.detected_modality == "neither":
        detected = f"neither chest X-ray nor chest CT ({v.confidence:.0%})"
    else:
        detected = f"{MODALITY_NAMES[v.detected_modality]} ({v.confidence:.0%})"
    auto = "as its DICOM header says" if v.claim_source == "dicom" else "as detected"
    st.selectbox(
        f"This study shows — detected: {detected}",
        MODALITY_CHOICES,
        format_func={"auto": auto, "CXR": "a chest X-ray", "CT": "a chest CT slice"}.get,
        key=_modality_key(key, study.sha256),
        help="The input guard recognises chest X-rays and chest CT slices from the pixels (DICOM headers are "
        "checked against them). Choose here when it gets this study wrong.",
    )
    return checked


def _load_as_ui(
    data: bytes, name: str, key: str, err: str, sha: str, kind: str
) -> tuple[Study | None, str | None]:
    """A DICOM of another modality (MR, US, NM...): the user may load it as a chest modality anyway."""
    choice = st.selectbox(
        f"Load {md_name(name)} anyway as",
        ("no", "CXR", "CT"),
        format_func={"no": "do not load it", "CXR": "a chest X-ray", "CT": "a chest CT slice"}.get,
        key=f"{key}_load_as_{sha[:16]}",
        help="Best effort: the models were not trained on this modality, and the input guard checks it.",
    )
    if choice == "no":
        return None, err
    return try_load(data, name, chosen=choice, sha256=sha, kind=kind)


@dataclass
class Rejected:
    names: list[str]  # shown names of the uploads the loader refused, in the uploader now
    fresh: bool  # one of them arrived in this run (the newest thing the user did)


def _check_uploads(uploads: list, key: str, plain: str | None, fresh_visit: bool) -> Rejected:
    """Load each file in the uploader: keep the good ones (session + byte cache), show an error for the rest.

    Files the user removed from the uploader are forgotten; after a page switch (``fresh_visit``) the
    uploader is empty but the kept uploads stay.
    """
    names, bad, good = [], [], []
    bad_before = st.session_state.get(f"{key}_rejected_in_uploader", [])
    for up in uploads:
        data = up.getvalue()
        sha, kind = upload_identity(data)  # one hash and one sniff per upload, passed down
        study, err = try_load(data, up.name, plain_modality=plain, sha256=sha, kind=kind)
        if err and kind == "dicom" and "Choose a modality" in err:
            study, err = _load_as_ui(data, up.name, key, err, sha, kind)
        if err:
            st.error(md(err), icon=":material/block:")
            names.append(plain_name(up.name))
            bad.append(f"{sha}:{up.name}")
            continue
        good.append(keep_upload(st.session_state, key, data, up.name, sha256=sha, kind=kind).sha256)
    good_before = [] if fresh_visit else st.session_state.get(f"{key}_kept_in_uploader", [])
    removed = set(good_before) - set(good)
    if removed:  # the user took them out of the uploader: forget them (a re-upload is new again)
        forget_uploads(st.session_state, key, removed)
        short = {sha[:8] for sha in removed}
        seen = st.session_state.get(f"{key}_seen_uploads", [])
        st.session_state[f"{key}_seen_uploads"] = [k for k in seen if k.rsplit(":", 1)[-1] not in short]
    st.session_state[f"{key}_kept_in_uploader"] = good
    st.session_state[f"{key}_rejected_in_uploader"] = bad
    return Rejected(names=names, fresh=bool(set(bad) - set(bad_before)))


def open_in_compare(sample: Sample, key: str = "cmp") -> None:
    """Hand a study to the Compare page (call st.switch_page afterwards)."""
    st.session_state[f"{key}_opened"] = sample
    st.session_state[f"{key}_opened_new"] = True


DISPLAY_MAX_SIDE = 768  # px: the browser never gets more than this (big uploads stay snappy)


def display_pixels(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Area-downsampled copy for display when the image is larger than ``max_side``."""
    h, w = pixels.shape
    if max(h, w) <= max_side:
        return pixels
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32)).resize(size, Image.BOX), np.float32
    )


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def draw_mask_outlines(rgb: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """Green outlines of ground-truth masks on an RGB uint8 image (resized masks by nearest neighbour)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    for m in masks.values():
        if m.shape != (h, w):
            ys = np.arange(h) * m.shape[0] // h
            xs = np.arange(w) * m.shape[1] // w
            m = m[ys][:, xs]
        edge = _outline(m)
        out[edge] = (40, 220, 90)
    return out


def render_study_viewer(
    study: Study, masks: dict[str, np.ndarray] | None = None, key: str = "cmp_view"
) -> None:
    """The image (with DICOM window presets when raw values exist), optional truth outlines, metadata."""
    shown = study
    if study.raw is not None:
        from model.data.imaging import WINDOW_PRESETS, apply_window

        names = ["file default", "auto", *WINDOW_PRESETS]
        preset = st.selectbox(
            "Window preset",
            names,
            key=f"{key}_window",
            format_func=lambda n: {"auto": "auto (0.5-99.5 percentiles)"}.get(n, n.replace("_", " ")),
            help="Changes the display only; the models see the file's default window.",
        )
        if preset != "file default":
            try:
                shown = apply_window(study, preset)
            except Exception as err:
                st.error(f"Could not apply the {md(preset)} window: {md(err)}", icon=":material/block:")
    rgb = np.repeat(to_uint8(display_pixels(shown.pixels))[..., None], 3, axis=2)
    if masks:
        if st.toggle("Show ground-truth outlines", value=True, key=f"{key}_masks"):
            rgb = draw_mask_outlines(rgb, masks)
    h, w = study.pixels.shape
    v = study.verdict
    read_as = "not a chest image" if v is not None and v.detected_modality == "neither" else study.modality
    caption = f"{md_name(study.source)} · {read_as} · {w}×{h}"
    if shown.window:
        caption += f" · window C{shown.window[0]:.0f}/W{shown.window[1]:.0f}"
    st.image(rgb, caption=caption, width="stretch")
    render_metadata(study)


def safe_metadata(meta: dict[str, str]) -> dict[str, str]:
    """Drop anything that looks identifying, whatever the loader passed."""
    return {
        k: v
        for k, v in meta.items()
        if not any(bad in k.lower().replace(" ", "").replace("_", "") for bad in IDENTIFYING)
    }


def render_metadata(study: Study) -> None:
    meta = safe_metadata(study.meta)
    if study.pixel_spacing:
        meta.setdefault("Pixel spacing (mm)", f"{study.pixel_spacing[0]:.3g} × {study.pixel_spacing[1]:.3g}")
    if not meta:
        return
    with st.expander("De-identified metadata", expanded=False):
        # A Markdown table, not st.table: st.table imports pandas + pyarrow (~0.6 CPU-s of the first page,
        # issue 13).
        # DICOM values are user-supplied text: md() escapes every cell ("|" included) onto one line.
        rows = "\n".join(f"| {md(k)} | {md(v)} |" for k, v in meta.items())
        st.markdown(f"| field | value |\n|---|---|\n{rows}")
        st.caption("Only whitelisted technical fields are shown; patient identifiers are never displayed.")
