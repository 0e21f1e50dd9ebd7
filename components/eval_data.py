"""Reading evaluation results (``assets/eval/*.json``, written by ``meddistill evaluate``).

Layout (docs/eval_schema.md): ``models[m].metrics[section][metric]``, ``models[m].per_finding``,
``roc`` / ``reliability`` curves, ``retention.ratios[m]["section.metric"]``, ``tradeoff.curves``,
``cases`` (per-case records for error analysis), ``protocol``, ``data.dir`` (the phantom set).
``$MEDDISTILL_EVAL_DIR`` points the pages elsewhere (tests).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from components.figures import NAMES, fmt
from model.data.rebuild import RebuildError, rebuild_case, rebuildable
from model.evaluate.summary import HEADLINE
from model.types import CaseTruth

ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "MEDDISTILL_EVAL_DIR"

#: display unit per metric for ``fmt`` (default: 3 significant digits)
UNITS = {
    "efficiency.parameters": "count",
    "efficiency.checkpoint_mb": "MB",
    "efficiency.latency_median_ms": "ms",
    "efficiency.flops_encode_heads": "count",
    "efficiency.peak_rss_mb": "MB",
    "efficiency.model_rss_mb": "MB",
}


def eval_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or ROOT / "assets" / "eval")


def list_results() -> dict[str, Path]:
    """Result name -> JSON path, newest first."""
    d = eval_dir()
    paths = sorted(d.glob("*.json"), key=lambda p: -p.stat().st_mtime) if d.is_dir() else []
    return {p.stem: p for p in paths}


@st.cache_data(show_spinner=False, max_entries=8)
def _read(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def load_result(path: Path) -> dict:
    return _read(str(path), path.stat().st_mtime_ns)


def result_picker_ui(key: str) -> dict | None:
    """Pick one result file; None (with a message) when there is none or it cannot be read."""
    results = list_results()
    if not results:
        st.info(
            f"No evaluation results yet in `{eval_dir()}`: run `meddistill evaluate --data DIR` "
            "(see the README) and reload."
        )
        return None
    name = st.selectbox("Evaluation result", list(results), key=f"{key}_result")
    try:
        result = load_result(results[name])
    except (OSError, json.JSONDecodeError) as err:
        st.error(f"Could not read {results[name].name}: {err}")
        return None
    if not isinstance(result.get("models"), dict):
        st.error(f"{results[name].name} does not look like a `meddistill evaluate` result.")
        return None
    return result


def model_order(result: dict) -> list[str]:
    return [m for m in result.get("model_order") or list(result["models"]) if m in result["models"]]


def metric(result: dict, model: str, dotted: str):
    section, _, name = dotted.partition(".")
    return ((result["models"][model].get("metrics") or {}).get(section) or {}).get(name)


def scorecard_frame(result: dict, drop_empty: bool = True) -> pd.DataFrame:
    """Headline metrics per model plus each student's retention ratio (student / teacher), as numbers.

    ``result`` is a whole evaluation or one of its ``real`` sections (same ``models`` / ``retention``).
    """
    models = model_order(result)
    ref = (result.get("retention") or {}).get("reference", "teacher")
    ratios = (result.get("retention") or {}).get("ratios") or {}
    rows = []
    for h in HEADLINE:
        key = h.key
        row = {"metric": h.label, "better": "higher" if h.higher else "lower", "key": key}
        for m in models:
            row[m] = metric(result, m, key)
        for m in models:
            if m != ref:
                row[f"{m} / {ref}"] = (ratios.get(m) or {}).get(key)
        if drop_empty and all(row[m] is None for m in models):
            continue
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def format_scorecard(card: pd.DataFrame) -> pd.DataFrame:
    """Display strings: each metric in its unit (``fmt``), ratio columns as percentages of the teacher."""
    out = card.drop(columns=["key"]).astype(object)
    for label, row in card.iterrows():
        for col in out.columns:
            if col == "better":
                continue
            unit = "%" if " / " in col else UNITS.get(row["key"], "")
            out.at[label, col] = fmt(row[col], unit)
    return out


def _protocol_value(v) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_protocol_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_protocol_value(x) for x in v)
    if isinstance(v, float):
        return fmt(v)
    return str(v)


def protocol_frames(protocol: dict) -> list[tuple[str, pd.DataFrame]]:
    """The declared metric protocol as (group title, table of item -> how it is computed) pairs."""
    general = {k: v for k, v in protocol.items() if not isinstance(v, dict)}
    groups = [("general", general)] if general else []
    groups += [(k, v) for k, v in protocol.items() if isinstance(v, dict)]
    return [
        (
            name.replace("_", " ").capitalize(),
            pd.DataFrame(
                {"protocol": [_protocol_value(v) for v in items.values()]},
                index=pd.Index([str(k).replace("_", " ") for k in items], name="item"),
            ),
        )
        for name, items in groups
    ]


def data_caption(data: dict) -> str:
    """One line about an evaluated set: cases, modalities, sources, split."""
    mods = ", ".join(f"{fmt(data[k], 'count')} {label}" for k, label in (("n_cxr", "CXR"), ("n_ct", "CT"))
                     if data.get(k))  # fmt: skip
    return (
        f"{fmt(data.get('n_cases'), 'count')} cases ({mods or 'no modality counts'}) from "
        f"{', '.join(data.get('sources') or []) or '?'}, split `{data.get('split', '?')}`"
        + (f", reports {', '.join(data['report_origin'])}" if data.get("report_origin") else "")
    )


FLAT = 0.05  # a clinical-F1 curve that moves less than this across caps is called flat


def tradeoff_note(trade: dict, models: list[str]) -> str | None:
    """Why the clinical-F1-vs-length curves are flat, with the result's own numbers; None if they move."""
    curves = trade.get("curves") or {}
    lines = [(m, d, cur) for m in models for d, cur in (curves.get(m) or {}).items()]
    f1s = [[x for x in c.get("clinical_f1") or [] if x is not None] for *_, c in lines]
    spread = [max(v) - min(v) for v in f1s if len(v) > 1]
    if not spread or max(spread) >= FLAT:
        return None
    words = [x for *_, c in lines for x in c.get("mean_tokens") or [] if x is not None]
    caps = trade.get("max_new_tokens") or ["?"]
    out = [
        f"Why the clinical-F1 curves are flat: they move by at most {fmt(max(spread))} from {caps[0]} "
        f"to {caps[-1]} tokens, while reports run from {fmt(min(words, default=None))} to "
        f"{fmt(max(words, default=None))} tokens on average. Clinical F1 scores positive findings only (a "
        "finding a report does not mention counts as negative), and the reports state their positive "
        "findings in the opening sentence; what a longer report adds is negations (\"No pleural effusion "
        "or pneumothorax.\") and descriptors, which clinical F1 does not count."
    ]
    complete = [(c.get("positives_complete") or [None])[0] for *_, c in lines]
    complete = [x for x in complete if x is not None]
    if complete:
        out.append(
            f"Measured: at {caps[0]} tokens, {fmt(min(complete), '%')} to {fmt(max(complete), '%')} of the "
            "reports already state every positive finding of their full text."
        )
    stated = trade.get("positives_stated_by") or {}
    if stated:
        out.append(
            "Words until all positives are stated (90th percentile): "
            + ", ".join(f"{NAMES.get(k, k.replace('_', ' '))} {fmt(v.get('p90'))}" for k, v in stated.items())
            + "."
        )
    recall = [(m, d, c["statement_recall"]) for m, d, c in lines if c.get("statement_recall")]
    if recall:
        m, d, r = max(recall, key=lambda x: (x[2][-1] or 0) - (x[2][0] or 0))
        out.append(
            f"What length does change: statement recall (negations included; pick it above) goes from "
            f"{fmt(r[0], '%')} to {fmt(r[-1], '%')} for {NAMES.get(m, m)} at {d} detail."
        )
    return " ".join(out)


