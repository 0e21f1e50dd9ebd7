"""Plotly figures. ``make_*_figure`` functions build and return a figure; they never call ``st``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from model.distill.config import TERMS

COLORS = {"teacher": "#1f5aa6", "student": "#e07b00", "student_nokd": "#7f7f7f"}
NAMES = {"teacher": "Teacher", "student": "Student (KD)", "student_nokd": "Student (no KD)"}


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    """Shared look: a title that fits a half-width column, margins that grow to fit tick labels."""
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15), automargin=True, yref="container"),
        height=height,
        margin=dict(l=10, r=10, t=50, b=10, autoexpand=True),
        # above the plot: below it, the legend sat on rotated tick labels and axis titles
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0.0, xanchor="left"),
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def fmt(value, unit: str = "") -> str:
    """The one number formatter of the dashboard (tables, bar labels, captions).

    ``unit``: "" = 3 significant digits with thousands separators (34,300,000; 0.912; 0.000412),
    "count" = exact integer with separators (34,272,404), "%" = a fraction as a percentage (95.2 %),
    "x" = a ratio (0.15x), any other unit is appended ("66.1 MB", "312 ms"). None / NaN -> "–".
    Never scientific notation.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return "–" if value is None else str(value)
    v = float(value)
    if not math.isfinite(v):
        return "–"
    if unit == "count":
        return f"{round(v):,}"
    if unit == "%":
        return f"{_sig3(v * 100.0)} %"
    if unit == "x":
        return f"{_sig3(v)}x"
    return _sig3(v) + (f" {unit}" if unit else "")


def _sig3(v: float) -> str:
    v = float(f"{v:.3g}")  # round to 3 significant digits first (99.98 -> 100, not 100.0)
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if mag >= 2:
        return f"{round(v, -(mag - 2)):,.0f}"
    return f"{v:,.{min(2 - mag, 8)}f}"


def make_next_token_figure(
    words: Sequence[str], teacher: np.ndarray, student: np.ndarray, top_k: int = 12, actual: str | None = None
) -> go.Figure:
    """Grouped bars of the teacher's and student's probabilities over the top words of either."""
    teacher, student = np.asarray(teacher), np.asarray(student)
    idx = np.argsort(-(np.maximum(teacher, student)))[:top_k]
    labels = [words[i] + (" ★" if words[i] == actual else "") for i in idx]
    fig = go.Figure(
        [
            go.Bar(name="Teacher", x=labels, y=teacher[idx], marker_color=COLORS["teacher"]),
            go.Bar(name="Student", x=labels, y=student[idx], marker_color=COLORS["student"]),
        ]
    )
    fig.update_layout(
        barmode="group", yaxis_title="probability", xaxis_title="next word (★ = the actual word)"
    )
    return _layout(fig, "Next-word distributions")


#: the loss terms a train_log.jsonl line may carry (validation lines prefix them with "val_")
LOSS_KEYS = (*TERMS, "total")


def make_loss_curves_figure(records: Sequence[dict], split: str = "train", title: str = "") -> go.Figure:
    """One line per numeric loss term over training steps (records of a train_log.jsonl).

    Lines carry ``split`` ("train" per logged step, "val" per epoch); the terms are the loss's own
    (``model.distill.config.TERMS`` + ``total``; ``val_`` + those on validation lines).
    """
    rows = [r for r in records if r.get("split", split) == split]
    fig = go.Figure()
    if not rows:
        return _layout(fig, title or f"No {split} records")
    x_key = "step" if "step" in rows[0] else ("epoch" if "epoch" in rows[0] else None)
    names = [f"val_{k}" for k in LOSS_KEYS] if split == "val" else list(LOSS_KEYS)
    terms = [k for k in names if any(isinstance(r.get(k), (int, float)) for r in rows)]
    # a term that is zero throughout (e.g. KD terms while training the teacher) only adds clutter
    terms = [t for t in terms if any(abs(r.get(t) or 0.0) > 0 for r in rows)]
    for term in terms:
        pts = [r for r in rows if isinstance(r.get(term), (int, float))]
        x = [r.get(x_key, i) for i, r in enumerate(pts)] if x_key else list(range(len(pts)))
        width = 3 if term in ("total", "val_total") else 1.5
        fig.add_trace(
            go.Scatter(x=x, y=[r[term] for r in pts], mode="lines", name=term, line=dict(width=width))
        )
    fig.update_layout(xaxis_title=x_key or "record", yaxis_title="loss (per term)")
    return _layout(fig, title or f"Loss terms over training ({split})", height=420)


def make_bar_figure(
    categories: Sequence[str], series: dict[str, Sequence[float]], title: str, y_title: str = ""
) -> go.Figure:
    """Grouped bars, one series per model."""
    fig = go.Figure(
        [
            go.Bar(name=NAMES.get(m, m), x=list(categories), y=list(v), marker_color=COLORS.get(m))
            for m, v in series.items()
        ]
    )
    fig.update_layout(barmode="group", yaxis_title=y_title)
    fig.update_xaxes(tickangle=-30)  # full finding names, slanted; automargin makes room
    return _layout(fig, title)


def make_model_bars_figure(
    models: Sequence[str], values: Sequence[float | None], title: str, y_title: str = "", unit: str = ""
) -> go.Figure:
    """One bar per model in the model's colour (latency, size), each labelled with ``fmt(v, unit)``."""
    fig = go.Figure(
        go.Bar(
            x=[NAMES.get(m, m) for m in models],
            y=list(values),
            marker_color=[COLORS.get(m, "#999") for m in models],
            text=[fmt(v, unit) if isinstance(v, (int, float)) else "" for v in values],
            textposition="outside",
            cliponaxis=False,
        )
    )
    top = max((v for v in values if isinstance(v, (int, float))), default=0) or 1
    fig.update_layout(yaxis_title=y_title, showlegend=False, yaxis=dict(range=[0, top * 1.18]))
    return _layout(fig, title)


def make_curve_figure(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_title: str,
    y_title: str,
    diagonal: bool = False,
) -> go.Figure:
    """Lines (ROC, reliability, trade-off curves), one per model or series."""
    fig = go.Figure()
    if diagonal:
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbb"), name="chance")
        )
    dashes = {"brief": "dot", "standard": "solid", "detailed": "dash"}
    for name, (x, y) in curves.items():
        model, _, variant = name.partition(" · ")
        label = NAMES.get(model, model) + (f" · {variant}" if variant else "")
        line = dict(color=COLORS.get(model), dash=dashes.get(variant, "solid"))
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=label, line=line))
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title)
    return _layout(fig, title)