# ----------------------------------------------------------------------------------------------
# Cases (error analysis)


def _words(text: str | None) -> set[str]:
    return set((text or "").lower().replace(".", " ").replace(",", " ").split())


def word_mismatch(a: str | None, b: str | None) -> float:
    """1 - Jaccard overlap of the two reports' word sets (0 = same words, 1 = nothing shared).

    Not the Compare page's "JS divergence" (per-token Jensen-Shannon between the models' next-word
    distributions): this one compares the finished reports' vocabularies only.
    """
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return 0.0
    return 1.0 - len(wa & wb) / len(wa | wb)


def cases_frame(result: dict) -> pd.DataFrame:
    """One row per evaluated case with what the error-analysis filters need."""
    models = model_order(result)
    ref = (result.get("retention") or {}).get("reference", "teacher")
    students = [m for m in models if m != ref]
    rows = []
    for c in result.get("cases") or []:
        truth = c.get("truth") or {}
        row = {
            "id": c["id"],
            "modality": c.get("modality"),
            "source": c.get("source"),
            "truth_findings": ", ".join(truth.get("findings") or []),
            "truth_tumour": truth.get("tumour"),
        }
        per = c.get("models") or {}
        for m in models:
            r = per.get(m) or {}
            row[f"{m}_missed"] = ", ".join(r.get("missed_findings") or [])
            row[f"{m}_false"] = ", ".join(r.get("false_findings") or [])
            row[f"{m}_tumour"] = r.get("tumour_pred")
            row[f"{m}_tumour_ok"] = r.get("tumour_correct")
            row[f"{m}_clinical_f1"] = r.get("clinical_f1")
            row[f"{m}_bleu_4"] = r.get("bleu_4")
            row[f"{m}_ood"] = r.get("ood_score")
        if ref in per and students:
            s = students[0]
            t_r, s_r = per[ref], per.get(s) or {}
            key = "findings" if c.get("modality") == "CXR" else "tumour"
            pt = np.array(list((t_r.get(key) or {}).values()), dtype=float)
            ps = np.array(list((s_r.get(key) or {}).values()), dtype=float)
            row["gap"] = float(np.abs(pt - ps).max()) if pt.size and pt.size == ps.size else np.nan
            row["word_mismatch"] = word_mismatch(t_r.get("report"), s_r.get("report"))
            dis = (c.get("disagreement") or {}).get(s) or {}
            row["disagree"] = bool(dis.get("findings") or dis.get("tumour") or dis.get("report_labels"))
        rows.append(row)
    df = pd.DataFrame(rows)
    first = [
        c
        for c in ("id", "modality", "gap", "word_mismatch", "disagree", "truth_findings", "truth_tumour")
        if c in df
    ]
    return df[first + [c for c in df.columns if c not in first]]


def filter_cases(
    df: pd.DataFrame,
    models: list[str],
    finding: str | None = None,
    modality: str | None = None,
    error_model: str | None = None,
    error_type: str = "any",
    disagree_only: bool = False,
    min_mismatch: float = 0.0,
) -> pd.DataFrame:
    """Pure pandas filtering (kept apart from the widgets so tests can pin it)."""
    out = df
    if modality:
        out = out[out["modality"] == modality]
    if finding:
        cols = ["truth_findings"] + [f"{m}_{k}" for m in models for k in ("missed", "false")]
        mask = np.zeros(len(out), bool)
        for col in cols:
            mask |= out[col].fillna("").str.contains(finding, regex=False).to_numpy()
        out = out[mask]
    if error_model and error_type != "any":
        if error_type == "false negative":
            out = out[out[f"{error_model}_missed"].fillna("") != ""]
        elif error_type == "false positive":
            out = out[out[f"{error_model}_false"].fillna("") != ""]
        elif error_type == "wrong tumour class":
            out = out[out[f"{error_model}_tumour_ok"] == False]  # noqa: E712 (None = not CT)
        elif error_type == "correct":
            ok = (out[f"{error_model}_missed"].fillna("") == "") & (
                out[f"{error_model}_false"].fillna("") == ""
            )
            out = out[ok & (out[f"{error_model}_tumour_ok"] != False)]  # noqa: E712
    if disagree_only and "disagree" in out:
        out = out[out["disagree"]]
    if min_mismatch > 0 and "word_mismatch" in out:
        out = out[out["word_mismatch"] >= min_mismatch]
    return out


def data_dir(result: dict) -> Path | None:
    d = (result.get("data") or {}).get("dir")
    if not d:
        return None
    p = Path(d)
    return p if p.is_absolute() else ROOT / p


def case_files(result: dict, case_id: str) -> tuple[Path | None, Path | None]:
    """(image, mask) of a phantom case when its data set is on this machine."""
    d = data_dir(result)
    if d is None:
        return None, None
    img, mask = d / "images" / f"{case_id}.png", d / "masks" / f"{case_id}.png"
    return (img if img.is_file() else None), (mask if mask.is_file() else None)


@dataclass
class CaseStudy:
    """An evaluated case's image and ground truth, from the data folder or rebuilt from its seed."""

    png: bytes  # 8-bit grayscale PNG, what the model saw (before resizing)
    mask_png: bytes | None  # bit mask (bit i = FINDINGS[i] on CXR, bit 0 = tumour on CT)
    truth: CaseTruth | None
    reports: dict[str, str] | None  # detail -> reference report
    treatments: list[dict] | None  # ground-truth rulebook [{name, reason}]
    origin: str  # where the pixels came from, in words


def case_study(result: dict, case: dict) -> CaseStudy | str:
    """The case's image and truth, or a sentence saying why there is none (and what to do)."""
    img, mask = case_files(result, case["id"])
    if img is not None:
        label = data_dir(result) / "labels" / f"{case['id']}.json"
        extra = _read_json(label) if label.is_file() else {}
        structured = (case.get("truth") or {}).get("structured")
        reports = extra.get("reports") or ({"standard": case["reference"]} if case.get("reference") else None)
        return CaseStudy(
            png=img.read_bytes(),
            mask_png=mask.read_bytes() if mask else None,
            truth=CaseTruth.from_dict(structured or extra) if (structured or extra.get("case_id")) else None,
            reports=reports,
            treatments=extra.get("treatments"),
            origin=f"from the data folder `{img.parent.parent}`",
        )
    if not rebuildable(case):
        return (
            f"The image of {case['id']} is not on this machine (the evaluation's data folder "
            f"`{(result.get('data') or {}).get('dir')}` is missing) and it is not a generated phantom "
            "that could be rebuilt: copy the data folder back to see it."
        )
    slim = {"name": result.get("name"), "data": {"dataset": (result.get("data") or {}).get("dataset")}}
    try:
        return _rebuilt(json.dumps(slim, sort_keys=True), json.dumps(case, sort_keys=True, default=str))
    except RebuildError as err:
        return str(err)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


@st.cache_data(show_spinner=False, max_entries=1024)
def _rebuilt(result_json: str, case_json: str) -> CaseStudy:
    """Rebuild one phantom from its seed (about 0.1 s a chest X-ray); cached per case."""
    rebuilt = rebuild_case(json.loads(result_json), json.loads(case_json))
    seed = f"seed {rebuilt.seed}"
    if rebuilt.assumed:
        seed = f"the generate-data default seed {rebuilt.dataset_seed}"
    return CaseStudy(
        png=rebuilt.png(),
        mask_png=rebuilt.mask_png(),
        truth=rebuilt.truth,
        reports=rebuilt.reports,
        treatments=rebuilt.treatments,
        origin=f"rebuilt from {seed} (the data folder is not on this machine; same pixels)",
    )


def teaching_set_zip(result: dict, df: pd.DataFrame) -> bytes:
    """A zip with cases.csv, one JSON per case (reference + every model's report), images and masks.

    Images come from the evaluation's data folder, or are rebuilt from the phantom's seed when it is
    absent; a case with neither is listed in README.txt.
    """
    by_id = {c["id"]: c for c in result.get("cases") or []}
    buf = io.BytesIO()
    missing = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cases.csv", df.to_csv(index=False))
        for cid in df["id"]:
            case = by_id.get(cid)
            if case is None:
                missing.append(f"{cid}: not in the evaluation result")
                continue
            zf.writestr(f"cases/{cid}.json", json.dumps(case, indent=1, default=str))
            found = case_study(result, case)
            if isinstance(found, str):
                missing.append(found)
                continue
            zf.writestr(f"images/{cid}.png", found.png)
            if found.mask_png:
                zf.writestr(f"masks/{cid}.png", found.mask_png)
        note = "".join(f"- {m}\n" for m in missing)
        zf.writestr(
            "README.txt",
            "MedDistill Studio teaching set. For demonstration and teaching only; not for clinical use.\n"
            f"Evaluation: {result.get('name')} ({result.get('created')}); cases: {len(df)}.\n"
            "cases.csv: one row per case; cases/ID.json: reference and every model's report;\n"
            "images/ID.png: the 8-bit image; masks/ID.png: bit i = finding i (CXR), bit 0 = tumour (CT).\n"
            + (f"Cases without an image:\n{note}" if note else ""),
        )
    return buf.getvalue()
